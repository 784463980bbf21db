// 10 000 simulated agents against one `flinch collect` on this machine.
//   node --import ./bench/register-ts.mjs bench/fleet-collector.ts [agents=10000] [workers=4] [rates=2000,5000,8000] [seconds=20] [hostile=0] [reopen-ms=100]
// FLINCH_BENCH_CPU_PROFILE=DIR writes the collector's V8 CPU profile there (node --cpu-prof).
// With hostile > 0, one more worker holds that many hostile connections open from one address (127.0.0.2) throughout.
// The collector is the real CLI in its own process (its RSS is read from /proc); the agents are real WebSocket
// connections in a few worker processes, speaking the real protocol with signed frames. Prints a JSON summary.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../harness/project-paths.js';
import { askWorker, cpuSecondsOf, forkAgentsWorker, percentile } from './fleet-workers.js';

const [agentsArg = '10000', workersArg = '4', ratesArg = '2000,5000,8000', secondsArg = '20', hostileArg = '0', reopenArg = '100'] = process.argv.slice(2);
const HOSTILE = Number(hostileArg);
/** How soon a hostile connection the collector closed is opened again (ms). */
const REOPEN_MS = Number(reopenArg);
const AGENTS = Number(agentsArg);
const WORKERS = Number(workersArg);
const RATES = ratesArg.split(',').map(Number);
const SECONDS = Number(secondsArg);

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function rssOf(pid: number): { rssMiB: number; peakMiB: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  return { rssMiB: Math.round(kib('VmRSS') / 1024), peakMiB: Math.round(kib('VmHWM') / 1024) };
}



const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-fleet-bench-'));
const secret = 'bench-fleet-secret-0123456789abcdef0123';
writeFileSync(path.join(dir, 'fleet.secret'), secret, { mode: 0o600 });
const port = await freePort();
const collector = spawn(
  process.execPath,
  [...(process.env.FLINCH_BENCH_CPU_PROFILE ? ['--cpu-prof', `--cpu-prof-dir=${process.env.FLINCH_BENCH_CPU_PROFILE}`] : []), path.join(projectRoot(), 'dist', 'harness', 'cli.js'), 'collect', '--listen', `127.0.0.1:${port}`, '--store', path.join(dir, 'fleet.sqlite'), '--fleet-secret', path.join(dir, 'fleet.secret'), '--time-probe-interval', '10000'],
  { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } },
);
let collectorLog = '';
collector.stderr!.on('data', (d) => (collectorLog += d));
collector.once('exit', (code, signal) => {
  if (!stopping) {
    process.stderr.write(`the collector exited (${signal ?? code}) during the benchmark:\n${collectorLog.slice(-3000)}\n`);
    process.exit(1);
  }
});
let stopping = false;
for (let i = 0; i < 200 && !collectorLog.includes('listening'); i += 1) await sleep(50);
const idleRss = rssOf(collector.pid!);

const workers = Array.from({ length: WORKERS }, forkAgentsWorker);
const ask = askWorker;

let hostileWorker: (typeof workers)[number] | null = null;
if (HOSTILE > 0) {
  hostileWorker = forkAgentsWorker();
  await ask(hostileWorker, { cmd: 'hostile', port, count: HOSTILE, address: '127.0.0.2', reopenMs: REOPEN_MS }, 'hostile-started');
  await sleep(3000);
}
const hostileRss = rssOf(collector.pid!);

const ids = Array.from({ length: AGENTS }, (_, i) => `sim-${String(i).padStart(5, '0')}`);
const connectStart = performance.now();
const connected = await Promise.all(
  workers.map((worker, w) => ask<{ welcomed: number }>(worker, { cmd: 'connect', port, ids: ids.filter((_, i) => i % WORKERS === w), secret, concurrency: 64 }, 'connected')),
);
const connectSeconds = (performance.now() - connectStart) / 1000;
const welcomed = connected.reduce((sum, c) => sum + c.welcomed, 0);
const connectedRss = rssOf(collector.pid!);
process.stderr.write(`${welcomed}/${AGENTS} agents connected in ${connectSeconds.toFixed(1)} s; collector RSS ${connectedRss.rssMiB} MiB\n`);

const loads = [];
for (const rate of RATES) {
  const started = performance.now();
  const cpuBefore = { collector: cpuSecondsOf(collector.pid!), generators: workers.reduce((sum, w) => sum + cpuSecondsOf(w.pid!), 0) };
  const results = await Promise.all(
    workers.map((worker) => ask<{ sent: number; acked: number; unacked: number; latencies: number[]; disconnected: number; badFrames: number }>(worker, { cmd: 'load', ratePerSecond: rate / WORKERS, durationMs: SECONDS * 1000 }, 'loaded')),
  );
  const elapsed = (performance.now() - started) / 1000;
  // Where the two cores went: a collector short of CPU queues, and so do generators that cannot offer the rate.
  const cpuShare = {
    collector: +((cpuSecondsOf(collector.pid!) - cpuBefore.collector) / elapsed).toFixed(2),
    generators: +((workers.reduce((sum, w) => sum + cpuSecondsOf(w.pid!), 0) - cpuBefore.generators) / elapsed).toFixed(2),
  };
  const latencies = results.flatMap((r) => r.latencies).sort((a, b) => a - b);
  const sent = results.reduce((s, r) => s + r.sent, 0);
  const acked = results.reduce((s, r) => s + r.acked, 0);
  const load = {
    offeredPerSecond: rate,
    sent,
    acked,
    unacked: results.reduce((s, r) => s + r.unacked, 0),
    ackedPerSecond: Math.round(acked / SECONDS),
    ackLatencyMs: { p50: +percentile(latencies, 50).toFixed(1), p99: +percentile(latencies, 99).toFixed(1), max: +percentile(latencies, 100).toFixed(1) },
    disconnected: results.reduce((s, r) => s + r.disconnected, 0),
    badCollectorFrames: results.reduce((s, r) => s + r.badFrames, 0),
    wallSeconds: +elapsed.toFixed(1),
    coresUsed: cpuShare,
    collectorRss: rssOf(collector.pid!),
  };
  loads.push(load);
  process.stderr.write(`${JSON.stringify(load)}\n`);
}

for (const worker of [...workers, ...(hostileWorker ? [hostileWorker] : [])]) worker.send({ cmd: 'stop' });
const finalRss = rssOf(collector.pid!);
stopping = true;
collector.kill('SIGTERM');
await new Promise((resolve) => collector.once('exit', resolve));
// A run in which the collector refused what the agents sent measures nothing: say why, from the collector's log.
if (loads.some((l) => l.acked === 0)) process.stderr.write(`no report was acknowledged; the collector said:\n${collectorLog.slice(-2000)}\n`);
process.stdout.write(
  `${JSON.stringify({ agents: AGENTS, workers: WORKERS, welcomed, connectSeconds: +connectSeconds.toFixed(1), hostile: HOSTILE, hostileReopenMs: REOPEN_MS, refused: AGENTS - welcomed, collectorRss: { idle: idleRss, withHostile: hostileRss, connected: connectedRss, final: finalRss }, loads, cpus: os.cpus().length }, null, 2)}\n`,
);
