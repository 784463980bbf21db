import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, rmSync } from 'node:fs';
import { agentKeyFor } from '../../agent/protocol/frame-signing.js';
import { FleetKeyring } from '../collector/keyring.js';
import { ReportStore } from '../collector/report-store.js';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UserError } from '../../agent/cli-support.js';
import { CollectorServer, type AgentRecord } from '../collector/collector-server.js';
import { QmpDriver } from '../drivers/qmp-driver.js';
import { hostNowMs } from '../host-clock.js';
import { resolveQemuBinary, serialLogPath } from '../qemu/qemu-vm.js';
import { writeLabResults, LAB_RESULTS_SCHEMA, type LabResults, type MigrationResult, type SeenLinkEvent } from '../report/lab-results.js';
import { renderTable } from '../report/terminal-table.js';
import { verdictV0 } from '../verdict/verdict-v0.js';
import type { Report } from '../../agent/report/report-schema.js';
import { fetchGuestKernel } from './debian-kernel.js';
import { buildGuestImage } from './guest-initramfs.js';
import { createLabNetwork, destroyLabNetwork, labNetworkFor, runInsideNamespace, type LabNetwork } from './lab-network.js';

export interface LabOptions {
  migrations: number;
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
}

export const DEFAULT_LAB_OPTIONS: Omit<LabOptions, 'outDir'> = {
  migrations: 3,
  qemuBinary: 'qemu-system-x86_64',
  memoryMiB: 512,
  cacheDir: '/var/cache/flinch',
  settleMs: 3000,
  bootTimeoutMs: 120_000,
  migrationTimeoutMs: 120_000,
  collectorPort: 7431,
  guestProbes: null,
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
    throw new UserError('flinch lab needs root: it creates a network namespace and tap devices (run it as root or with sudo)', 4);
  }
  if (options.memoryMiB < MIN_GUEST_MEMORY_MIB) {
    throw new UserError(`--memory ${options.memoryMiB} is too small: the guest's initramfs needs at least ${MIN_GUEST_MEMORY_MIB} MiB`, 2);
  }
  resolveQemuBinary(options.qemuBinary);
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

export function readInnerPlan(): InnerPlan {
  const text = process.env[INNER_PLAN_ENV];
  if (!text) throw new UserError('lab-inner is internal to flinch lab and is not run by hand', 2);
  return JSON.parse(text) as InnerPlan;
}

