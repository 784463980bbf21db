import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, UserError } from '../../contract/command-line.js';
import { runCommand } from '../../system/run-command.js';
import { agentKeyFor } from '../../contract/frame-signing.js';
import { BlackoutMeter } from '../blackout/blackout-meter.js';
import { completedCampaign, waitForAgentHello, type CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { GuestTarget } from '../campaign/campaign-target.js';
import { SimDriver, type SimDriverOptions } from '../drivers/sim-driver.js';
import { hostNowMs } from '../host-clock.js';
import { guestAgentExecutable } from '../project-paths.js';
import { GUEST_ECHO_PORT } from './guest-initramfs.js';
import { holdingSignals, runInsideNamespace, type InsideStep } from './lab-network.js';
import { runCampaignInside, type CampaignPlan } from './campaign-inside.js';

export const SIM_CAMPAIGN_INSIDE: InsideStep = { subcommand: 'sim-campaign-inner', planVariable: 'FLINCH_SIM_PLAN', parent: 'flinch campaign --driver sim' };
const AGENT_ID = 'flinch-sim-guest';

/** What the part inside the simulated host namespace needs, handed to it as JSON: the namespaces are made already. */
interface SimPlan extends CampaignPlan {
  sim: SimDriverOptions;
}

/**
 * `flinch campaign --driver sim`: a SIMULATION (see harness/drivers/sim-driver.ts). The guest is a network namespace
 * running the single-executable agent; a migration freezes it; the collector and the blackout meter sit in the "host"
 * namespace, where this program re-runs itself.
 */
export async function runSimCampaign(options: CampaignOptions, log: (line: string) => void): Promise<CampaignOutcome | number> {
  if (process.getuid?.() !== 0) throw new UserError('flinch campaign --driver sim needs root: it creates network namespaces and a cgroup', EXIT.needsRoot);
  if (!existsSync(guestAgentExecutable())) throw new UserError(`the single-executable agent ${guestAgentExecutable()} is missing; run npm run build`, EXIT.missingTool);
  const done = completedCampaign(options, 'sim');
  if (done) return done;
  // The inner part runs under `ip netns exec`, which hides /sys/fs/cgroup: it reaches the freezer through a second
  // mount of the same hierarchy, made here and removed afterwards.
  const freezerRoot = `/run/flinch-sim-${process.pid}-cgroup`;
  return holdingSignals(async (stopIfSignalled) => {
    mkdirSync(freezerRoot, { recursive: true });
    const v1 = existsSync('/sys/fs/cgroup/freezer/cgroup.procs');
    await runCommand('mount', v1 ? ['-t', 'cgroup', '-o', 'freezer', 'flinch-freezer', freezerRoot] : ['-t', 'cgroup2', 'flinch-cgroup2', freezerRoot]);
    const sim: SimDriverOptions = { id: String(process.pid), downtimeMs: 300, guestAddress: '10.9.0.2', hostAddress: '10.9.0.1', prefixLength: 24, guestMac: '52:54:00:51:00:01', freezerRoot };
    const driver = new SimDriver(sim);
    try {
      await driver.prepare();
      stopIfSignalled();
      return await runInsideNamespace(driver.hostNetns, SIM_CAMPAIGN_INSIDE, { options, sim, startedAtMs: hostNowMs() } satisfies SimPlan);
    } finally {
      await driver.cleanup();
      await runCommand('umount', [freezerRoot]).catch(() => undefined);
      // Never recursive: if the unmount failed, this is a live cgroup hierarchy.
      try {
        rmdirSync(freezerRoot);
      } catch {
        log(`could not remove ${freezerRoot}; unmount it by hand`);
      }
    }
  });
}

/** The part of the sim campaign that runs in the simulated host namespace: the campaign against the frozen namespace. */
export const runSimCampaignInside = (log: (line: string) => void) => runCampaignInside(SIM_CAMPAIGN_INSIDE, simTarget, log);

/** The simulated guest: the single-executable agent in its namespace, frozen by the cgroup freezer to "migrate". */
function simTarget(plan: SimPlan): GuestTarget {
  const { options, sim } = plan;
  const driver = new SimDriver(sim);
  const stateDir = path.join(os.tmpdir(), `flinch-sim-state-${sim.id}`);
  let agent: ChildProcess | null = null;
  let meter: BlackoutMeter | null = null;
  return {
    driverName: 'sim',
    collectorHost: sim.hostAddress,
    collectorPort: 0,
    async bringUp({ collector, fleetSecret, collectorPort, logsDir, log }) {
      const tokenFile = path.join(logsDir, 'agent.token');
      writeFileSync(tokenFile, `${agentKeyFor(fleetSecret, AGENT_ID)}\n`, { mode: 0o600 });
      const agentLog = openSync(path.join(logsDir, 'agent.log'), 'a');
      const child = spawn('ip', ['netns', 'exec', driver.guestNetns, guestAgentExecutable(), 'run', '--collector', `ws://${sim.hostAddress}:${collectorPort}`, '--agent-id', AGENT_ID,
        '--token-file', tokenFile, '--accept-announce', '--remediate', 'on', '--udp-echo', String(GUEST_ECHO_PORT), '--state-dir', stateDir], { stdio: ['ignore', agentLog, agentLog] });
      agent = child;
      // `ip netns exec` execs the agent, so this PID is the agent's: the one the freezer must hold.
      driver.adopt(child.pid!);
      const bootStart = hostNowMs();
      const record = await waitForAgentHello(collector, AGENT_ID, options.bootTimeoutMs, () => (child.exitCode !== null ? `the agent exited (${child.exitCode})` : null)).catch((error: Error) => {
        throw new Error(`the simulated guest's agent did not connect: ${error.message} (see ${path.join(logsDir, 'agent.log')})`);
      });
      const bootToAgentMs = hostNowMs() - bootStart;
      log(`agent ${AGENT_ID} connected ${(bootToAgentMs / 1000).toFixed(1)} s after start (namespace simulation)`);
      meter = options.blackoutIntervalMs > 0 ? new BlackoutMeter({ host: sim.guestAddress, port: GUEST_ECHO_PORT }, options.blackoutIntervalMs) : null;
      return {
        driver, agent: record, meter, where: () => driver.guestNetns, bootToAgentMs: Math.round(bootToAgentMs),
        hypervisor: { driver: 'sim', qemu: null, destQemu: null },
        guest: { kernel: `host kernel ${os.release()} (namespace simulation)`, memoryMiB: 0, bootToAgentMs: Math.round(bootToAgentMs) },
      };
    },
    async tearDown() {
      meter?.stop();
      await driver.freezer.freeze(false).catch(() => undefined);
      if (agent && agent.exitCode === null) {
        const running = agent;
        const exited = new Promise((resolve) => running.once('exit', resolve));
        running.kill('SIGTERM');
        await Promise.race([exited, sleep(5000)]);
      }
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}
