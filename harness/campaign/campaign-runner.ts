import { randomBytes } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import cliProgress from 'cli-progress';
import { EXIT, UserError } from '../../contract/command-line.js';
import type { Report } from '../../contract/report-schema.js';
import type { AgentRecord } from '../collector/agent-record.js';
import { CollectorServer } from '../collector/collector-server.js';
import { FleetKeyring } from '../collector/keyring.js';
import { MigrationAnnouncer } from '../collector/migration-announcer.js';
import { ReportStore } from '../collector/report-store.js';
import { faultLabel, type FaultRecord, type MigrationTiming } from '../drivers/migration-driver.js';
import { networkSeenIn } from '../blackout/network-witness.js';
import type { OutsideView } from '../blackout/outside-view.js';
import { outsideVerdict } from '../verdict/outside-verdict.js';
import { hostNowMs } from '../host-clock.js';
import { SAMPLES_EACH_SIDE, type TimeWindow } from '../../contract/clock-offset.js';
import { LAB_RESULTS_SCHEMA, meetsExpectation, readLabResults, type ExpectedVerdict, type LabResults, type MigrationResult, type SeenLinkEvent } from '../report/lab-results.js';
import { writeAllOutputs } from '../report/write-outputs.js';
import { verdictV0 } from '../verdict/verdict-v0.js';
import { CampaignJournal, planCampaign, type PlannedMigration } from './campaign-journal.js';
import { DEFAULT_CAMPAIGN_OPTIONS, type CampaignOptions } from './campaign-options.js';
import type { GuestTarget, RunningGuest } from './campaign-target.js';

const { SingleBar, Presets } = cliProgress;

/** What a campaign found, for the command line to show and to turn into an exit status. */
export interface CampaignOutcome {
  results: LabResults;
  /** The files written, by format (json, junit, tap, html). */
  written: Record<string, string>;
  /** Migrations worse than `--expect`. */
  worseThanExpected: number;
  /** The journal held every migration already: the outputs were regenerated and no guest was booted. */
  alreadyComplete: boolean;
}

function outcomeOf(results: LabResults, written: Record<string, string>, alreadyComplete: boolean): CampaignOutcome {
  return { results, written, worseThanExpected: results.migrations.filter((m) => !m.passed).length, alreadyComplete };
}

/** What identifies a campaign in its journal: a resumed run must be the same campaign against the same target. */
export function campaignIdentity(options: CampaignOptions, driverName: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    driver: driverName, ...(options.methods?.length ? { methods: options.methods } : {}), faults: options.faultMatrix.map(faultLabel), migrationsPerFault: options.migrationsPerFault,
    ...(options.controls > 0 ? { controls: options.controls } : {}), expect: options.expect,
    migrate: options.migrate, destQemu: options.destQemuBinary ?? null, ...(options.agentless ? { agentless: true } : {}),
    // Named only when given, so that a journal written before these options existed still resumes.
    ...(options.qemuBinary !== DEFAULT_CAMPAIGN_OPTIONS.qemuBinary ? { qemu: options.qemuBinary } : {}),
    ...(options.guestKernel ? { guestKernel: options.guestKernel } : {}), ...(options.machine ? { machine: options.machine } : {}),
    ...(options.sharedMemory ? { sharedMemory: true } : {}), ...extra,
  };
}

/**
 * A campaign whose journal already holds every migration needs no guest: its outputs are regenerated from
 * results.json. Null when there is something left to run. Checked before a target prepares anything.
 */
export function completedCampaign(options: CampaignOptions, driverName: string, identity: Record<string, unknown> = {}): CampaignOutcome | null {
  let journal: CampaignJournal;
  try {
    journal = CampaignJournal.open(options.outDir, campaignIdentity(options, driverName, identity), () => undefined);
  } catch (error) {
    throw new UserError((error as Error).message, EXIT.usage);
  }
  const planned = planCampaign(options.faultMatrix, options.migrationsPerFault, options.methods, options.controls);
  if (journal.done.size < planned.length || !existsSync(path.join(options.outDir, 'results.json'))) return null;
  const results = readLabResults(options.outDir);
  return outcomeOf(results, writeAllOutputs(options.outDir, results), true);
}

/**
 * The one campaign runner: opens the journal and the campaign's collector, has the target bring its guest up, runs
 * the migrations the journal does not hold yet, writes every output, and has the target tear down, whatever happened.
 * It prints nothing but its progress and sets no exit status: the command line does both from the outcome.
 */
