import { observationError, type ObservationOf, type Observation } from '../contract/observation.js';
import { createProbes, type ProbeSettings } from '../probes/registry.js';
import { Observer } from './observer.js';
import { EpisodeEngine, type Episode, type EpisodeOptions } from './episodes/episode-engine.js';
import { judgeEpisode, type VerdictThresholds } from './episodes/verdict.js';
import { assertValidReport, REPORT_SCHEMA_ID, type Report } from '../contract/report-schema.js';
import { SafetyNet, type SafetyNetOptions } from './remediation/safety-net.js';
import { publishTo, type Publisher } from './publishers/publisher.js';
import { StateDir } from './state/state-dir.js';
import { isCollectorEvidence, isMigrationEvidence, type EpisodeTrigger } from './episodes/triggers.js';
import { EpisodeOffset, OwnClockStep } from './episodes/own-clock-step.js';
import { monotonicMs } from '../probes/clock/read-clocks.js';
import { clockCorrectionMs } from './remediation/clock-heal.js';

export const REPORTS_FILE = 'reports.jsonl';

export interface RuntimeOptions {
  agentId: string;
  hostname: string;
  agentVersion: string;
  probes?: string[];
  probeSettings: ProbeSettings;
  episodes: EpisodeOptions;
  verdict: VerdictThresholds;
  safetyNet: SafetyNetOptions;
  stateDir: string;
  /**
   * Whether what the collector says (a harness's announcement, the offset to the host) may count as migration
   * evidence for the safety net (--accept-announce). Off, only the guest's own kernel and clocks can license a repair.
   */
  collectorEvidence: boolean;
}


/** After the agent steps the clock itself, the echo of that step is expected this long (ms): the offset to the host
 * settles only after a few clean exchanges. */
const OWN_CLOCK_STEP_GRACE_MS = 120_000;

/** Observations that can mean network state was lost, and so send the safety net to look. */
const STATE_KINDS = new Set<Observation['kind']>(['firewall', 'address', 'route', 'link']);

/** A probe's first reading at start-up: what is there, not something that happened. */
function isStartReading(observation: Observation): boolean {
  if (observation.kind === 'firewall') return observation.trigger === 'start';
  return 'action' in observation && observation.action === 'dump';
}

/**
 * The agent, wired: probes → observations → episodes → verdict and safety net → reports. The data flows one way; only
 * the safety net touches the guest, and only the runtime knows all the parts.
 */
export class AgentRuntime {
  private observer: Observer | null = null;
  private engine: EpisodeEngine;
  private safetyNet: SafetyNet;
  private readonly state: StateDir;
  private readonly pendingReports = new Set<Promise<void>>();
  private readonly outputs: ReturnType<typeof publishTo>;
  private readonly episodeOffset = new EpisodeOffset();
  /** A clock step the safety net made, whose echo in the offset to the host is still to come. */
  private ownStep: OwnClockStep | null = null;
  /** Ends an own step that never converged: no later change of the offset may come to say so. */
  private ownStepExpiry: NodeJS.Timeout | null = null;
  /** Where the offset to the host stood at its last reported change. */
  private lastOffsetMs: number | null = null;

  constructor(
    private readonly options: RuntimeOptions,
    publishers: readonly Publisher[],
    private readonly log: (line: string) => void,
  ) {
    this.outputs = publishTo(publishers, log);
    this.state = new StateDir(options.stateDir, log);
    this.safetyNet = new SafetyNet(options.safetyNet, this.state, log);
    this.safetyNet.onAction((action) =>
      this.outputs.observation({
        kind: 'safety-net', what: action.what, target: action.target, result: action.result, why: action.why,
        ...(action.error ? { error: action.error } : {}), at: action.at,
      }),
    );
    this.engine = new EpisodeEngine((episode) => this.track(this.finish(episode)), options.episodes);
  }

