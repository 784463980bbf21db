// Benchmark (issue 3): the agent's idle cost against a bare node process with the same timers, and how fast a
// firewall flush is observed (nftables via netlink events, iptables-legacy via polling).
// Usage, as root: npm run build && node --import ./bench/register-ts.mjs bench/agent-probes.ts [idleSeconds] [trials] [--idle-only]
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { addNetns, deleteNetns } from '../system/ip.js';
import { runCommand } from '../system/run-command.js';
import { median } from '../contract/clock-offset.js';
import { guestAgentBundle, guestAgentExecutable, projectRoot } from '../harness/project-paths.js';
import { DEFAULT_PROBE_SETTINGS } from '../probes/registry.js';
import { LEGACY_ATTENTION_MS } from '../probes/firewall/iptables-probe.js';
import { STARTUP_SETTLE_MS } from '../agent/startup-garbage.js';

const idleSeconds = Number(process.argv[2] ?? 60);
const trials = Number(process.argv[3] ?? 30);
/** `--idle-only`: the side-by-side idle figures, without the flush latencies. */
const idleOnly = process.argv.includes('--idle-only');
const TICKS_PER_SECOND = 100;

/**
 * CPU time of the process, all its threads, from the scheduler's own count (/proc/PID/task/TID/schedstat, in ns): the
 * tick-sampled utime + stime charges a whole 10 ms tick to whoever runs when it fires, which for a process awake a
 * few hundred µs at a time is mostly luck. With `reaped`, cutime + cstime (ticks: the only count there is) of its
 * children that exited and were waited for.
 */
function cpuMs(pid: number, reaped = false): number {
  if (reaped) {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[13]) + Number(fields[14])) * 1000) / TICKS_PER_SECOND;
  }
  let ns = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return ns / 1e6;
}

/**
 * Drops each file from the page cache and reads it back whole, so that the agent's binary (just written by the build)
 * and node's (cached for days) are mapped from the same kind of cache: the kernel maps a fault's neighbours too when
 * they are cached, in pieces as large as the cache holds them, and the resident pages of an identical binary differed
 * by 6 MB between a freshly written copy and one read back (BENCHMARKS.md, issue 19).
 */
async function evenPageCache(files: string[]): Promise<void> {
  for (const file of files) {
    await runCommand('sync', [file]);
    await runCommand('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
    readFileSync(file);
  }
}

function rssKiB(pid: number, field: 'VmRSS' | 'RssAnon' = 'VmRSS'): number {
  const match = new RegExp(`${field}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0);
}

/** A bare node process that wakes exactly as often as the agent's timers do, and does nothing else. */
const BARE_TIMERS = `
setInterval(() => {}, ${DEFAULT_PROBE_SETTINGS.clock.intervalMs});
setInterval(() => {}, ${DEFAULT_PROBE_SETTINGS.values['kmsg-poll']});
setInterval(() => {}, ${DEFAULT_PROBE_SETTINGS.values['legacy-idle-poll']});
`;

function inNetns(netns: string, argv: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'ignore'] });
}

/**
 * Every process below `pid` (its children, theirs, …), from /proc/PID/task/TID/children. `ip netns exec` execs the
 * program it is given, so the spawned PID is the program itself and its children are its own: the agent's `nft
 * monitor`, which an earlier version of this benchmark measured as if it were the agent.
 */
function descendants(pid: number): number[] {
  const found: number[] = [];
  const visit = (p: number) => {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const task of tasks) {
      let children: number[] = [];
      try {
        children = readFileSync(`/proc/${p}/task/${task}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
      } catch {
        continue;
      }
      for (const child of children) {
        found.push(child);
        visit(child);
      }
    }
  };
  visit(pid);
  return found;
}

/** CPU ms and RSS KiB of a process alone, and of its descendants together (as they are at the moment of reading). */
function usage(pid: number): { cpuMs: number; rssKiB: number; anonKiB: number; childrenCpuMs: number; childrenRssKiB: number; children: string[] } {
  const children = descendants(pid);
  const alive = children.filter((c) => existsSync(`/proc/${c}/stat`));
  const sum = (f: (p: number) => number) => alive.reduce((total, p) => total + (() => { try { return f(p); } catch { return 0; } })(), 0);
  return {
    // Live descendants (nft monitor) and the ones already gone (each legacy poll's iptables-legacy-save) alike.
    cpuMs: cpuMs(pid), rssKiB: rssKiB(pid), anonKiB: rssKiB(pid, 'RssAnon'), childrenCpuMs: sum((p) => cpuMs(p)) + cpuMs(pid, true), childrenRssKiB: sum(rssKiB),
    children: alive.map((p) => { try { return readFileSync(`/proc/${p}/comm`, 'utf8').trim(); } catch { return '?'; } }),
  };
}

