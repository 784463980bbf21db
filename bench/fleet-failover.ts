// Simulated agents against collectors on one machine: one collector on SQLite, or three on one PostgreSQL store with a
// collector killed (SIGKILL) halfway through the load.
//   node --import ./bench/register-ts.mjs bench/fleet-failover.ts sqlite|postgres [agents=10000] [rate=2000] [seconds=30] [workers=3] [kill=1]
// The collectors are the real CLI (`flinch collect`), PostgreSQL a real server (Debian's, a temporary cluster with its
// default durability: fsync and synchronous commit on); the agents are real WebSocket connections in worker
// processes speaking the real protocol, each moving to its next collector in rendezvous order when its own is gone
// and re-sending what was not acknowledged. Prints a JSON summary: reports/s, ack latency, how long the moved agents
// took to be welcomed elsewhere, and, from the store itself, how many reports were lost or stored twice.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Database from 'better-sqlite3';
import pg from 'pg';
import { projectRoot } from '../harness/project-paths.js';
import { askWorker, cpuSecondsOf, forkAgentsWorker, percentile } from './fleet-workers.js';
import { freePort, tempDir } from '../test/helpers/collector-fixtures.js';
import { startPostgres } from '../test/helpers/postgres.js';

const [kind = 'postgres', agentsArg = '10000', rateArg = '2000', secondsArg = '30', workersArg = '3', killArg = '1'] = process.argv.slice(2);
if (kind !== 'sqlite' && kind !== 'postgres') throw new Error('first argument: sqlite or postgres');
const AGENTS = Number(agentsArg);
const RATE = Number(rateArg);
const SECONDS = Number(secondsArg);
const WORKERS = Number(workersArg);



const dir = tempDir('flinch-failover-bench-');
const secret = 'bench-fleet-secret-0123456789abcdef0123';
writeFileSync(path.join(dir, 'fleet.secret'), secret, { mode: 0o600 });
const postgres = kind === 'postgres' ? await startPostgres() : null;
const store = postgres ? await postgres.database('fleet') : path.join(dir, 'fleet.sqlite');
const ports = await Promise.all(Array.from({ length: kind === 'postgres' ? 3 : 1 }, () => freePort()));
let stopping = false;
const collectors: ChildProcess[] = [];
for (const port of ports) {
  const child = spawn(process.execPath, [path.join(projectRoot(), 'dist', 'harness', 'cli.js'), 'collect', '--listen', `127.0.0.1:${port}`, '--store', store, '--fleet-secret', path.join(dir, 'fleet.secret'), '--time-probe-interval', '10000'], {
    stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' },
  });
  let log = '';
  child.stderr!.on('data', (d) => (log += d));
  child.once('exit', (code, signal) => {
    if (!stopping && signal !== 'SIGKILL') {
      process.stderr.write(`a collector exited (${signal ?? code}):\n${log.slice(-3000)}\n`);
      process.exit(1);
    }
  });
  for (let i = 0; i < 200 && !log.includes('listening'); i += 1) await sleep(50);
  collectors.push(child);
}

const workers = Array.from({ length: WORKERS }, forkAgentsWorker);
const ask = askWorker;

const ids = Array.from({ length: AGENTS }, (_, i) => `sim-${String(i).padStart(5, '0')}`);
const connectStart = performance.now();
const connected = await Promise.all(
  workers.map((worker, w) =>
    ask<{ welcomed: number }>(worker, { cmd: 'connect', port: ports[0], failoverPorts: ports.length > 1 ? ports : undefined, ids: ids.filter((_, i) => i % WORKERS === w), secret, concurrency: 48 }, 'connected'),
  ),
);
const welcomed = connected.reduce((sum, c) => sum + c.welcomed, 0);
process.stderr.write(`${welcomed}/${AGENTS} agents connected in ${((performance.now() - connectStart) / 1000).toFixed(1)} s\n`);

