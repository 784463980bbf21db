import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { LabTimeServer } from './lab-time-server.js';
import { BlackoutMeter } from '../blackout/blackout-meter.js';
import { CampaignJournal, planCampaign } from '../campaign/campaign-journal.js';
import { campaignResults, finishCampaign, openCampaignCollector, runMigrations, type CampaignSettings } from '../campaign/campaign-runner.js';
import type { AgentRecord, CollectorServer } from '../collector/collector-server.js';
import { FAULTS, faultLabel, type FaultName, type MigrateOptions } from '../drivers/migration-driver.js';
import { QmpDriver } from '../drivers/qmp-driver.js';
import { hostNowMs } from '../host-clock.js';
import { resolveQemuBinary, serialLogPath } from '../qemu/qemu-vm.js';
import { readLabResults, type ExpectedVerdict, type LabResults } from '../report/lab-results.js';
import { renderTable } from '../report/terminal-table.js';
import { writeAllOutputs } from '../report/write-outputs.js';
import { fetchGuestKernel } from './debian-kernel.js';
import { agentKernelArguments, buildGuestImage, GUEST_ECHO_PORT } from './guest-initramfs.js';
import { createLabNetwork, destroyLabNetwork, labNetworkFor, runInsideNamespace, readPlanFromEnvironment, type LabNetwork } from './lab-network.js';

export interface LabOptions {
  /** The campaign: each row of faults (none: []) runs this many migrations. */
  faultMatrix: FaultName[][];
  migrationsPerFault: number;
  /** The driver's ways of moving the guest, each running the whole matrix (xl: save-restore, migrate); none for QEMU. */
  methods?: readonly string[];
  expect: ExpectedVerdict;
  /** Exit 1 when a migration is worse than expected (campaigns); the lab only reports. */
  failOnUnexpected: boolean;
  migrate: Omit<MigrateOptions, 'pausedForMs'>;
  /** How long the long-pause fault keeps the guest stopped before migrating it. */
  longPauseMs: number;
  destQemuBinary?: string;
  /** UDP blackout probe interval, 1–10 ms; 0 turns the meter off. */
  blackoutIntervalMs: number;
  outDir: string;
  qemuBinary: string;
  memoryMiB: number;
  cacheDir: string;
  /** How long after each migration the harness keeps listening before it measures and moves on. */
  settleMs: number;
  bootTimeoutMs: number;
  migrationTimeoutMs: number;
  collectorPort: number;
  /** Probes the guest agent runs (default: all). */
  guestProbes: string[] | null;
  /** A time daemon in the guest (chronyd, served by the lab namespace), or none: then the agent steps the clock itself. */
  guestTimeDaemon: 'chronyd' | null;
}

export const DEFAULT_LAB_OPTIONS: Omit<LabOptions, 'outDir'> = {
  faultMatrix: [[], ...FAULTS.map((fault) => [fault])],
  migrationsPerFault: 1,
  expect: 'disrupted',
  failOnUnexpected: false,
  migrate: {},
  longPauseMs: 3000,
  blackoutIntervalMs: 5,
  qemuBinary: 'qemu-system-x86_64',
  memoryMiB: 512,
  cacheDir: '/var/cache/flinch',
  settleMs: 3000,
  bootTimeoutMs: 120_000,
  migrationTimeoutMs: 120_000,
  collectorPort: 7431,
  guestProbes: null,
  guestTimeDaemon: null,
};

/** Everything the part of the lab that runs inside the namespace needs; passed to it as JSON. */
interface InnerPlan {
  options: LabOptions;
  network: LabNetwork;
  kernel: string;
  kernelPackage: string;
  initrd: string;
  startedAtMs: number;
}

const LAB_AGENT_ID = 'flinch-lab-guest';
/** The guest agent's blackout echo port (opt-in, the lab turns it on). */
const INNER_PLAN_ENV = 'FLINCH_LAB_PLAN';
/** Below 384 MiB the guest cannot unpack its initramfs (lab notes: 256 MiB fails). */
const MIN_GUEST_MEMORY_MIB = 384;

/**
 * `flinch lab`: prepares what needs the host's network (the guest kernel download, the image) and the lab namespace,
 * then runs the migrations in a child process inside that namespace, where the QEMUs, their taps and the collector
 * live. The namespace is removed whatever happens inside.
 */