  async start(): Promise<void> {
    // Before any probe runs: a state directory that takes no writes (full, read-only) stops the agent with its name,
    // rather than an agent that never becomes ready.
    this.state.assertWritable();
    this.observer = new Observer(createProbes(this.options.probes, this.options.probeSettings), (o) => this.ingest(o));
    await this.observer.start();
    await this.safetyNet.init();
    const baseline = this.safetyNet.currentBaseline;
    this.log(
      `ready: remediation ${this.options.safetyNet.mode}` +
        (baseline ? `, baseline of ${Object.keys(baseline.interfaces).length} interface(s) and ${Object.keys(baseline.firewall).length} firewall table(s)` : ''),
    );
  }

  /** An authenticated harness announcement the agent was told to accept: migration evidence. */
  announce(phase: 'starting' | 'finished', migrationId: string): void {
    this.observer?.attend();
    const trigger = this.engine.announce(phase, migrationId);
    if (trigger) this.signal([trigger]);
  }

  async stop(): Promise<void> {
    if (!this.observer) return; // never started: nothing learnt, nothing to take out of the guest
    const pause = this.engine.noiseFloor;
    const now = monotonicMs();
    this.log(`pause noise: 99th percentile ${pause.learntMs().toFixed(1)} ms of ${pause.sampleCount} pauses that proved nothing; a pause alone opens an episode from ${pause.thresholdMs(now).toFixed(1)} ms`);
    this.engine.flush();
    await Promise.allSettled([...this.pendingReports]);
    if (this.ownStepExpiry) clearTimeout(this.ownStepExpiry);
    await this.safetyNet.stop();
    await this.observer?.stop();
  }

  private signal(triggers: readonly EpisodeTrigger[]): void {
    const evidence = triggers.find((t) => isMigrationEvidence(t) && (this.options.collectorEvidence || !isCollectorEvidence(t)));
    if (evidence) void this.safetyNet.migrationSignal({ kind: evidence.kind, detail: evidence.detail, atMs: evidence.at.monotonicMs });
  }

  /** Every observation passes here: the probes' and the transport's own (host offset, connection loss). */
  ingest(observation: Observation): void {
    if (observation.kind === 'host-offset' && observation.changeMs !== null) this.markOwnStep(observation);
    this.outputs.observation(observation);
    const triggers = this.engine.ingest(observation);
    const stateChange = STATE_KINDS.has(observation.kind);
    // Network state that moved, or anything that opens an episode, may come with a legacy iptables change, which no
    // event announces: the polling probes look now instead of at their idle rate.
    if (triggers.length > 0 || (stateChange && !isStartReading(observation))) this.observer?.attend();
    this.signal(triggers);
    // After the engine took it in: an offset step that opened an episode belongs to that episode.
    if (observation.kind === 'host-offset' && observation.changeMs !== null) this.noteOffsetChange(observation);
    if (stateChange) void this.safetyNet.check(observation.kind === 'firewall' ? 'firewall' : 'all');
  }

  /** The offset's echo of the safety net's own step is marked as such: no evidence, no trigger. */
  private markOwnStep(observation: ObservationOf<'host-offset'>): void {
    const own = this.ownStep;
    if (!own) return;
    const { own: isOwn, state } = own.takeOffsetChange(observation.changeMs!, observation.offsetMs, observation.at.monotonicMs);
    if (isOwn) observation.cause = 'flinch-clock-heal';
    if (state === 'pending') return;
    // The offset to the host is back where it stood: from asking to seeing it is how long the clock took to converge.
    this.endOwnStep(state === 'converged' ? observation.at.monotonicMs - own.askedAtMs : null, observation.offsetMs);
  }

  private endOwnStep(convergedAfterMs: number | null, lastOffsetMs: number | null): void {
    const own = this.ownStep;
    if (!own) return;
    this.ownStep = null;
    if (this.ownStepExpiry) clearTimeout(this.ownStepExpiry);
    this.ownStepExpiry = null;
    if (convergedAfterMs !== null) this.safetyNet.clockConverged(convergedAfterMs, null);
    else this.safetyNet.clockConverged(null, own.untilMs - own.askedAtMs, { targetMs: own.targetOffsetMs, lastMs: lastOffsetMs });
  }

  private noteOffsetChange(observation: ObservationOf<'host-offset'>): void {
    this.lastOffsetMs = observation.offsetMs;
    this.episodeOffset.note(observation.offsetMs, observation.changeMs!, this.engine.open !== null, observation.cause === 'flinch-clock-heal');
  }

