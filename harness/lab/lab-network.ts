import { spawn } from 'node:child_process';
import { EXIT, StoppedBySignal, UserError } from '../../contract/command-line.js';
import { addNetns, deleteNetns, ip } from '../../system/ip.js';
import { diesWithThisProcess } from '../../system/child-lifetime.js';

/**
 * The lab's private network: a namespace holding a bridge (the host side, where the collector listens) and two tap
 * devices, one per QEMU process. The guest keeps its MAC across migrations, so the bridge learns the move from the
 * guest's announce and its TCP connection to the collector survives (QEMU user networking would reset it).
 * Nothing is added to the host's own namespace.
 */
export interface LabNetwork {
  netns: string;
  bridge: string;
  hostAddress: string;
  prefixLength: number;
  guestAddress: string;
  taps: readonly [string, string];
}

export function labNetworkFor(id: string): LabNetwork {
  return {
    netns: `flinch-lab-${id}`,
    bridge: 'br0',
    hostAddress: '10.0.3.1',
    prefixLength: 24,
    guestAddress: '10.0.3.10',
    taps: ['tap0', 'tap1'],
  };
}

export async function createLabNetwork(network: LabNetwork): Promise<void> {
  const at = { netns: network.netns };
  await addNetns(network.netns);
  try {
    await ip(['link', 'add', network.bridge, 'type', 'bridge'], at);
    await ip(['addr', 'add', `${network.hostAddress}/${network.prefixLength}`, 'dev', network.bridge], at);
    await ip(['link', 'set', network.bridge, 'up'], at);
    for (const tap of network.taps) {
      await ip(['tuntap', 'add', 'dev', tap, 'mode', 'tap'], at);
      await ip(['link', 'set', tap, 'master', network.bridge, 'up'], at);
    }
  } catch (error) {
    await deleteNetns(network.netns).catch(() => undefined);
    throw error;
  }
}

export async function destroyLabNetwork(network: LabNetwork): Promise<void> {
  await deleteNetns(network.netns);
}

/** Makes the lab network, runs `work` with it, and removes it whatever happens, a signal during its making too. */
export async function withLabNetwork<T>(network: LabNetwork, work: () => Promise<T>): Promise<T> {
  return holdingSignals(async (stopIfSignalled) => {
    await createLabNetwork(network);
    try {
      stopIfSignalled();
      return await work();
    } finally {
      await destroyLabNetwork(network);
    }
  });
}

/**
 * Runs `work`, which makes things that outlive this process unless it removes them (namespaces, a cgroup mount, the
 * process it runs inside them), with SIGINT and SIGTERM held: by default either ends Node at once and skips every
 * `finally`, so a `kill` in the second a lab spent setting up left its namespaces behind. A signal is noted instead;
 * `work` calls `stopIfSignalled()` once what it made is in its `finally`'s hands, and a signal noted by then throws
 * StoppedBySignal (exit 130/143) through that `finally`. Once the inside process runs, runInsideNamespace passes a
 * SIGTERM on to it and its exit status is the run's.
 */
export async function holdingSignals<T>(work: (stopIfSignalled: () => void) => Promise<T>): Promise<T> {
  let received: 'SIGINT' | 'SIGTERM' | null = null;
  const note = (signal: NodeJS.Signals) => {
    received ??= signal === 'SIGINT' ? 'SIGINT' : 'SIGTERM';
  };
  process.on('SIGINT', note);
  process.on('SIGTERM', note);
  try {
    return await work(() => {
      if (received) throw new StoppedBySignal(received, 'stopped while the lab was being set up; what it had set up is removed');
    });
  } finally {
    process.off('SIGINT', note);
    process.off('SIGTERM', note);
  }
}

/** The part of a command that runs inside a namespace: a hidden subcommand the program re-runs itself as. */
export interface InsideStep {
  subcommand: string;
  /** The environment variable its plan is handed over in, as JSON. */
  planVariable: string;
  /** The command it is part of, named when someone runs it by hand. */
  parent: string;
}

/**
 * Re-runs this same program inside the namespace (Node cannot setns) as the step's subcommand, with the plan as JSON
 * in the step's environment variable. Resolves to the child's exit code.
 */
export function runInsideNamespace(netns: string, { subcommand, planVariable }: InsideStep, plan: unknown): Promise<number> {
  const script = process.argv[1];
  if (!script) throw new Error('cannot tell which script is running');
  const child = spawn(...diesWithThisProcess('ip', ['netns', 'exec', netns, process.execPath, ...process.execArgv, script, subcommand], 'TERM'), {
    stdio: 'inherit',
    env: { ...process.env, [planVariable]: JSON.stringify(plan) },
  });
  // Ctrl-C reaches the child too (same process group); this process only waits for it so that cleanup still runs. A
  // SIGTERM sent to this process alone (kill PID, timeout(1), a supervisor) is passed on: ignored, it left the child
  // running a whole lab with nobody to stop it.
  const ignore = () => undefined;
  const passOn = () => void child.kill('SIGTERM');
  process.on('SIGINT', ignore);
  process.on('SIGTERM', passOn);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', passOn);
      resolve(code ?? (signal ? 128 + 15 : 1));
    });
  });
}

/** The plan a parent handed to the step through runInsideNamespace; refuses to run when there is none. */
export function readPlanFromEnvironment<T>({ planVariable, subcommand, parent }: InsideStep): T {
  const text = process.env[planVariable];
  if (!text) throw new UserError(`${subcommand} is internal to ${parent} and is not run by hand`, EXIT.usage);
  return JSON.parse(text) as T;
}
