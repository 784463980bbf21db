// A guest for the safety net's tests: a private namespace with a veth pair, addresses, a route and (optionally) rules
// of every firewall back end, and the real agent bundle (`run --remediate on`) in it, reporting to a real collector in
// the same namespace whose signed announcements are the migration signal (a namespace cannot raise NOTIFY_PEERS: this
// kernel has no bonding or dummy driver).
import type { Test } from 'tap';
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand } from '../../system/run-command.js';
import type { Report } from '../../contract/report-schema.js';
import { ipIn, testNetns } from './netns.js';
import { startAgent, type AgentProcess } from './agent-process.js';
import { startNetnsCollector, type NetnsCollector } from './netns-collector.js';

export const MAC = '02:00:00:00:00:0a';
export const PEER_MAC = '02:00:00:00:00:0b';
export const exec = (netns: string, command: string, ...args: string[]) => runCommand('ip', ['netns', 'exec', netns, command, ...args]);

/** `rules`: also the user's own nft table and one rule in each iptables back end (the managers' tests start clean). */
export async function guest(t: Test, rules = true): Promise<string> {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'address', MAC, 'type', 'veth', 'peer', 'name', 'vb', 'address', PEER_MAC);
  await ipIn(netns, 'addr', 'add', '192.0.2.10/24', 'dev', 'va');
  await ipIn(netns, 'link', 'set', 'va', 'up');
  await ipIn(netns, 'link', 'set', 'vb', 'up');
  await ipIn(netns, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.1');
  if (!rules) return netns;
  await exec(netns, 'nft', 'add table inet user; add chain inet user input { type filter hook input priority 0; }; add rule inet user input iif va tcp dport 22 accept; add rule inet user input tcp dport 23 drop');
  await exec(netns, 'iptables-nft', '-A', 'INPUT', '-p', 'tcp', '--dport', '9998', '-j', 'DROP');
  await exec(netns, 'iptables-legacy', '-A', 'INPUT', '-p', 'udp', '--dport', '9', '-j', 'DROP');
  return netns;
}

const AGENT_ID = 'scenario-guest';
const KEY = 'k'.repeat(64);

export interface Agent extends AgentProcess {
  stateDir: string;
  collector: NetnsCollector;
  reports(): Report[];
  nextReport(from: number, timeoutMs?: number): Promise<Report>;
  /** How many reports there are now: pass it to nextReport to wait for the next one. */
  mark(): number;
  /** A signed harness announcement: the migration evidence a namespace can have. */
  migrate(id?: string): void;
}

let migrations = 0;

export async function agentIn(t: Test, netns: string, mode = 'on', stateDir = mkdtempSync(path.join(os.tmpdir(), 'flinch-state-')), extra: string[] = [], acceptAnnounce = true): Promise<Agent> {
  const collector = await startNetnsCollector(t, netns, AGENT_ID, KEY);
  const tokenFile = path.join(stateDir, 'token');
  writeFileSync(tokenFile, `${KEY}\n`, { mode: 0o600 });
  const agent = startAgent(t, [
    'run', '--collector', `ws://127.0.0.1:${collector.port}`, '--agent-id', AGENT_ID, '--token-file', tokenFile, ...(acceptAnnounce ? ['--accept-announce'] : []),
    '--probes', 'link,addressing,nftables,iptables,clock', '--remediate', mode, '--settle', '1500',
    '--adopt-after', '2000', '--legacy-poll', '200', '--state-dir', stateDir, ...extra,
  ], netns);
  for (let i = 0; i < 200 && !agent.stderr.join('').includes('ready:'); i += 1) await sleep(50);
  if (!agent.stderr.join('').includes('ready:')) throw new Error(`agent not ready: ${agent.stderr.join('')}`);
  await collector.waitForHello(AGENT_ID);
  return {
    ...agent,
    stateDir,
    collector,
    reports: () => collector.reports,
    nextReport: (from, timeoutMs) => collector.nextReport(from, timeoutMs),
    mark: () => collector.reports.length,
    migrate(id = `m-${++migrations}`) {
      collector.announce(AGENT_ID, 'starting', id);
      collector.announce(AGENT_ID, 'finished', id);
    },
  };
}

export async function flapCarrier(netns: string): Promise<void> {
  await ipIn(netns, 'link', 'set', 'vb', 'down');
  await sleep(100);
  await ipIn(netns, 'link', 'set', 'vb', 'up');
}


/**
 * The namespace's own /etc/NAME: `ip netns exec` mounts /etc/netns/NETNS/NAME over /etc/NAME, so a service run there
 * reads this configuration and the host's stays as it is. Returns /etc/netns/NETNS; removed in teardown.
 */
export function etcOverlay(t: Test, netns: string, ...copies: string[]): string {
  const etc = path.join('/etc/netns', netns);
  mkdirSync(etc, { recursive: true });
  t.teardown(() => rmSync(etc, { recursive: true, force: true }));
  for (const name of copies) cpSync(path.join('/etc', name), path.join(etc, name), { recursive: true });
  return etc;
}

/** nft -j output as objects without handles and counters, for comparing rulesets object by object. */
export function nftObjects(json: string): unknown[] {
  const strip = (v: unknown): unknown => Array.isArray(v) ? v.map(strip) : v && typeof v === 'object'
    ? Object.fromEntries(Object.entries(v).filter(([k]) => !['handle', 'packets', 'bytes', 'expires'].includes(k)).map(([k, x]) => [k, strip(x)]))
    : v;
  return (JSON.parse(json).nftables as unknown[]).filter((i) => !('metainfo' in (i as object))).map(strip);
}

