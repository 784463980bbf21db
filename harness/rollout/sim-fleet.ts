import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, UserError } from '../../contract/command-line.js';
import { addNetns, deleteNetns, ip } from '../../system/ip.js';
import { diesWithThisProcess } from '../../system/child-lifetime.js';
import { SimDriver, type SimDriverOptions } from '../drivers/sim-driver.js';
import type { FaultName } from '../drivers/migration-driver.js';
import { guestAgentExecutable, projectRoot } from '../project-paths.js';
import { ReportStore } from '../collector/report-store.js';
import type { RolloutGuest } from './rollout-runner.js';

/** The simulated host's address on the bridge all simulated guests share, and where its collector listens. */
const HOST_ADDRESS = '10.79.0.1';
const COLLECTOR_PORT = 7431;
const BRIDGE = 'simbr0';

export interface SimFleet {
  guests: RolloutGuest[];
  /** The collector's store (SQLite): where the rollout reads verdicts, as it would a real fleet's. */
  store: ReportStore;
  /** Stops the agents and the collector (by PID) and deletes the namespaces. */
  stop(): Promise<void>;
}

/**
 * A SIMULATED fleet for `flinch rollout --driver sim` (see harness/drivers/sim-driver.ts): `count` guests, each a
 * network namespace running the single-executable agent, all on one bridge in one "host" namespace where a real
 * `flinch collect` listens. A migration freezes the guest's agent for `downtimeMs`; a guest named in `faults` also
 * suffers those faults just after its migration (`guest-firewall-flush`: its firewall is flushed, which an agent
 * without --remediate on reports as disrupted). Nothing here is a hypervisor.
 */
export async function startSimFleet(options: { count: number; downtimeMs: number; faults: ReadonlyMap<string, readonly FaultName[]>; log: (line: string) => void }): Promise<SimFleet> {
  if (process.getuid?.() !== 0) throw new UserError('flinch rollout --driver sim needs root: it creates network namespaces and cgroups', EXIT.needsRoot);
  if (!existsSync(guestAgentExecutable())) throw new UserError(`the single-executable agent ${guestAgentExecutable()} is missing; run npm run build`, EXIT.missingTool);
  if (options.count < 1 || options.count > 250) throw new UserError('--guests: between 1 and 250 simulated guests', EXIT.usage);
  const id = `r${process.pid}`;
  const hostNetns = `flinch-sim-${id}-host`;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-sim-fleet-'));
  const drivers: SimDriver[] = [];
  const agents: ChildProcess[] = [];
  let collector: ChildProcess | null = null;
  let store: ReportStore | null = null;
  const stop = async () => {
    for (const driver of drivers) await driver.freezer.freeze(false).catch(() => undefined);
    for (const child of [...agents, ...(collector ? [collector] : [])]) {
      if (child.exitCode !== null || child.signalCode !== null) continue;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, sleep(5000)]);
    }
    store?.close();
    for (const driver of drivers) await driver.cleanup();
    await deleteNetns(hostNetns).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await addNetns(hostNetns);
    await ip(['link', 'set', 'lo', 'up'], { netns: hostNetns });
    await ip(['link', 'add', BRIDGE, 'type', 'bridge'], { netns: hostNetns });
    await ip(['addr', 'add', `${HOST_ADDRESS}/16`, 'dev', BRIDGE], { netns: hostNetns });
    await ip(['link', 'set', BRIDGE, 'up'], { netns: hostNetns });
    const storeFile = path.join(dir, 'fleet.sqlite');
    const [command, args] = diesWithThisProcess('ip', ['netns', 'exec', hostNetns, process.execPath, path.join(projectRoot(), 'dist', 'harness', 'cli.js'), 'collect',
      '--listen', `${HOST_ADDRESS}:${COLLECTOR_PORT}`, '--store', storeFile, '--no-auth', '--time-probe-interval', '2000', '--liveness-interval', '2000']);
    const collectorLog = openSync(path.join(dir, 'collector.log'), 'a');
    collector = spawn(command, args, { stdio: ['ignore', collectorLog, collectorLog] });
    for (let i = 0; i < options.count; i += 1) {
      const name = `sim-${i + 1}`;
      const sim: SimDriverOptions = {
        id: `${id}-${i + 1}`, downtimeMs: options.downtimeMs, guestAddress: `10.79.${1 + (i >> 8)}.${(i & 0xff) + 1}`, hostAddress: HOST_ADDRESS, prefixLength: 16,
        guestMac: `52:54:00:79:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`, bridge: { netns: hostNetns, name: BRIDGE },
      };
      const driver = new SimDriver(sim);
      drivers.push(driver);
      await driver.prepare();
      const agentLog = openSync(path.join(dir, `${name}.log`), 'a');
      // `ip netns exec` execs the agent: this PID is the agent's, the one its freezer must hold.
      const agent = spawn('ip', ['netns', 'exec', driver.guestNetns, guestAgentExecutable(), 'run', '--collector', `ws://${HOST_ADDRESS}:${COLLECTOR_PORT}`, '--agent-id', name,
        '--remediate', 'off', '--probes', 'link,addressing,nftables,clock', '--state-dir', path.join(dir, `${name}-state`)], { stdio: ['ignore', agentLog, agentLog] });
      agents.push(agent);
      driver.adopt(agent.pid!);
    }
    // The store is the collector's: read, as a rollout reads a fleet's, once every agent has said hello to it.
    for (let waited = 0; !existsSync(storeFile); waited += 100) {
      if (waited > 30_000 || collector.exitCode !== null) throw new Error(`the simulated host's collector did not start (see ${path.join(dir, 'collector.log')})`);
      await sleep(100);
    }
    store = new ReportStore(storeFile);
    const deadline = Date.now() + 60_000 + options.count * 2000;
    while (store.agents().length < options.count) {
      if (Date.now() > deadline) throw new Error(`only ${store.agents().length} of ${options.count} simulated agents said hello (logs in ${dir})`);
      await sleep(250);
    }
    options.log(`${options.count} simulated guests up, their agents connected to the simulated host's collector`);
    const ready = store;
    return {
      store: ready,
      stop,
      guests: drivers.map((driver, i) => {
        const name = `sim-${i + 1}`;
        const faults = options.faults.get(name) ?? [];
        return {
          name, agentId: name,
          async migrate() {
            for (const fault of faults) await driver.injectFault(fault, 'before');
            const timing = await driver.migrate();
            for (const fault of faults) await driver.injectFault(fault, 'after');
            return timing;
          },
        };
      }),
    };
  } catch (error) {
    await stop();
    throw error;
  }
}