/** Debian's qemu-guest-agent, unpacked into the cache (never installed here): the guest agent a fleet already runs. */
async function qemuGuestAgent(): Promise<string | null> {
  const dir = '/var/cache/flinch/qemu-guest-agent';
  const binary = path.join(dir, 'usr', 'sbin', 'qemu-ga');
  if (existsSync(binary)) return binary;
  const work = mkdtempSync(path.join(os.tmpdir(), 'flinch-qga-'));
  try {
    await runCommand('apt-get', ['download', '-q', 'qemu-guest-agent'], { cwd: work, timeout: 300_000 });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) return null;
    await runCommand('dpkg', ['-x', path.join(work, deb), dir]);
    return existsSync(binary) ? binary : null;
  } catch {
    return null;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

interface IdleFigures { cpuPercent: number; rssMiB: number; anonMiB: number; childrenCpuPercent: number; childrenRssMiB: number; children: string[] }

/** Starts each command in the namespace, lets start-up pass, and measures each over the same idle seconds, side by side. */
async function idleCost(netns: string, commands: Record<string, string[]>): Promise<Record<string, IdleFigures>> {
  const started = Object.fromEntries(Object.entries(commands).map(([name, argv]) => [name, inNetns(netns, argv)]));
  // Start-up (canaries, the baseline, first reads, the one collection of its garbage) is not idle, nor are the two
  // minutes of close attention that the canaries' own appearance starts.
  await sleep(Math.max(STARTUP_SETTLE_MS, LEGACY_ATTENTION_MS) + 10_000);
  const before = Object.fromEntries(Object.entries(started).map(([name, child]) => [name, usage(child.pid!)]));
  await sleep(idleSeconds * 1000);
  const figures: Record<string, IdleFigures> = {};
  for (const [name, child] of Object.entries(started)) {
    const after = usage(child.pid!);
    const b = before[name]!;
    figures[name] = {
      cpuPercent: ((after.cpuMs - b.cpuMs) / (idleSeconds * 1000)) * 100,
      rssMiB: after.rssKiB / 1024,
      anonMiB: after.anonKiB / 1024,
      childrenCpuPercent: ((after.childrenCpuMs - b.childrenCpuMs) / (idleSeconds * 1000)) * 100,
      childrenRssMiB: after.childrenRssKiB / 1024,
      children: after.children,
    };
    child.kill('SIGTERM');
  }
  return figures;
}

async function flushLatency(netns: string, backend: 'nftables' | 'iptables-legacy', afterExit: number[]): Promise<number[]> {
  // The link probe too for the legacy back end: the new interface below is what draws the agent's attention.
  const probes = backend === 'nftables' ? 'nftables' : 'iptables,link';
  const agent = inNetns(netns, [process.execPath, guestAgentBundle(), 'watch', '--json', '--probes', probes]);
  const seen: Array<{ at: number; backend: string; removed: number }> = [];
  let buffer = '';
  agent.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      // `watch --json` lines: {"type": "observation", "schema": ..., "observation": {...}} (or a report).
      const line = JSON.parse(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      const o = line.type === 'observation' ? line.observation : null;
      if (o?.kind === 'firewall') seen.push({ at: o.at.realtimeMs, backend: o.backend, removed: o.removed.length });
    }
  });
  await sleep(1500);
  const exec = (cmd: string, ...args: string[]) => runCommand('ip', ['netns', 'exec', netns, cmd, ...args]);
  // A new interface: something happened, so the legacy poll runs at its fast rate for the trials (about 45 s of the
  // two minutes). A lone flush with nothing else happening is seen by the idle poll instead, within its period.
  if (backend === 'iptables-legacy') await exec('ip', 'link', 'add', 'bench-a', 'type', 'veth', 'peer', 'name', 'bench-b');
  const latencies: number[] = [];
  for (let i = 0; i < trials; i += 1) {
    if (backend === 'nftables') await exec('nft', 'add table inet bench; add chain inet bench c { type filter hook input priority 0; }; add rule inet bench c tcp dport 1 drop');
    else await exec('iptables-legacy', '-A', 'INPUT', '-p', 'tcp', '--dport', '1', '-j', 'DROP');
    await sleep(backend === 'nftables' ? 100 : 1200);
    const mark = seen.length;
    const t0 = Date.now();
    if (backend === 'nftables') await exec('nft', 'flush', 'table', 'inet', 'bench');
    else await exec('iptables-legacy', '-F', 'INPUT');
    const t1 = Date.now();
    for (let w = 0; w < 300; w += 1) {
      const hit = seen.slice(mark).find((s) => s.backend === backend && s.removed > 0);
      if (hit) {
        latencies.push(hit.at - t0);
        afterExit.push(hit.at - t1);
        break;
      }
      await sleep(5);
    }
  }
  agent.kill('SIGTERM');
  return latencies;
}