export async function runCampaign(options: CampaignOptions, target: GuestTarget, startedAtMs: number, log: (line: string) => void): Promise<CampaignOutcome> {
  const logsDir = path.join(options.outDir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  const journal = CampaignJournal.open(options.outDir, campaignIdentity(options, target.driverName, target.identity), log);
  const { collector, store, fleetSecret, port } = await openCampaignCollector(options.outDir, journal, target, log);
  try {
    const guest = await target.bringUp({ collector, fleetSecret, collectorPort: port, logsDir, log });
    const migrations = await runMigrations({ ...options, startedAtMs }, { ...guest, collector, announcer: new MigrationAnnouncer(collector) }, journal, log);
    await guest.afterMigrations?.();
    const results = await campaignResults({
      startedAtMs, hypervisor: guest.hypervisor, guest: guest.guest, settings: options, migrations, collector, store, agent: guest.agent,
    });
    return outcomeOf(results, writeAllOutputs(options.outDir, results), false);
  } finally {
    await target.tearDown(log).catch((error: Error) => log(`tearing down the ${target.driverName} target: ${error.message}`));
    await collector.stop();
    store.close();
  }
}

/**
 * Runs a campaign's migrations against any driver: the journal's finished ones are kept, the rest are run in order
 * with their faults, each measured and judged, recorded in the journal as it finishes, under a progress bar.
 */
async function runMigrations(settings: CampaignSettings, target: MigrationTarget, journal: CampaignJournal, log: (line: string) => void): Promise<MigrationResult[]> {
  const unsupported = [...new Set(settings.faultMatrix.flat())].filter((f) => !target.driver.faults.includes(f));
  if (unsupported.length > 0) throw new Error(`the ${target.driver.name} driver cannot inject: ${unsupported.join(', ')}`);
  target.meter?.start();
  // A baseline needs a few clean time exchanges before the first migration.
  await sleep(settings.settleMs);
  if (target.meter && !target.meter.answering) log('the guest does not answer blackout probes; blackout will not be measured');
  const planned = planCampaign(settings.faultMatrix, settings.migrationsPerFault, settings.methods, settings.controls);
  const bar = new SingleBar(
    { format: 'migrations |{bar}| {value}/{total}  {label}', stream: process.stderr, noTTYOutput: true, notTTYSchedule: 5000, hideCursor: true },
    Presets.shades_classic,
  );
  bar.start(planned.length, journal.done.size, { label: '' });
  const migrations: MigrationResult[] = [];
  try {
    for (const item of planned) {
      const done = journal.done.get(item.index);
      if (done) {
        migrations.push(done);
        continue;
      }
      bar.update({ label: `#${item.index} ${itemLabel(item)}` });
      const lastReal = [...migrations].reverse().find((m) => !m.control && m.totalMs !== null);
      const controlMs = lastReal?.totalMs ?? DEFAULT_CONTROL_MS;
      const { agent } = target;
      // A failed migration still says where the guest was and where it is now (refused: the same place).
      const from = target.where();
      const run = agent ? runOneMigration(item, settings, { ...target, agent }, controlMs) : runAgentlessMigration(item, settings, target, controlMs);
      const result = await run.catch((error: Error): MigrationResult => ({
        ...emptyResult(item, target.driver.name, settings.expect),
        from,
        to: target.where(),
        error: error.message,
      }));
      journal.record(result);
      migrations.push(result);
      bar.increment(1, { label: `#${item.index} ${itemLabel(item)}: ${result.error ? 'migration failed' : result.verdict}` });
      if (result.error) log(`migration ${item.index} (${itemLabel(item)}) failed: ${result.error}`);
    }
  } finally {
    bar.stop();
  }
  return migrations;
}

function itemLabel(item: PlannedMigration): string {
  return item.control ? 'control' : `${item.method ? `${item.method} ` : ''}${faultLabel(item.faults)}`;
}

/** The campaign block of results.json. */
function campaignSummary(settings: Pick<CampaignSettings, 'faultMatrix' | 'migrationsPerFault' | 'controls' | 'expect' | 'migrate' | 'methods' | 'sharedMemory'>): LabResults['campaign'] {
  return {
    ...(settings.methods?.length ? { methods: [...settings.methods] } : {}),
    faults: settings.faultMatrix.map(faultLabel),
    migrationsPerFault: settings.migrationsPerFault,
    ...(settings.controls > 0 ? { controls: settings.controls } : {}),
    expect: settings.expect,
    options: {
      ...(Object.fromEntries(Object.entries(settings.migrate).filter(([, v]) => v !== undefined)) as Record<string, number | boolean>),
      ...(settings.sharedMemory ? { sharedMemory: true } : {}),
    },
  };
}

/** How the agent's reports travelled: the channel block of results.json. */
async function channelSummary(collector: CollectorServer, store: ReportStore, agent: AgentRecord): Promise<NonNullable<LabResults['channel']>> {
  return {
    reportsStored: store.reportCount(agent.agentId),
    duplicatesDropped: (await collector.metrics.duplicates.get()).values[0]?.value ?? 0,
    rejectedFrames: collector.rejected,
    agentConnections: agent.connections,
    spoolDropped: agent.hello.spoolDropped,
  };
}

/** results.json of a finished campaign: what ran it (hypervisor, guest) and what it found. */
async function campaignResults(run: {
  startedAtMs: number;
  hypervisor: LabResults['hypervisor'];
  guest: LabResults['guest'];
  settings: Parameters<typeof campaignSummary>[0];
  migrations: MigrationResult[];
  collector: CollectorServer;
  store: ReportStore;
  agent: AgentRecord | null;
}): Promise<LabResults> {
  return {
    schema: LAB_RESULTS_SCHEMA,
    startedAt: new Date(run.startedAtMs).toISOString(),
    wallTimeMs: Math.round(hostNowMs() - run.startedAtMs),
    hypervisor: run.hypervisor,
    guest: run.guest,
    campaign: campaignSummary(run.settings),
    migrations: run.migrations,
    ...(run.agent ? { channel: await channelSummary(run.collector, run.store, run.agent) } : {}),
  };
}

/** The migration's moments after its start, for the timeline. */
function timelineOf(timing: MigrationTiming): NonNullable<MigrationResult['timeline']> {
  const after = (atMs: number) => round(atMs - timing.startedAtMs, 3);
  return { completedMs: after(timing.completedAtMs), ...(timing.pause ? { stoppedMs: after(timing.pause.stoppedAtMs), resumedMs: after(timing.pause.resumedAtMs) } : {}) };
}

function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** The campaign's collector, its store, and the fleet secret its guest's key is derived from. */
interface CampaignCollector {
  collector: CollectorServer;
  store: ReportStore;
  fleetSecret: string;
  port: number;
}

/**
 * A campaign's reports go through the fleet channel: signed frames, acks, and a store that keeps each report once. A
 * resumed campaign keeps its store (the new guest's agent starts a new stream in it); a new one starts empty.
 */
async function openCampaignCollector(outDir: string, journal: CampaignJournal, target: Pick<GuestTarget, 'collectorHost' | 'collectorPort' | 'fleetSecret'>, log: (line: string) => void): Promise<CampaignCollector> {
  const { collectorHost: host, collectorPort: port } = target;
  const storeFile = path.join(outDir, 'collector.sqlite');
  if (journal.done.size === 0) for (const suffix of ['', '-wal', '-shm']) rmSync(`${storeFile}${suffix}`, { force: true });
  const store = new ReportStore(storeFile);
  const fleetSecret = target.fleetSecret ?? randomBytes(32).toString('hex');
  const collector = new CollectorServer({ host, port, store, keyring: new FleetKeyring(fleetSecret), keepInMemory: true, timeProbeIntervalMs: 200, log: (l) => log(`collector: ${l}`) });
  try {
    const started = await collector.start();
    return { collector, store, fleetSecret, port: started.port };
  } catch (error) {
    store.close();
    throw error;
  }
}

/**
 * Waits for the guest agent's hello. `gone` names why the guest cannot come any more (its hypervisor exited), so a
 * dead guest fails at once rather than at the timeout.
 */
export async function waitForAgentHello(collector: CollectorServer, agentId: string, timeoutMs: number, gone: () => string | null = () => null): Promise<AgentRecord> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const agent = collector.agents.get(agentId);
    if (agent) return agent;
    const why = gone();
    if (why) throw new Error(`the guest is gone before its agent connected: ${why}`);
    if (Date.now() > deadline) throw new Error(`the guest agent did not connect within ${timeoutMs / 1000} s`);
    await sleep(100);
  }
}

