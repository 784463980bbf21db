import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import WebSocket from 'ws';
import { CollectorServer, type CollectorOptions } from '../../harness/collector/collector-server.js';
import type { AgentKeyring } from '../../harness/collector/frame-authenticator.js';
import { ReportStore } from '../../harness/collector/report-store.js';
import { signFrame } from '../../contract/frame-signing.js';
import { CollectorClient, type CollectorClientOptions } from '../../agent/transport/collector-client.js';
import { Spool } from '../../agent/transport/spool.js';
import type { Report } from '../../contract/report-schema.js';
import { REPORT_SCHEMA_ID } from '../../contract/report-schema.js';

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function until<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function tempDir(prefix: string): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A real collector on loopback with a store in a temporary folder; stopped in teardown. */
export async function startCollector(
  t: Test,
  options: Partial<CollectorOptions> & { keyring: AgentKeyring | null; storeFile?: string },
  lines: string[] = [],
): Promise<{ collector: CollectorServer; store: ReportStore; port: number; storeFile: string }> {
  const storeFile = options.storeFile ?? path.join(tempDir('flinch-store-'), 'collector.sqlite');
  const store = new ReportStore(storeFile);
  const collector = new CollectorServer({
    host: '127.0.0.1', port: 0, timeProbeIntervalMs: 1000, keepInMemory: true, log: (l) => lines.push(l), ...options, store,
  });
  const address = await collector.start();
  t.teardown(async () => {
    await collector.stop();
    store.close();
  });
  return { collector, store, port: address.port, storeFile };
}

/** A minimal valid flinch.report/v1, numbered so that tests can tell reports apart. */
export function sampleReport(agentId: string, n: number, verdict: Report['verdict'] = 'transparent'): Report {
  const at = { realtimeMs: 1_800_000_000_000 + n, monotonicMs: 1000 + n };
  return {
    schema: REPORT_SCHEMA_ID,
    agentId,
    hostname: agentId,
    agentVersion: '0.1.0',
    episode: { id: `ep-${n}`, migrationId: null, openedAt: at, closedAt: at, durationMs: 0, triggers: [] },
    verdict,
    evidence: [],
    thresholds: { clockStepMs: 50, settleMs: 3000 },
    remediation: { mode: 'off', outcome: 'not-needed', timeToHealMs: null, actions: [] },
    observations: [],
    observationsDropped: 0,
  };
}

/** An agent in this process: the real CollectorClient and Spool, without probes. */
export function inProcessAgent(t: Test, url: string, agentId: string, key: string | null, spoolDir = tempDir('flinch-spool-'), livenessTimeoutMs = 10_000, extra: Partial<CollectorClientOptions> = {}) {
  const spool = new Spool({ dir: spoolDir, maxBytes: 256 * 1024 * 1024, segmentBytes: 1024 * 1024, log: () => undefined });
  const acks: number[] = [];
  const client = new CollectorClient({
    urls: [url],
    identity: () => ({ agentId, machineId: '0123456789abcdef0123456789abcdef', hostname: agentId, macs: ['52:54:00:00:00:01'], xenDomid: null, agentVersion: '0.1.0' }),
    key,
    spool,
    minBackoffMs: 20,
    maxBackoffMs: 200,
    livenessTimeoutMs,
    log: () => undefined,
    onAck: (seq) => acks.push(seq),
    ...extra,
  });
  client.start();
  t.teardown(() => client.close());
  return { client, spool, acks };
}

/** A raw WebSocket client that speaks (or abuses) the protocol by hand. */
export async function rawConnection(port: number): Promise<{
  ws: WebSocket;
  nonce: string;
  send: (frame: string | Buffer) => void;
  sendSigned: (key: string, message: unknown, nonce?: string) => void;
  closed: Promise<{ code: number; reason: string }>;
}> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  ws.on('error', () => undefined);
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  const nonce = await new Promise<string>((resolve, reject) => {
    ws.once('message', (data) => resolve((JSON.parse(data.toString()) as { nonce: string }).nonce));
    ws.once('close', () => reject(new Error('closed before the challenge')));
  });
  return {
    ws,
    nonce,
    closed,
    send: (frame) => ws.send(frame),
    sendSigned: (key, message, overrideNonce) => ws.send(signFrame(key, overrideNonce ?? nonce, typeof message === 'string' ? message : JSON.stringify(message))),
  };
}

export function helloFor(agentId: string, nonce: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'hello', protocol: 2, agentId, machineId: '0123456789abcdef0123456789abcdef', hostname: agentId,
    macs: ['52:54:00:00:00:02'], xenDomid: null, agentVersion: '0.1.0', nonce, stream: '00000000000000aa', spoolDropped: 0, ...extra,
  };
}