/** The part of `flinch lab` that runs inside the lab namespace. */
export async function runLabInside(plan: InnerPlan, log: (line: string) => void): Promise<LabResults> {
  const { options, network } = plan;
  const logsDir = path.join(options.outDir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  // The lab's reports go through the fleet channel: signed frames, acks, and a store that keeps each report once.
  const storeFile = path.join(options.outDir, 'collector.sqlite');
  for (const suffix of ['', '-wal', '-shm']) rmSync(`${storeFile}${suffix}`, { force: true });
  const store = new ReportStore(storeFile);
  const fleetSecret = randomBytes(32).toString('hex');
  const collector = new CollectorServer({
    host: network.hostAddress,
    port: options.collectorPort,
    store,
    keyring: new FleetKeyring(fleetSecret),
    keepInMemory: true,
    timeProbeIntervalMs: 200,
    log: (line) => log(`collector: ${line}`),
  });
  await collector.start();
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
        `flinch.ip=${network.guestAddress}/${network.prefixLength}`,
        `flinch.gw=${network.hostAddress}`,
        `flinch.collector=ws://${network.hostAddress}:${options.collectorPort}`,
        `flinch.id=${LAB_AGENT_ID}`,
        `flinch.token=${agentKeyFor(fleetSecret, LAB_AGENT_ID)}`,
        'flinch.remediate=on',
        ...(options.guestProbes ? [`flinch.probes=${options.guestProbes.join(',')}`] : []),
      ].join(' '),
    },
    taps: network.taps,
    migrationHost: '127.0.0.1',
    migrationPortBase: 49152,
    timeoutMs: options.migrationTimeoutMs,
    pollMs: 50,
  });
  const stopSignals = () => void driver.cleanup();
  process.once('SIGINT', stopSignals);
  process.once('SIGTERM', stopSignals);
  try {
    const bootStart = hostNowMs();
    log(`booting the guest (TCG, ${options.memoryMiB} MiB)`);
    const agent = await waitForAgent(collector, driver, options.bootTimeoutMs).catch((error: Error) => {
      throw new Error(`${error.message}; the guest console is in ${serialLogPath({ runDir: logsDir, name: 'guest-0' })}`);
    });
    const bootToAgentMs = hostNowMs() - bootStart;
    log(`agent ${agent.agentId} connected ${(bootToAgentMs / 1000).toFixed(1)} s after boot`);
    // A baseline needs a few clean time exchanges before the first migration.
    await sleep(options.settleMs);

    const migrations: MigrationResult[] = [];
    for (let index = 1; index <= options.migrations; index += 1) {
      const from = network.taps[(index - 1) % 2]!;
      const to = network.taps[index % 2]!;
      const baseline = agent.offsets.offsetBetween(hostNowMs() - options.settleMs, hostNowMs());
      log(`migration ${index}/${options.migrations}: ${from} → ${to}`);
      const migrationId = `lab-${plan.startedAtMs.toFixed(0)}-${index}`;
      collector.announce(agent.agentId, 'starting', migrationId);
      const timing = await driver.migrate();
      collector.announce(agent.agentId, 'finished', migrationId);
      await sleep(options.settleMs);
      const after = agent.offsets.offsetBetween(timing.completedAtMs + 500, timing.completedAtMs + options.settleMs);
      const windowEnd = timing.completedAtMs + options.settleMs;
      const inWindow = agent.observations.filter((o) => o.receivedAtMs >= timing.startedAtMs && o.receivedAtMs <= windowEnd);
      const linkEvents: SeenLinkEvent[] = [];
      for (const { observation, receivedAtMs } of inWindow) {
        if (observation.kind !== 'link' || observation.action === 'dump') continue;
        linkEvents.push({
          afterCompletionMs: Math.round(receivedAtMs - timing.completedAtMs),
          action: observation.action,
          ifname: observation.link.name,
          ifindex: observation.link.ifindex,
          event: observation.event,
          carrier: observation.link.carrier,
          carrierChanges: observation.link.carrierChanges,
        });
      }
      const clockLagMs = baseline && after ? baseline.offsetMs - after.offsetMs : null;
      const v0 = verdictV0({ linkEvents: linkEvents.length, clockLagMs });
      const report = await waitForReport(agent, migrationId, options.settleMs + REPORT_GRACE_MS);
      // The agent's offset tracker needs a few exchanges after the step to be sure of it, so its observation can come
      // after the settle window; by the time the episode's report has arrived, everything the episode saw has too.
      const reportArrivedAtMs = report ? (agent.reports.find((r) => r.report === report)?.receivedAtMs ?? windowEnd) : windowEnd;
      const offsetSteps = agent.observations.flatMap(({ observation, receivedAtMs }) =>
        receivedAtMs >= timing.startedAtMs && receivedAtMs <= Math.max(windowEnd, reportArrivedAtMs) && observation.kind === 'host-offset' && observation.changeMs !== null
          ? [observation.changeMs]
          : [],
      );
      if (report) appendFileSync(path.join(options.outDir, 'reports.jsonl'), `${JSON.stringify(report)}\n`);
      else log(`no report from the agent for migration ${index}; using verdict v0`);
      migrations.push({
        index,
        driver: driver.name,
        from,
        to,
        startedAt: new Date(timing.startedAtMs).toISOString(),
        totalMs: timing.totalMs,
        downtimeMs: timing.downtimeMs,
        setupMs: timing.setupMs,
        transferredBytes: timing.transferredBytes,
        clockLagMs: clockLagMs === null ? null : round(clockLagMs, 2),
        baselineOffsetMs: baseline ? round(baseline.offsetMs, 2) : null,
        afterOffsetMs: after ? round(after.offsetMs, 2) : null,
        guestSeenOffsetStepMs: offsetSteps.length ? round(offsetSteps.reduce((a, b) => a + b, 0), 2) : null,
        linkEvents,
        observationsAfter: agent.observations.filter((o) => o.receivedAtMs > timing.completedAtMs).length,
        timeRepliesAfter: agent.offsets.samples.filter((s) => s.hostAtMs > timing.completedAtMs).length,
        verdict: report ? report.verdict : v0.verdict,
        verdictSource: report ? 'agent' : 'v0',
        reasons: report ? report.evidence.map((e) => `${e.severity}: ${e.detail}`) : v0.reasons,
        episode: report ? summariseReport(report) : null,
      });
    }
    const results: LabResults = {
      schema: LAB_RESULTS_SCHEMA,
      startedAt: new Date(plan.startedAtMs).toISOString(),
      wallTimeMs: Math.round(hostNowMs() - plan.startedAtMs),
      hypervisor: { driver: driver.name, qemu: qemuVersion(driver) },
      guest: { kernel: plan.kernelPackage, memoryMiB: options.memoryMiB, bootToAgentMs: Math.round(bootToAgentMs) },
      migrations,
      channel: {
        reportsStored: store.reportCount(agent.agentId),
        duplicatesDropped: (await collector.metrics.duplicates.get()).values[0]?.value ?? 0,
        rejectedFrames: collector.rejected,
        agentConnections: agent.connections,
        spoolDropped: agent.hello.spoolDropped,
      },
    };
    const file = writeLabResults(options.outDir, results);
    process.stdout.write(`${renderTable(migrations)}\n\nresults: ${file}\n`);
    return results;
  } finally {
    process.off('SIGINT', stopSignals);
    process.off('SIGTERM', stopSignals);
    await driver.cleanup().catch(() => undefined);
    await collector.stop();
    store.close();
  }
}

/** How long after the lab's settle a report may still take: the agent's own settle window runs from its last observation. */
const REPORT_GRACE_MS = 8000;

function waitForReport(agent: AgentRecord, migrationId: string, timeoutMs: number): Promise<Report | null> {
  const find = () => agent.reports.find((r) => r.report.episode.migrationId === migrationId)?.report ?? null;
  return new Promise((resolve) => {
    const deadline = Date.now() + timeoutMs;
    const poll = () => {
      const report = find();
      if (report || Date.now() > deadline) return resolve(report);
      setTimeout(poll, 100);
    };
    poll();
  });
}

function summariseReport(report: Report): NonNullable<MigrationResult['episode']> {
  const kinds = (severity: string) => [...new Set(report.evidence.filter((e) => e.severity === severity).map((e) => e.kind))];
  return {
    id: report.episode.id,
    durationMs: Math.round(report.episode.durationMs),
    triggers: [...new Set(report.episode.triggers.map((x) => x.kind))],
    disrupted: kinds('disrupted'),
    noticed: kinds('noticed'),
    remediation: report.remediation.outcome,
    timeToHealMs: report.remediation.timeToHealMs,
  };
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

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