/** A running guest and the collector its agent reports to: what each migration is run against. */
type MigrationTarget = Pick<RunningGuest, 'driver' | 'agent' | 'meter' | 'witness' | 'outside' | 'where' | 'reconnectsAfterMigration'> & { collector: CollectorServer; announcer: MigrationAnnouncer };

/** How long a guest may take to reconnect: its liveness timeout (45 s) is the worst case when no RST tells it. */
const RECONNECT_TIMEOUT_MS = 90_000;

/** What the migrations read of the campaign's options, and when the campaign started. */
type CampaignSettings = Pick<CampaignOptions, 'outDir' | 'faultMatrix' | 'migrationsPerFault' | 'controls' | 'methods' | 'expect' | 'migrate' | 'longPauseMs' | 'settleMs' | 'blackoutIntervalMs' | 'sharedMemory'> & {
  startedAtMs: number;
};

function emptyResult(item: PlannedMigration, driver: string, expected: ExpectedVerdict): MigrationResult {
  return {
    index: item.index, driver, ...(item.method ? { method: item.method } : {}), ...(item.control ? { control: true as const } : {}), faults: item.faults, faultRecords: [], from: '', to: '', startedAt: new Date(hostNowMs()).toISOString(),
    totalMs: null, downtimeMs: null, setupMs: null, transferredBytes: null, clockLagMs: null, baselineOffsetMs: null, afterOffsetMs: null, clockLagUncertaintyMs: null, guestClockDriftPpm: null,
    guestSeenOffsetStepMs: null, blackout: null, linkEvents: [], observationsAfter: 0, timeRepliesAfter: 0, verdict: 'unknown',
    verdictSource: 'v0', reasons: [], expected, passed: false, episode: null,
  };
}

