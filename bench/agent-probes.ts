// Benchmark (issue 3): the agent's idle cost against a bare node process with the same timers, and how fast a
// firewall flush is observed (nftables via netlink events, iptables-legacy via polling).
// Usage, as root: npm run build && node --import ./bench/register-ts.mjs bench/agent-probes.ts [idleSeconds] [trials]
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { addNetns, deleteNetns } from '../system/ip.js';
import { runCommand } from '../system/run-command.js';
import { median } from '../contract/clock-offset.js';
import { guestAgentBundle } from '../harness/project-paths.js';
import { DEFAULT_PROBE_SETTINGS } from '../probes/registry.js';

const idleSeconds = Number(process.argv[2] ?? 60);
const trials = Number(process.argv[3] ?? 30);
const TICKS_PER_SECOND = 100;

function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_SECOND;
}

function rssKiB(pid: number): number {
  const match = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(match?.[1] ?? 0);
}

/** A bare node process that wakes exactly as often as the agent's timers do, and does nothing else. */
const BARE_TIMERS = `
setInterval(() => {}, ${DEFAULT_PROBE_SETTINGS.clock.intervalMs});
setInterval(() => {}, 200);
setInterval(() => {}, ${DEFAULT_PROBE_SETTINGS.values['legacy-poll']});
`;

function inNetns(netns: string, argv: string[]): ChildProcess {
  return spawn('ip', ['netns', 'exec', netns, ...argv], { stdio: ['ignore', 'pipe', 'ignore'] });
}

/** The node process under `ip netns exec` (its only child). */
async function innerPid(child: ChildProcess): Promise<number> {
  for (let i = 0; i < 100; i += 1) {
    try {
      const pid = Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ')[0]);
      if (pid > 0) return pid;
    } catch {
      // ip has exec'd node itself: the pid is node's
      return child.pid!;
    }
    await sleep(20);
  }
  return child.pid!;
}

async function idleCost(netns: string) {
  const agent = inNetns(netns, [process.execPath, guestAgentBundle(), 'watch', '--json']);
  const bare = inNetns(netns, [process.execPath, '-e', BARE_TIMERS]);
  await sleep(3000); // start-up (canaries, first reads) is not idle
  const [agentPid, barePid] = [await innerPid(agent), await innerPid(bare)];
  const [a0, b0] = [cpuMs(agentPid), cpuMs(barePid)];
  await sleep(idleSeconds * 1000);
  const result = {
    agentCpuPercent: ((cpuMs(agentPid) - a0) / (idleSeconds * 1000)) * 100,
    bareCpuPercent: ((cpuMs(barePid) - b0) / (idleSeconds * 1000)) * 100,
    agentRssMiB: rssKiB(agentPid) / 1024,
    bareRssMiB: rssKiB(barePid) / 1024,
  };
  agent.kill('SIGTERM');
  bare.kill('SIGTERM');
  return result;
}

async function flushLatency(netns: string, backend: 'nftables' | 'iptables-legacy', afterExit: number[]): Promise<number[]> {
  const probes = backend === 'nftables' ? 'nftables' : 'iptables';
  const agent = inNetns(netns, [process.execPath, guestAgentBundle(), 'watch', '--json', '--probes', probes]);
  const seen: Array<{ at: number; backend: string; removed: number }> = [];
  let buffer = '';
  agent.stdout!.on('data', (chunk: Buffer) => {
    buffer += chunk.toString();
    let nl: number;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const o = JSON.parse(buffer.slice(0, nl));
      buffer = buffer.slice(nl + 1);
      if (o.kind === 'firewall') seen.push({ at: o.at.realtimeMs, backend: o.backend, removed: o.removed.length });
    }
  });
  await sleep(1500);
  const exec = (cmd: string, ...args: string[]) => runCommand('ip', ['netns', 'exec', netns, cmd, ...args]);
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
  const sorted = [...values].sort((a, b) => a - b);
  return `median ${median(values).toFixed(0)} ms, p90 ${sorted[Math.floor(sorted.length * 0.9)]!.toFixed(0)} ms, max ${sorted[sorted.length - 1]!.toFixed(0)} ms (n=${values.length})`;
}

const netns = `flinch-bench-${process.pid}`;
await addNetns(netns);
try {
  await runCommand('ip', ['netns', 'exec', netns, 'iptables-legacy', '-A', 'INPUT', '-j', 'ACCEPT']);
  const idle = await idleCost(netns);
  console.log(`idle ${idleSeconds} s, all probes: agent CPU ${idle.agentCpuPercent.toFixed(3)} % of one core, RSS ${idle.agentRssMiB.toFixed(1)} MiB`);
  console.log(`bare node, same timers:      CPU ${idle.bareCpuPercent.toFixed(3)} % of one core, RSS ${idle.bareRssMiB.toFixed(1)} MiB`);
  console.log(`RSS ratio ${(idle.agentRssMiB / idle.bareRssMiB).toFixed(2)}x`);
  // The flush command runs through `ip netns exec`; the commit happens somewhere between its start and its exit.
  const nftExit: number[] = [];
  console.log(`nft flush → observation, from the command's start: ${summary(await flushLatency(netns, 'nftables', nftExit))}`);
  console.log(`                          from the command's exit:  ${summary(nftExit)}`);
  const legacyExit: number[] = [];
  console.log(`iptables-legacy -F → observation (poll every ${DEFAULT_PROBE_SETTINGS.values['legacy-poll']} ms), from start: ${summary(await flushLatency(netns, 'iptables-legacy', legacyExit))}`);
} finally {
  await deleteNetns(netns);
}