const cpuOf = (children: ChildProcess[]) => children.reduce((sum, c) => sum + cpuSecondsOf(c.pid!), 0);
const before = { collectors: cpuOf(collectors), generators: cpuOf(workers) };
const started = performance.now();
// The kill: halfway through, the first collector (a third of the agents' first choice) is gone without a word.
const killAt = kind === 'postgres' && killArg !== '0' ? SECONDS / 2 : null;
let killedAtMs: number | null = null;
if (killAt !== null) {
  setTimeout(() => {
    killedAtMs = performance.now() - started;
    collectors[0]!.kill('SIGKILL');
    process.stderr.write(`killed collector 1 of 3 at ${(killedAtMs / 1000).toFixed(1)} s\n`);
  }, killAt * 1000);
}
const results = await Promise.all(
  workers.map((worker) => ask<{ sent: number; acked: number; unacked: number; latencies: number[]; disconnected: number; badFrames: number; moves: number[] }>(worker, { cmd: 'load', ratePerSecond: RATE / WORKERS, durationMs: SECONDS * 1000, drainMs: 30_000 }, 'loaded')),
);
const elapsed = (performance.now() - started) / 1000;
const cores = { collectors: +((cpuOf(collectors) - before.collectors) / elapsed).toFixed(2), generators: +((cpuOf(workers) - before.generators) / elapsed).toFixed(2) };
const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
const moves = results.flatMap((r) => r.moves).sort((a, b) => a - b);
const sent = results.reduce((s, r) => s + r.sent, 0);
const acked = results.reduce((s, r) => s + r.acked, 0);

for (const worker of workers) worker.send({ cmd: 'stop' });
stopping = true;
for (const child of collectors) if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
await Promise.all(collectors.map((child) => (child.exitCode === null && child.signalCode === null ? new Promise((resolve) => child.once('exit', resolve)) : null)));

// From the store itself: every report the agents sent is there once (their seqs were never re-used).
let stored: number;
let agentsWithGaps: number;
if (postgres) {
  const client = new pg.Client({ connectionString: store });
  await client.connect();
  stored = Number((await client.query('SELECT COUNT(*) AS n FROM reports')).rows[0].n);
  agentsWithGaps = Number((await client.query('SELECT COUNT(*) AS n FROM (SELECT agent_id FROM reports GROUP BY agent_id HAVING COUNT(*) <> MAX(seq)) g')).rows[0].n);
  await client.end();
  await postgres.stop();
} else {
  const db = new Database(store, { readonly: true });
  stored = (db.prepare('SELECT COUNT(*) AS n FROM reports').get() as { n: number }).n;
  agentsWithGaps = (db.prepare('SELECT COUNT(*) AS n FROM (SELECT agent_id FROM reports GROUP BY agent_id HAVING COUNT(*) <> MAX(seq))').get() as { n: number }).n;
  db.close();
}

process.stdout.write(`${JSON.stringify({
  store: kind, collectors: ports.length, agents: AGENTS, welcomed, offeredPerSecond: RATE, seconds: SECONDS,
  sent, acked, unacked: results.reduce((s, r) => s + r.unacked, 0), ackedPerSecond: Math.round(acked / SECONDS),
  stored, lost: sent - stored, agentsWithGaps,
  ackLatencyMs: { p50: +percentile(latencies, 50).toFixed(1), p99: +percentile(latencies, 99).toFixed(1), max: +percentile(latencies, 100).toFixed(1) },
  killedAtS: killedAtMs === null ? null : +(killedAtMs / 1000).toFixed(1),
  moved: moves.length, moveMs: moves.length ? { p50: Math.round(percentile(moves, 50)), p99: Math.round(percentile(moves, 99)), max: Math.round(percentile(moves, 100)) } : null,
  disconnectedAtEnd: results.reduce((s, r) => s + r.disconnected, 0), badCollectorFrames: results.reduce((s, r) => s + r.badFrames, 0),
  coresUsed: cores, cpus: os.cpus().length,
}, null, 2)}\n`);
process.exit(0);