/** When the collector last heard of the safety net stepping the guest clock, or of the step converging; null if never. */
function lastClockRecordAtMs(agent: AgentRecord): number | null {
  for (let i = agent.observations.length - 1; i >= 0; i -= 1) {
    const { observation, receivedAtMs } = agent.observations[i]!;
    if (observation.kind === 'safety-net' && (observation.what === 'clock' || observation.what === 'clock-converged')) return receivedAtMs;
  }
  return null;
}

/** How long a control lasts when no real migration has run yet to take the length from. */
const DEFAULT_CONTROL_MS = 2000;

/** A control's "migration": as long as a real one, and nothing moves. */
async function shamMigration(durationMs: number): Promise<MigrationTiming> {
  const startedAtMs = hostNowMs();
  await sleep(durationMs);
  return { startedAtMs, completedAtMs: hostNowMs(), totalMs: null, downtimeMs: null, setupMs: null, transferredBytes: null };
}

/**
 * How often a migration under way is announced again: well inside the agent's episode cap (120 s), so that a lost
 * frame or two does not close the episode of a migration that takes minutes (xl migrate between two hosts).
 */
const ANNOUNCE_REPEAT_MS = 30_000;

/** A migration's faults, each half around the migration (or the control's sham), as the driver recorded them. */
async function migrateWithFaults(item: PlannedMigration, settings: CampaignSettings, driver: MigrationTarget['driver'], controlMs: number, between: { beforeMigrating?: () => void; afterFaults?: () => void } = {}) {
  const faultRecords: FaultRecord[] = [];
  for (const fault of item.faults) {
    const record = await driver.injectFault(fault, 'before');
    if (record) faultRecords.push(record);
  }
  between.beforeMigrating?.();
  // Said again while it runs: the agent keeps an announced migration's episode open only so long after the last word.
  const stillMigrating = between.beforeMigrating ? setInterval(between.beforeMigrating, ANNOUNCE_REPEAT_MS) : null;
  let timing: MigrationTiming;
  try {
    timing = item.control
      ? await shamMigration(controlMs)
      : await driver.migrate({
        ...settings.migrate,
        pausedForMs: item.faults.includes('long-pause') ? settings.longPauseMs : undefined,
        ...(item.method ? { method: item.method } : {}),
      });
    for (const fault of item.faults) {
      const record = await driver.injectFault(fault, 'after');
      if (record) faultRecords.push(record);
    }
  } finally {
    if (stillMigrating) clearInterval(stillMigrating);
  }
  between.afterFaults?.();
  return {
    timing,
    faultRecords,
    // Where a measured window starts (the first fault, or the migration), and when the migration and its after-faults
    // were all done.
    firstActionAtMs: Math.min(timing.startedAtMs, ...faultRecords.map((f) => f.atMs)),
    doneAtMs: Math.max(timing.completedAtMs, ...faultRecords.filter((f) => f.phase === 'after').map((f) => f.atMs)),
  };
}