export async function runQemuLab(options: LabOptions, log: (line: string) => void): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new UserError('flinch lab needs root: it creates a network namespace and tap devices (run it as root or with sudo)', EXIT.needsRoot);
  }
  if (options.memoryMiB < MIN_GUEST_MEMORY_MIB) {
    throw new UserError(`--memory ${options.memoryMiB} is too small: the guest's initramfs needs at least ${MIN_GUEST_MEMORY_MIB} MiB`, EXIT.usage);
  }
  resolveQemuBinary(options.qemuBinary);
  if (options.destQemuBinary) resolveQemuBinary(options.destQemuBinary);
  if (finishedAlready(options, log)) return;
  const startedAtMs = hostNowMs();
  mkdirSync(options.cacheDir, { recursive: true });
  const kernel = await fetchGuestKernel(options.cacheDir, log);
  const image = await buildGuestImage(options.cacheDir, kernel, log);
  const network = labNetworkFor(String(process.pid));
  await createLabNetwork(network);
  try {
    const plan: InnerPlan = {
      options, network, kernel: kernel.vmlinuz, kernelPackage: kernel.packageName, initrd: image.initrd, startedAtMs,
    };
    const code = await runInsideNamespace(network.netns, 'lab-inner', INNER_PLAN_ENV, plan);
    if (code !== 0) process.exitCode = code;
  } finally {
    await destroyLabNetwork(network);
  }
}

/** What identifies a campaign in its journal: a resumed run must be the same campaign. */
export function campaignIdentity(options: LabOptions, driver = 'qmp'): Record<string, unknown> {
  return {
    driver, ...(options.methods?.length ? { methods: options.methods } : {}), faults: options.faultMatrix.map(faultLabel), migrationsPerFault: options.migrationsPerFault, expect: options.expect,
    migrate: options.migrate, destQemu: options.destQemuBinary ?? null,
  };
}

/** A campaign whose journal already holds every migration only regenerates its outputs: no guest is booted. */
export function finishedAlready(options: LabOptions, log: (line: string) => void, driver = 'qmp', identity = campaignIdentity(options, driver)): boolean {
  let journal: CampaignJournal;
  try {
    journal = CampaignJournal.open(options.outDir, identity, () => undefined);
  } catch (error) {
    throw new UserError((error as Error).message, EXIT.usage);
  }
  const planned = planCampaign(options.faultMatrix, options.migrationsPerFault, options.methods);
  if (journal.done.size < planned.length || !existsSync(path.join(options.outDir, 'results.json'))) return false;
  const results = readLabResults(options.outDir);
  writeAllOutputs(options.outDir, results);
  log(`campaign already complete in ${options.outDir}: outputs regenerated, nothing run`);
  process.stdout.write(`${renderTable(results.migrations)}\n`);
  if (options.failOnUnexpected && results.migrations.some((m) => !m.passed)) process.exitCode = EXIT.worseThanExpected;
  return true;
}

export function campaignSettings(options: LabOptions, startedAtMs: number): CampaignSettings {
  return {
    outDir: options.outDir, faultMatrix: options.faultMatrix, migrationsPerFault: options.migrationsPerFault, methods: options.methods, expect: options.expect,
    migrate: options.migrate, longPauseMs: options.longPauseMs, settleMs: options.settleMs, blackoutIntervalMs: options.blackoutIntervalMs, startedAtMs,
  };
}

export function readInnerPlan(): InnerPlan {
  return readPlanFromEnvironment<InnerPlan>(INNER_PLAN_ENV, 'lab-inner', 'flinch lab');
}