function summary(values: number[]): string {
  if (values.length === 0) return `none seen in ${trials} trials`;
  const sorted = [...values].sort((a, b) => a - b);
  return `median ${median(values).toFixed(0)} ms, p90 ${sorted[Math.floor(sorted.length * 0.9)]!.toFixed(0)} ms, max ${sorted[sorted.length - 1]!.toFixed(0)} ms (n=${values.length})`;
}

const netns = `flinch-bench-${process.pid}`;
await addNetns(netns);
const stateDir = mkdtempSync(path.join(os.tmpdir(), 'flinch-bench-state-'));
try {
  await runCommand('ip', ['netns', 'exec', netns, 'ip', 'link', 'set', 'lo', 'up']);
  await runCommand('ip', ['netns', 'exec', netns, 'iptables-legacy', '-A', 'INPUT', '-j', 'ACCEPT']);
  const qga = await qemuGuestAgent();
  await evenPageCache([guestAgentExecutable(), process.execPath, ...(qga ? [qga] : [])]);
  const commands: Record<string, string[]> = {
    // What a fleet runs: the single-file agent, every probe, the safety net on (canaries in), no collector.
    'flinch-agent run (SEA), all probes, --remediate on': [guestAgentExecutable(), 'run', '--remediate', 'on', '--state-dir', stateDir],
    'bare node, the same timers': [process.execPath, '-e', BARE_TIMERS],
    ...(qga ? { "Debian's qemu-guest-agent (idle, unix socket)": [qga, '-m', 'unix-listen', '-p', path.join(stateDir, 'qga.sock')] } : {}),
    // V8 without its compilers (NODE_OPTIONS=--jitless, which a single executable honours): less code and heap, the
    // agent's little JavaScript interpreted.
    'flinch-agent run (SEA), all probes, --remediate off, NODE_OPTIONS=--jitless': ['env', 'NODE_OPTIONS=--jitless', guestAgentExecutable(), 'run', '--remediate', 'off', '--state-dir', path.join(stateDir, 'jitless')],
    // As the Debian package's unit starts it, with --config: the YAML parser is loaded only when a file is given.
    'flinch-agent run (SEA), all probes, --remediate on, --config (the packaged agent.yaml)': [guestAgentExecutable(), 'run', '--config', path.join(projectRoot(), 'packaging/deb/agent.yaml'), '--remediate', 'on', '--state-dir', path.join(stateDir, 'configured')],
    // The safety net's share: the same agent observing only.
    'flinch-agent run (SEA), all probes, --remediate off': [guestAgentExecutable(), 'run', '--remediate', 'off', '--state-dir', path.join(stateDir, 'observing-only')],
  };
  const idle = await idleCost(netns, commands);
  console.log(`idle ${idleSeconds} s, side by side in one namespace (an iptables-legacy rule present, so the legacy poll runs):`);
  for (const [name, f] of Object.entries(idle)) {
    console.log(`  ${name}: CPU ${f.cpuPercent.toFixed(3)} % of one core, RSS ${f.rssMiB.toFixed(1)} MiB (private ${f.anonMiB.toFixed(1)} MiB)` +
      (f.children.length ? `; its children (${f.children.join(', ')}): CPU ${f.childrenCpuPercent.toFixed(3)} %, RSS ${f.childrenRssMiB.toFixed(1)} MiB` : ''));
  }
  const agent = Object.values(idle)[0]!;
  const bare = Object.values(idle)[1]!;
  console.log(`RSS ratio agent / bare node: ${(agent.rssMiB / bare.rssMiB).toFixed(2)}x (with its children: ${((agent.rssMiB + agent.childrenRssMiB) / bare.rssMiB).toFixed(2)}x)`);
  console.log(`single-file agent on disk: ${(statSync(guestAgentExecutable()).size / 1024 ** 2).toFixed(1)} MiB`);
  // Not process.exit: the namespace and the state directory go in the finally below.
  if (!idleOnly) {
    // The flush command runs through `ip netns exec`; the commit happens somewhere between its start and its exit.
    const nftExit: number[] = [];
    console.log(`nft flush → observation, from the command's start: ${summary(await flushLatency(netns, 'nftables', nftExit))}`);
    console.log(`                          from the command's exit:  ${summary(nftExit)}`);
    const legacyExit: number[] = [];
    console.log(`iptables-legacy -F → observation (attentive poll every ${DEFAULT_PROBE_SETTINGS.values['legacy-poll']} ms), from start: ${summary(await flushLatency(netns, 'iptables-legacy', legacyExit))}`);
  }
} finally {
  await deleteNetns(netns);
  rmSync(stateDir, { recursive: true, force: true });
}