/** The part of a migration's result the hypervisor and the faults give, whoever judges it. */
function migratedFigures(timing: MigrationTiming, faultRecords: FaultRecord[], from: string, to: string) {
  return {
    faultRecords,
    from,
    to,
    startedAt: new Date(timing.startedAtMs).toISOString(),
    totalMs: timing.totalMs,
    downtimeMs: timing.downtimeMs,
    setupMs: timing.setupMs,
    transferredBytes: timing.transferredBytes,
    ...(timing.pause !== undefined ? { pauseMs: timing.pause ? round(timing.pause.resumedAtMs - timing.pause.stoppedAtMs, 3) : null } : {}),
    timeline: timelineOf(timing),
  };
}

/**
 * One migration of a guest with no agent, seen from outside only: the ICMP timestamp replies its kernel sends, and the
 * lab bridge. Its verdict is the outside view's, and says so (verdictSource "outside").
 */
async function runAgentlessMigration(item: PlannedMigration, settings: CampaignSettings, target: MigrationTarget, controlMs: number): Promise<MigrationResult> {
  const { driver, outside, witness } = target;
  if (!outside) throw new Error('an agentless migration needs the outside view (ICMP timestamps)');
  const from = target.where();
  const { timing, faultRecords, firstActionAtMs: windowStart, doneAtMs } = await migrateWithFaults(item, settings, driver, controlMs);
  const windowEnd = doneAtMs + settings.settleMs;
  await sleep(Math.max(0, windowEnd - hostNowMs()) + OUTSIDE_LATE_REPLY_MS);
  const seen = outsideSeen(outside, timing, windowStart, windowEnd);
  const gap = timing.pause ? outside.gapAround(timing.pause.resumedAtMs, windowStart, windowEnd) : null;
  return {
    ...emptyResult(item, driver.name, settings.expect),
    ...migratedFigures(timing, faultRecords, from, target.where()),
    clockLagMs: seen.clockLagMs,
    clockLagUncertaintyMs: seen.clockLagUncertaintyMs,
    ...(witness ? { network: networkSeenIn(witness.network, { mac: witness.mac, fromPort: from }, timing, windowEnd, gap ? { probes: 'icmp', ...gap } : null) } : {}),
    outside: seen,
    verdict: seen.verdict,
    verdictSource: 'outside',
    reasons: seen.evidence,
    passed: meetsExpectation(seen.verdict, settings.expect),
  };
}

/** How long after its window the outside view waits for replies still on their way. */
const OUTSIDE_LATE_REPLY_MS = 200;