/** The part of `flinch lab` that runs inside the lab namespace. */
export async function runLabInside(plan: InnerPlan, log: (line: string) => void): Promise<LabResults> {
  const { options, network } = plan;
  const logsDir = path.join(options.outDir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  const journal = CampaignJournal.open(options.outDir, campaignIdentity(options), log);
  const { collector, store, fleetSecret } = await openCampaignCollector(options.outDir, journal, network.hostAddress, options.collectorPort, log);
  const driver = new QmpDriver({
    baseSpec: {
      qemuBinary: options.qemuBinary,
      runDir: logsDir,
      kernel: plan.kernel,
      initrd: plan.initrd,
      memoryMiB: options.memoryMiB,
      mac: '52:54:00:f1:1c:01',
      append: [
        'console=ttyS0', 'panic=-1', 'quiet',
        ...agentKernelArguments({ network, collectorPort: options.collectorPort, agentId: LAB_AGENT_ID, fleetSecret, probes: options.guestProbes, timeDaemon: options.guestTimeDaemon }),
      ].join(' '),
    },
    destQemuBinary: options.destQemuBinary,
    guestConsole: true,
    taps: network.taps,
    migrationHost: '127.0.0.1',
    migrationPortBase: 49152,
    timeoutMs: options.migrationTimeoutMs,
    pollMs: 50,
  });
  const meter = options.blackoutIntervalMs > 0 ? new BlackoutMeter({ host: network.guestAddress, port: GUEST_ECHO_PORT }, options.blackoutIntervalMs) : null;
  let timeServer: LabTimeServer | null = null;
  const stopSignals = () => void driver.cleanup();
  process.once('SIGINT', stopSignals);
  process.once('SIGTERM', stopSignals);
  try {
    if (options.guestTimeDaemon === 'chronyd') {
      timeServer = await LabTimeServer.start(options.cacheDir, network.hostAddress, logsDir);
      log(`serving NTP to the guest's chronyd from ${network.hostAddress} (chronyd -x: this machine's clock is not touched)`);
    }
    const bootStart = hostNowMs();
    log(`booting the guest (TCG, ${options.memoryMiB} MiB)`);
    const agent = await waitForAgent(collector, driver, options.bootTimeoutMs).catch((error: Error) => {
      throw new Error(`${error.message}; the guest console is in ${serialLogPath({ runDir: logsDir, name: 'guest-0' })}`);
    });
    const bootToAgentMs = hostNowMs() - bootStart;
    log(`agent ${agent.agentId} connected ${(bootToAgentMs / 1000).toFixed(1)} s after boot`);
    const migrations = await runMigrations(
      campaignSettings(options, plan.startedAtMs),
      { driver, collector, agent, meter, where: () => driver.vm.spec.tap },
      journal,
      log,
    );
    const results = await campaignResults({
      startedAtMs: plan.startedAtMs,
      hypervisor: { driver: driver.name, qemu: qemuVersion(driver), destQemu: options.destQemuBinary ?? null },
      guest: { kernel: plan.kernelPackage, memoryMiB: options.memoryMiB, bootToAgentMs: Math.round(bootToAgentMs) },
      settings: options,
      migrations,
      collector,
      store,
      agent,
    });
    finishCampaign(options.outDir, results, options.failOnUnexpected, log);
    return results;
  } finally {
    meter?.stop();
    timeServer?.stop();
    process.off('SIGINT', stopSignals);
    process.off('SIGTERM', stopSignals);
    await driver.cleanup().catch(() => undefined);
    await collector.stop();
    store.close();
  }
}

/**
 * Boots the guest and waits for its agent's hello. Fails fast when the guest's QEMU exits (with -no-reboot a kernel
 * panic ends it) instead of waiting out the timeout. The hello listener is in place before QEMU starts.
 */
async function waitForAgent(collector: CollectorServer, driver: QmpDriver, timeoutMs: number): Promise<AgentRecord> {
  let onHello: ((agent: AgentRecord) => void) | undefined;
  let onExit: ((code: number | null) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const hello = new Promise<AgentRecord>((resolve, reject) => {
    onHello = resolve;
    collector.once('hello', onHello);
    timer = setTimeout(() => reject(new Error(`the guest agent did not connect within ${timeoutMs / 1000} s`)), timeoutMs);
  });
  hello.catch(() => undefined); // settled below or abandoned when prepare() fails; never an unhandled rejection
  try {
    await driver.prepare();
    const exited = new Promise<never>((_, reject) => {
      onExit = (code) => reject(new Error(`the guest's QEMU exited (code ${code}) before the agent connected`));
      driver.vm.process.once('exit', onExit);
    });
    return await Promise.race([hello, exited]);
  } finally {
    clearTimeout(timer);
    collector.off('hello', onHello!);
    if (onExit) driver.vm.process.off('exit', onExit);
  }
}

function qemuVersion(driver: QmpDriver): string | null {
  const v = driver.vm.qmp.version;
  return v ? `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}${v.package ? ` (${v.package.trim()})` : ''}` : null;
}

