// Benchmark (issue 13): an idle agent with every probe and --remediate on, in a namespace, reporting to a real
// collector, while the host is kept busy (stress-ng --cpu N): how many episodes it opens (the goal is none), what
// noise floor it learns, and whether the safety net changed anything.
// Usage, as root: npm run build && node --import ./bench/register-ts.mjs bench/idle-soak.ts MINUTES [STRESS_CPUS]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { addNetns, deleteNetns, ip } from '../system/ip.js';
import { runCommand } from '../system/run-command.js';
import { guestAgentBundle, projectRoot } from '../harness/project-paths.js';

const minutes = Number(process.argv[2] ?? 30);
const stressCpus = Number(process.argv[3] ?? 2);
const netns = `flinch-soak-${process.pid}`;
const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-soak-'));
const key = 's'.repeat(64);
writeFileSync(path.join(dir, 'keys'), `soak ${key}\n`, { mode: 0o600 });
writeFileSync(path.join(dir, 'token'), `${key}\n`, { mode: 0o600 });

function inNetns(argv: string[], log: string): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c) => (out += c));
  child.stderr!.on('data', (c) => (out += c));
  child.on('exit', () => writeFileSync(path.join(dir, log), out));
  (child as ChildProcess & { output: () => string }).output = () => out;
  return child;
}

await addNetns(netns);
const children: ChildProcess[] = [];
try {
  await ip(['link', 'set', 'lo', 'up'], { netns });
  await ip(['link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb'], { netns });
  await ip(['addr', 'add', '192.0.2.10/24', 'dev', 'va'], { netns });
  await ip(['link', 'set', 'va', 'up'], { netns });
  await ip(['link', 'set', 'vb', 'up'], { netns });
  await runCommand('ip', ['netns', 'exec', netns, 'nft', '-f', path.join(projectRoot(), 'harness', 'lab', 'guest', 'firewall.nft')]);
  const collector = inNetns([process.execPath, path.join(projectRoot(), 'dist', 'harness', 'cli.js'), 'collect', '--listen', '127.0.0.1:7431',
    '--store', path.join(dir, 'soak.sqlite'), '--agent-keys', path.join(dir, 'keys'), '--time-probe-interval', '10000'], 'collector.log');
  children.push(collector);
  await sleep(2000);
  const agent = inNetns([process.execPath, guestAgentBundle(), 'run', '--collector', 'ws://127.0.0.1:7431', '--agent-id', 'soak',
    '--token-file', path.join(dir, 'token'), '--remediate', 'on', '--state-dir', path.join(dir, 'state')], 'agent.log');
  children.push(agent);
  await sleep(5000);
  const stress = stressCpus > 0 ? spawn('stress-ng', ['--cpu', String(stressCpus), '--timeout', `${minutes * 60}s`, '--quiet'], { stdio: 'ignore' }) : null;
  if (stress) children.push(stress);
  const started = Date.now();
  await sleep(minutes * 60_000);
  const exited = new Promise((resolve) => agent.once('exit', resolve));
  agent.kill('SIGTERM');
  await exited;
  const log = (agent as ChildProcess & { output: () => string }).output();
  const reportsFile = path.join(dir, 'state', 'reports.jsonl');
  const reports = existsSync(reportsFile) ? readFileSync(reportsFile, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { verdict: string; episode: { triggers: Array<{ kind: string; detail: string }> } }) : [];
  console.log(JSON.stringify({
    minutes: (Date.now() - started) / 60_000,
    stressCpus,
    episodes: reports.length,
    verdicts: reports.map((r) => r.verdict),
    triggers: reports.map((r) => r.episode.triggers.map((t) => `${t.kind}: ${t.detail}`)),
    noiseFloor: /pause noise: .*/.exec(log)?.[0] ?? null,
    changesMade: log.split('\n').filter((l) => /safety net: (ok|failed|conflict):/.test(l)),
    leftAlone: log.split('\n').filter((l) => /safety net: left-alone/.test(l)).length,
    logs: dir,
  }, null, 2));
} finally {
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
  await sleep(500);
  await deleteNetns(netns).catch(() => undefined);
}