/** One migration of the campaign: its faults' before parts, the announced migration, their after parts, the measurements. */
async function runOneMigration(item: PlannedMigration, settings: CampaignSettings, target: MigrationTarget & { agent: AgentRecord }, controlMs: number): Promise<MigrationResult> {
  const { driver, announcer, agent, meter } = target;
  const options = settings;
  const from = target.where();
  // The baseline is the guest's clock as it is now. Where the safety net stepped it back after the previous migration,
  // the exchanges before the step are another clock: wait until a settle window of them lies after it, and read the
  // baseline from those alone (a baseline straddling the heal made the next migration's lag the heal's 5 s).
  const lastStep = lastClockRecordAtMs(agent);
  if (lastStep !== null) await sleep(Math.max(0, lastStep + options.settleMs - hostNowMs()));
  const beforeWindow = { fromMs: Math.max(hostNowMs() - options.settleMs, lastStep ?? -Infinity), toMs: hostNowMs() };
  const migrationId = `lab-${settings.startedAtMs.toFixed(0)}-${item.index}`;
  const connectionsBefore = agent.connections;
  const instanceBefore = agent.hello.instance;
  const { timing, faultRecords, firstActionAtMs: blackoutWindowStart, doneAtMs } = await migrateWithFaults(item, settings, driver, controlMs, {
    beforeMigrating: () => announcer.announce(agent.agentId, 'starting', migrationId),
    // Finished once its after-faults are in too: the agent keeps a migration's episode open while it is under way,
    // and an xl network-detach or a command through the nested consoles can take longer than its settle window.
    afterFaults: () => announcer.announce(agent.agentId, 'finished', migrationId),
  });
  // Measuring starts when the migration and its after-faults are done: an xl network-detach/attach in a nested Xen
  // takes seconds, and a window that closed before the fault did would miss everything it caused.
  let resumedAtMs = doneAtMs;
  // Nothing moved for a control, so nothing reconnects.
  if (target.reconnectsAfterMigration && !item.control) {
    const deadline = Date.now() + RECONNECT_TIMEOUT_MS;
    while (agent.connections === connectionsBefore && Date.now() < deadline) await sleep(100);
    resumedAtMs = Math.max(resumedAtMs, hostNowMs());
  }
  await sleep(Math.max(0, resumedAtMs + options.settleMs - hostNowMs()));
  // A TCG guest can answer slowly for seconds after a migration; its offset is read once it answers as before did.
  // The lag is the migration's only until the agent's safety net steps the clock back: read it before that.
  const healedAtMs = () => agent.observations.find((o) => o.receivedAtMs >= timing.startedAtMs && o.observation.kind === 'safety-net' && o.observation.what === 'clock')?.receivedAtMs ?? null;
  for (const until = hostNowMs() + GOOD_EXCHANGES_WAIT_MS; agent.offsets.goodExchangesSince(beforeWindow, resumedAtMs) < SAMPLES_EACH_SIDE && hostNowMs() < until && healedAtMs() === null;) await sleep(100);
  const healedAt = healedAtMs();
  // `date` runs up to a second after it was decided (it waits for a whole second): exchanges from then on may be after it.
  const afterTo = healedAt === null ? hostNowMs() : healedAt - HEAL_LEAD_MS;
  const clockStep = agent.offsets.stepAcross(beforeWindow, { fromMs: resumedAtMs, toMs: afterTo }, timing.completedAtMs, { acceptSlow: healedAt !== null });
  const windowEnd = resumedAtMs + options.settleMs;
  const clockLagMs = clockStep?.lagMs ?? null;
  const report = await waitForReport(agent, migrationId, options.settleMs + REPORT_GRACE_MS, {
    fromMs: timing.startedAtMs - UNNAMED_EPISODE_SLACK_MS, toMs: windowEnd + UNNAMED_EPISODE_SLACK_MS, guestOffsetMs: clockStep?.beforeMs ?? null,
  });
  // The agent's offset tracker needs a few exchanges after the step to be sure of it, so its observation can come
  // after the settle window; by the time the episode's report has arrived, everything the episode saw has too.
  const reportArrivedAtMs = report ? (agent.reports.find((r) => r.report === report)?.receivedAtMs ?? windowEnd) : windowEnd;
  // So can xenstore and link events: a guest frozen by a save/restore sends them over the connection that replaces
  // the stalled one, which on a slow host comes after the settle window.
  const untilReport = agent.observations.filter(({ receivedAtMs }) => receivedAtMs >= timing.startedAtMs && receivedAtMs <= Math.max(windowEnd, reportArrivedAtMs));
  const linkEvents: SeenLinkEvent[] = [];
  for (const { observation, receivedAtMs } of untilReport) {
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
  const observationsAfter = agent.observations.filter((o) => o.receivedAtMs > timing.completedAtMs).length;
  const timeRepliesAfter = agent.offsets.samples.filter((s) => s.hostAtMs > timing.completedAtMs).length;
  // A guest that has gone quiet may be dead, even one heard from for a while after the migration (Linux 6.12 on QEMU
  // 7.2's TCG double-faulted 39 s into its destination, after 39 observations): without a report that is not transparent.
  const silentForMs = report === null ? guestSilentForMs(agent, timing.completedAtMs, hostNowMs()) : null;
  const v0 = verdictV0({ linkEvents: linkEvents.length, clockLagMs, silentForMs });
  const offsetSteps = untilReport.flatMap(({ observation }) => (observation.kind === 'host-offset' && observation.changeMs !== null ? [observation.changeMs] : []));
  const xenEvents = untilReport.flatMap(({ observation, receivedAtMs }) =>
    observation.kind === 'xen'
      ? [{ afterCompletionMs: Math.round(receivedAtMs - timing.completedAtMs), change: observation.change, path: observation.path, value: observation.value, previous: observation.previous }]
      : [],
  );
  const clockConvergedMs = await waitForClockConvergence(agent, timing.startedAtMs);
  if (report) appendFileSync(path.join(options.outDir, 'reports.jsonl'), `${JSON.stringify(report)}\n`);
  const { witness, outside } = target;
  // The kernel answers ICMP whatever the guest's userspace is doing; the agent's UDP echo waits for its event loop.
  const gapProbes = outside?.answering ? { probes: 'icmp' as const, meter: outside } : meter?.answering ? { probes: 'udp-echo' as const, meter } : null;
  const gap = gapProbes && timing.pause ? gapProbes.meter.gapAround(timing.pause.resumedAtMs, blackoutWindowStart, windowEnd) : null;
  const resumeGap = gap && gapProbes ? { probes: gapProbes.probes, ...gap } : null;
  // An agent that came back as another process saw nothing of the migration, whatever it reports now; and a process
  // lost in the guest is something the guest lost (the lab's agent segfaulted on arriving on Xen 4.20 from 4.17).
  const restarted = instanceBefore !== undefined && agent.hello.instance !== instanceBefore;
  const verdict = restarted ? 'disrupted' : report ? report.verdict : v0.verdict;
  const reasons = [
    ...(restarted ? ["disrupted: the agent restarted during the migration (another process said hello): it crashed or was killed in the guest, and saw nothing of the migration"] : []),
    ...(report ? report.evidence.map((e) => `${e.severity}: ${e.detail}`) : v0.reasons),
  ];
  return {
    index: item.index,
    driver: driver.name,
    ...(item.method ? { method: item.method } : {}),
    ...(item.control ? { control: true as const } : {}),
    faults: item.faults,
    ...migratedFigures(timing, faultRecords, from, target.where()),
    clockLagMs: clockLagMs === null ? null : round(clockLagMs, 2),
    baselineOffsetMs: clockStep ? round(clockStep.beforeMs, 2) : null,
    afterOffsetMs: clockStep ? round(clockStep.afterMs, 2) : null,
    clockLagUncertaintyMs: clockStep ? round(clockStep.uncertaintyMs, 2) : null,
    guestClockDriftPpm: clockStep ? Math.round(clockStep.driftPpm) : null,
    guestSeenOffsetStepMs: offsetSteps.length ? round(offsetSteps.reduce((a, b) => a + b, 0), 2) : null,
    ...(clockConvergedMs !== undefined ? { clockConvergedMs } : {}),
    blackout: meter?.answering ? { ...meter.window(blackoutWindowStart, windowEnd), intervalMs: options.blackoutIntervalMs } : null,
    ...(witness ? { network: networkSeenIn(witness.network, { mac: witness.mac, fromPort: from }, timing, Math.max(windowEnd, reportArrivedAtMs), resumeGap) } : {}),
    ...(outside?.answering ? { outside: outsideSeen(outside, timing, blackoutWindowStart, windowEnd) } : {}),
    linkEvents,
    ...(xenEvents.length ? { xenEvents } : {}),
    observationsAfter,
    timeRepliesAfter,
    verdict,
    verdictSource: report ? 'agent' : 'v0',
    reasons,
    expected: options.expect,
    passed: meetsExpectation(verdict, options.expect),
    episode: report ? summariseReport(report) : null,
  };
}

/**
 * How long a guest may say nothing before it counts as silent: the lab's collector asks for its time every 200 ms, and
 * a starved TCG guest's agent has stalled for up to 4.2 s.
 */
export const GUEST_SILENT_MS = 15_000;

/**
 * How long the guest has said nothing (no observation, time exchange or report reached the collector) since the
 * migration completed, as of `nowMs`; null when it was heard within GUEST_SILENT_MS.
 */
export function guestSilentForMs(agent: Pick<AgentRecord, 'observations' | 'reports' | 'offsets'>, completedAtMs: number, nowMs: number): number | null {
  let lastHeardMs = completedAtMs;
  for (const { receivedAtMs } of agent.observations) lastHeardMs = Math.max(lastHeardMs, receivedAtMs);
  for (const { receivedAtMs } of agent.reports) lastHeardMs = Math.max(lastHeardMs, receivedAtMs);
  for (const { hostAtMs } of agent.offsets.samples) lastHeardMs = Math.max(lastHeardMs, hostAtMs);
  const silentMs = nowMs - lastHeardMs;
  return silentMs > GUEST_SILENT_MS ? silentMs : null;
}

/** How long after the resume the outside view starts reading the guest's offset again: its first replies queue. */
const OUTSIDE_AFTER_RESUME_MS = 100;

function outsideSeen(outside: OutsideView, timing: MigrationTiming, fromMs: number, toMs: number): NonNullable<MigrationResult['outside']> {
  const resumedAtMs = timing.pause?.resumedAtMs ?? timing.completedAtMs;
  const figures = outside.window(fromMs, toMs, { beforeMs: fromMs, resumedAtMs, afterMs: resumedAtMs + OUTSIDE_AFTER_RESUME_MS });
  const answeredAfter = figures.resumeGapMs !== null;
  return { intervalMs: outside.intervalMs, ...figures, ...outsideVerdict(figures, answeredAfter) };
}

/**
 * How long after the lab's settle a report may still take: the agent's own settle window runs from its last
 * observation, and where the migration reset its connection (libvirt's user networking) the report waits for the
 * reconnection's backoff too. Only a migration whose report never comes pays this in full.
 */
const REPORT_GRACE_MS = 20_000;
/**
 * How far outside a migration's own window an unnamed episode may open and still be that migration's: the guest clock
 * carried with the offset from before is behind by the pause once the guest runs again, and the agent may open the
 * episode on its before-faults.
 */
const UNNAMED_EPISODE_SLACK_MS = 2000;
/** How much longer than the settle to wait for the guest's exchanges to be quick again, for its clock lag. */
const GOOD_EXCHANGES_WAIT_MS = 10_000;
/** How long before the safety net's clock record its step may have happened: `date` waits for a whole second. */
const HEAL_LEAD_MS = 1500;

/**
 * The agent waits this long (its OWN_CLOCK_STEP_GRACE_MS) for the offset to the host to move back by its step before
 * it says the clock did not converge; that record comes with its next offset exchange, a few seconds on.
 */
const CLOCK_CONVERGENCE_WAIT_MS = 135_000;

/**
 * Where the safety net stepped the guest clock back in this migration, how long (ms, between the two records reaching
 * the collector) until the agent saw the offset to the host move back by the step: null if it said it did not.
 * Convergence comes after the episode's report (chronyd steps on its next update), so the guest is kept up for it;
 * undefined where no clock was stepped, or no record came.
 */
async function waitForClockConvergence(agent: AgentRecord, sinceMs: number): Promise<number | null | undefined> {
  const record = (what: string, afterMs: number) =>
    agent.observations.find(({ observation, receivedAtMs }) => receivedAtMs >= afterMs && observation.kind === 'safety-net' && observation.what === what);
  const step = record('clock', sinceMs);
  if (!step || step.observation.kind !== 'safety-net' || step.observation.result !== 'ok') return undefined;
  for (const until = hostNowMs() + CLOCK_CONVERGENCE_WAIT_MS; hostNowMs() < until; await sleep(200)) {
    const converged = record('clock-converged', step.receivedAtMs);
    if (converged?.observation.kind !== 'safety-net') continue;
    return converged.observation.result === 'ok' ? Math.round(converged.receivedAtMs - step.receivedAtMs) : null;
  }
  return undefined;
}

/**
 * The agent's report on this migration's episode: the one it named after the harness's announcement, or else the
 * first unnamed one that opened within `unnamed` (host time). An agent that does not accept announcements (a user's
 * own, enrolled without --accept-announce) names none: its episode is placed by when it opened, by the agent's clock
 * carried onto the host's with the offset measured before the migration; a late report of an earlier migration's
 * episode, sent on reconnecting, opened before this one started and is not taken for it.
 */
export function waitForReport(agent: Pick<AgentRecord, 'reports'>, migrationId: string, timeoutMs: number, unnamed: TimeWindow & { guestOffsetMs: number | null }): Promise<Report | null> {
  const openedWithin = (report: Report) => {
    if (report.episode.migrationId !== null || unnamed.guestOffsetMs === null) return false;
    const openedAtHostMs = report.episode.openedAt.realtimeMs - unnamed.guestOffsetMs;
    return openedAtHostMs >= unnamed.fromMs && openedAtHostMs <= unnamed.toMs;
  };
  const find = () => (agent.reports.find((r) => r.report.episode.migrationId === migrationId) ?? agent.reports.find((r) => openedWithin(r.report)))?.report ?? null;
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

