import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { NftCommit } from '../../contract/observation.js';
import { diesWithThisProcess } from '../../system/child-lifetime.js';

/**
 * Calls `onCommit` once per committed nf_tables transaction, from the kernel's own notification on the
 * NFNLGRP_NFTABLES netlink group: no polling. The group is read through `nft monitor`, which prints
 * "# new generation N" when a transaction commits (an `nft -f` script, an `iptables-nft` command and an
 * `nft flush ruleset` each end in one). Reading the group with the netlink addon directly corrupted the heap of the
 * agent in lab guests after migrations (malloc aborts, SIGSEGV), so the kernel interface is reached through nft.
 * One monitor serves every subscriber.
 */
let monitor: ChildProcess | null = null;
const subscribers = new Set<{ onCommit: (commit: NftCommit | null) => void; onError: (error: Error) => void }>();

/** "# new generation 3 by process 6668 (iptables-nft)": the kernel's NFTA_GEN_* attributes as nft prints them. */
const GENERATION = /^# new generation (\d+)(?: by process (\d+) \((.*)\))?/;

export function parseGenerationLine(line: string): NftCommit | null {
  const match = GENERATION.exec(line);
  if (!match) return null;
  return { generation: Number(match[1]), pid: match[2] ? Number(match[2]) : 0, process: (match[3] ?? '').slice(0, 64) };
}

function startMonitor(): ChildProcess {
  // Tied to the agent: `nft monitor` writes only when something commits, so an agent gone without stopping it (kill -9,
  // a closed stdout under `watch | head`) left it blocked on netlink for good, pinning even a deleted namespace.
  const child = spawn(...diesWithThisProcess('nft', ['monitor'], 'TERM'), { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', (line) => {
    const commit = parseGenerationLine(line);
    if (!commit) return;
    for (const s of subscribers) s.onCommit(commit);
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  child.on('error', (error) => subscribers.forEach((s) => s.onError(error)));
  child.on('exit', (code, signal) => {
    if (monitor !== child) return;
    monitor = null;
    if (subscribers.size === 0) return;
    const error = new Error(`nft monitor exited (${signal ?? code}): ${stderr.trim().split('\n')[0] ?? ''}`);
    subscribers.forEach((s) => s.onError(error));
    // Keep watching: a restarted monitor, and a re-read by every subscriber for what fell in between.
    setTimeout(() => {
      if (subscribers.size > 0 && !monitor) {
        monitor = startMonitor();
        subscribers.forEach((s) => s.onCommit(null));
      }
    }, 1000).unref();
  });
  return child;
}

export function watchNftablesCommits(onCommit: (commit: NftCommit | null) => void, onError: (error: Error) => void): () => void {
  const subscriber = { onCommit, onError };
  subscribers.add(subscriber);
  monitor ??= startMonitor();
  return () => {
    subscribers.delete(subscriber);
    if (subscribers.size === 0 && monitor) {
      const child = monitor;
      monitor = null;
      child.kill('SIGTERM');
    }
  };
}