  /**
   * A migration that moved the guest clock against the host's by --clock-heal-ms or more (a long pause, a
   * save/restore, a step) has the safety net move it back by as much (see clockCorrectionMs). Only a measured offset
   * says by how much: a pause alone does not (after a Xen suspend realtime ran on). The agent's own step is not an
   * event of the guest's.
   */
  private async healClockAfter(episode: Episode): Promise<void> {
    const moved = this.episodeOffset.take();
    if (moved === null) return;
    const correction = clockCorrectionMs(episode, moved.movedMs, this.options.safetyNet.clockHealMs);
    if (correction === null) return;
    // A step still waiting for its echo is superseded (not failed): this one's target is where the offset stood before
    // this episode.
    if (this.ownStepExpiry) clearTimeout(this.ownStepExpiry);
    const now = monotonicMs();
    this.ownStep = new OwnClockStep(correction, moved.beforeMs, now, now + OWN_CLOCK_STEP_GRACE_MS);
    this.engine.expectOwnClockStep(this.ownStep);
    this.ownStepExpiry = setTimeout(() => this.endOwnStep(null, this.lastOffsetMs), OWN_CLOCK_STEP_GRACE_MS);
    this.ownStepExpiry.unref();
    await this.safetyNet.healClock(-correction, `after migration ${episode.migrationId ?? episode.id}`);
  }

  private track(work: Promise<void>): void {
    this.pendingReports.add(work);
    void work.finally(() => this.pendingReports.delete(work));
  }

  private async finish(episode: Episode): Promise<void> {
    try {
      await this.healClockAfter(episode);
      await this.safetyNet.idle();
      const actions = this.safetyNet.actionsSince(episode.openedAt.monotonicMs - this.options.episodes.lookbackMs);
      const remaining = this.options.safetyNet.mode === 'off' ? [] : await this.safetyNet.remainingLosses();
      const outcome = this.safetyNet.outcome(actions, remaining);
      const { verdict, evidence } = judgeEpisode(episode, outcome, this.options.verdict);
      const firstLoss = evidence.find((e) => e.severity === 'disrupted');
      const lastFix = [...actions].reverse().find((a) => a.result === 'ok');
      const closedAt = episode.closedAt!;
      // An observation the contract does not accept (a bug of ours) is left out and counted, not allowed to make the
      // whole report invalid: the verdict above was reached from it either way.
      const conforming = episode.observations.filter((observation) => {
        const error = observationError(observation);
        if (error) this.log(`episode ${episode.id}: ${error}; left out of its report`);
        return error === null;
      });
      const report: Report = {
        schema: REPORT_SCHEMA_ID,
        agentId: this.options.agentId,
        hostname: this.options.hostname,
        agentVersion: this.options.agentVersion,
        episode: {
          id: episode.id,
          migrationId: episode.migrationId,
          openedAt: episode.openedAt,
          closedAt,
          durationMs: Math.max(0, closedAt.monotonicMs - episode.openedAt.monotonicMs),
          triggers: episode.triggers.slice(0, 1000),
        },
        verdict,
        evidence: evidence.slice(0, 1000),
        thresholds: { clockStepMs: this.options.verdict.clockStepMs, settleMs: this.options.episodes.settleMs },
        remediation: {
          mode: this.options.safetyNet.mode,
          outcome,
          timeToHealMs: verdict === 'healed' && firstLoss && lastFix
            ? Math.max(0, Math.round((lastFix.at.monotonicMs - firstLoss.at.monotonicMs) * 100) / 100)
            : null,
          actions: actions.slice(0, 1000),
        },
        observations: conforming,
        observationsDropped: episode.observationsDropped + (episode.observations.length - conforming.length),
      };
      assertValidReport(report);
      try {
        this.state.appendLine(REPORTS_FILE, report);
      } catch (error) {
        // A disk that filled up after the start: the report still goes to the collector; only the local copy is lost.
        this.log(`${(error as Error).message}; episode ${episode.id} is reported without its copy in ${REPORTS_FILE}`);
      }
      this.outputs.report(report);
    } catch (error) {
      this.log(`could not report episode ${episode.id}: ${(error as Error).message}`);
    }
  }
}
