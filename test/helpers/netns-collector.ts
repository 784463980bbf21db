// A real collector run inside a network namespace (Node cannot enter one, so this file is also a program), for tests
// whose agent runs in that namespace: it prints every hello and report as a JSON line and announces migrations when
// told so on stdin. Loopback inside the namespace only.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import type { Report } from '../../contract/report-schema.js';
import type { ObservationOf } from '../../contract/observation.js';

const SELF = fileURLToPath(import.meta.url);

export interface NetnsCollector {
  child: ChildProcess;
  port: number;
  reports: Report[];
  /** The agent's safety-net actions as they came over the wire, outside reports. */
  safetyNet: ObservationOf<'safety-net'>[];
  lines: string[];
  announce(agentId: string, phase: 'starting' | 'finished', migrationId: string): void;
  nextReport(from: number, timeoutMs?: number): Promise<Report>;
  /** The report of the episode the announced migration `migrationId` joined: not one a busy host's noise opened before it. */
  reportOf(migrationId: string, timeoutMs?: number): Promise<Report>;
  waitForHello(agentId: string, timeoutMs?: number): Promise<void>;
}

/** Starts the collector in `netns` with one agent's key; stopped in teardown. */
export async function startNetnsCollector(t: Test, netns: string, agentId: string, key: string, port = 7431): Promise<NetnsCollector> {
  const child = spawn('ip', ['netns', 'exec', netns, process.execPath, ...process.execArgv, SELF, 'serve', String(port), agentId, key], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => {
    if (child.exitCode === null) child.kill('SIGTERM');
  });
  const reports: Report[] = [];
  const safetyNet: ObservationOf<'safety-net'>[] = [];
  const lines: string[] = [];
  const hellos = new Set<string>();
  const wake = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const message = JSON.parse(line) as { report?: Report; hello?: string; log?: string; safetyNet?: ObservationOf<'safety-net'> };
    if (message.report) reports.push(message.report);
    if (message.safetyNet) safetyNet.push(message.safetyNet);
    if (message.hello) hellos.add(message.hello);
    if (message.log) lines.push(message.log);
    for (const w of wake) w();
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const waitUntil = <T>(what: string, probe: () => T | undefined, timeoutMs: number) => new Promise<T>((resolve, reject) => {
    const check = () => {
      const value = probe();
      if (value === undefined) return;
      wake.delete(check);
      clearTimeout(timer);
      resolve(value);
    };
    const timer = setTimeout(() => {
      wake.delete(check);
      reject(new Error(`${what}: not within ${timeoutMs} ms (collector stderr: ${stderr.slice(0, 300)})`));
    }, timeoutMs);
    wake.add(check);
    check();
  });
  await waitUntil('the collector listening', () => (lines.some((l) => l.startsWith('listening')) ? true : undefined), 20_000);
  return {
    child, port, reports, safetyNet, lines,
    announce: (id, phase, migrationId) => child.stdin!.write(`${JSON.stringify({ announce: { agentId: id, phase, migrationId } })}\n`),
    nextReport: (from, timeoutMs = 20_000) => waitUntil(`a report after #${from}`, () => reports[from], timeoutMs),
    reportOf: (migrationId, timeoutMs = 20_000) => waitUntil(`the report of migration ${migrationId}`, () => reports.find((r) => r.episode.migrationId === migrationId), timeoutMs),
    waitForHello: (id, timeoutMs = 20_000) => waitUntil(`the hello of ${id}`, () => (hellos.has(id) ? true : undefined), timeoutMs).then(() => undefined),
  };
}

async function serve(port: number, agentId: string, key: string): Promise<void> {
  const { CollectorServer } = await import('../../harness/collector/collector-server.js');
  const { ReportStore } = await import('../../harness/collector/report-store.js');
  const { ListedKeyring } = await import('../../harness/collector/keyring.js');
  const { MigrationAnnouncer } = await import('../../harness/collector/migration-announcer.js');
  const out = (message: unknown) => process.stdout.write(`${JSON.stringify(message)}\n`);
  const store = new ReportStore(path.join(mkdtempSync(path.join(os.tmpdir(), 'flinch-netns-store-')), 'collector.sqlite'));
  const collector = new CollectorServer({
    host: '127.0.0.1', port, store, keyring: new ListedKeyring(new Map([[agentId, key]])), timeProbeIntervalMs: 1000,
    keepInMemory: false, log: (line) => out({ log: line }),
  });
  const announcer = new MigrationAnnouncer(collector);
  collector.on('hello', (agent) => out({ hello: agent.agentId }));
  collector.on('report', (_agent, report) => out({ report }));
  collector.on('observation', (_agent, received) => {
    if (received.observation.kind === 'safety-net') out({ safetyNet: received.observation });
  });
  await collector.start();
  out({ log: `listening on ${port}` });
  createInterface({ input: process.stdin }).on('line', (line) => {
    const { announce } = JSON.parse(line) as { announce: { agentId: string; phase: 'starting' | 'finished'; migrationId: string } };
    announcer.announce(announce.agentId, announce.phase, announce.migrationId);
  });
  process.once('SIGTERM', () => void collector.stop().then(() => process.exit(0)));
}

if (process.argv[1] === SELF && process.argv[2] === 'serve') {
  void serve(Number(process.argv[3]), process.argv[4]!, process.argv[5]!);
}
