// Benchmark (issue 4): from a wholesale firewall flush to the safety net's verified restore. The safety net repairs
// only around migration evidence, so the agent runs with a real collector in its namespace that announces one
// migration (signed) with a repair window long enough for every trial.
// Usage, as root: npm run build && node --import ./bench/register-ts.mjs bench/flush-to-restored.ts [trials]
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import type { Test } from 'tap';
import { startNetnsCollector } from '../test/helpers/netns-collector.js';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { addNetns, deleteNetns } from '../system/ip.js';
import { runCommand } from '../system/run-command.js';
import { median } from '../contract/clock-offset.js';
import { guestAgentBundle } from '../harness/project-paths.js';

const trials = Number(process.argv[2] ?? 50);
const LEGACY_POLL_MS = 1000;

async function measure(kind: 'nftables' | 'iptables-legacy'): Promise<number[]> {
  const netns = `flinch-bench-heal-${process.pid}`;
  await addNetns(netns);
  const exec = (cmd: string, ...args: string[]) => runCommand('ip', ['netns', 'exec', netns, cmd, ...args]);
  const cleanups: Array<() => unknown> = [];
  try {
    await exec('ip', 'link', 'set', 'lo', 'up');
    const key = 'b'.repeat(64);
    const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flinch-bench-'));
    writeFileSync(path.join(stateDir, 'token'), `${key}\n`, { mode: 0o600 });
    // The collector helper's only use of a Test is to register its own clean-up.
    const collector = await startNetnsCollector({ teardown: (fn: () => unknown) => cleanups.push(fn) } as unknown as Test, netns, 'bench', key);
    if (kind === 'nftables') {
      await exec('nft', 'add table inet user; add chain inet user input { type filter hook input priority 0; }; add rule inet user input tcp dport 22 accept; add rule inet user input tcp dport 23 drop');
    } else {
      await exec('iptables-legacy', '-A', 'INPUT', '-p', 'tcp', '--dport', '23', '-j', 'DROP');
    }
    // A short conflict window and no rate limit: the trials repeat the same flush on purpose, which is not a fight.
    const agent = spawn('ip', ['netns', 'exec', netns, process.execPath, guestAgentBundle(), 'run', '--collector', `ws://127.0.0.1:${collector.port}`,
      '--agent-id', 'bench', '--token-file', path.join(stateDir, 'token'), '--accept-announce', '--repair-window', '3600000',
      '--probes', kind === 'nftables' ? 'nftables' : 'iptables', '--remediate', 'on', '--settle', '300', '--conflict-window', '50', '--max-actions', '10000',
      '--legacy-poll', String(LEGACY_POLL_MS), '--state-dir', stateDir], { stdio: ['ignore', 'ignore', 'pipe'] });
    const restored: number[] = [];
    let ready = false;
    agent.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      if (text.includes('ready:')) ready = true;
      for (const line of text.split('\n')) {
        if (/safety net: ok: firewall-table firewall (nftables inet user|iptables-legacy ipv4 filter)/.test(line)) restored.push(Date.now());
      }
    });
    while (!ready) await sleep(50);
    await collector.waitForHello('bench');
    collector.announce('bench', 'starting', 'bench-1');
    collector.announce('bench', 'finished', 'bench-1');
    await sleep(500);
    const latencies: number[] = [];
    for (let i = 0; i < trials; i += 1) {
      const mark = restored.length;
      const t0 = Date.now();
      if (kind === 'nftables') await exec('nft', 'flush', 'ruleset');
      else await exec('bash', '-c', 'iptables-legacy -F && iptables-legacy -X');
      for (let w = 0; w < 1000 && restored.length === mark; w += 1) await sleep(2);
      if (restored.length > mark) latencies.push(restored[mark]! - t0);
      await sleep(kind === 'nftables' ? 700 : 1500); // let the episode close (and the legacy poll pass) before the next trial
    }
    agent.kill('SIGTERM');
    return latencies;
  } finally {
    for (const cleanup of cleanups) await cleanup();
    await deleteNetns(netns);
  }
}

function summary(values: number[]): string {
  const sorted = [...values].sort((a, b) => a - b);
  const p99 = sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]!;
  return `median ${median(values).toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, min ${sorted[0]!.toFixed(0)}, max ${sorted[sorted.length - 1]!.toFixed(0)} (n=${values.length} of ${trials})`;
}

console.log(`nft flush ruleset → table restored and verified: ${summary(await measure('nftables'))}`);
console.log(`iptables-legacy -F -X → table restored and verified (poll ${LEGACY_POLL_MS} ms): ${summary(await measure('iptables-legacy'))}`);
