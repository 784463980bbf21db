import type { Observation } from '../probes/observation.js';
import { createProbes, type ProbeSettings } from '../probes/registry.js';
import { Observer } from './observer.js';
import { EpisodeEngine, type Episode, type EpisodeOptions } from './episodes/episode-engine.js';
import { judgeEpisode, type VerdictThresholds } from './episodes/verdict.js';
import { assertValidReport, REPORT_SCHEMA_ID, type Report } from './report/report-schema.js';
import { SafetyNet, type SafetyNetOptions } from './remediation/safety-net.js';
import { StateDir } from './state/state-dir.js';
import { isMigrationEvidence, type EpisodeTrigger } from './episodes/triggers.js';
import { monotonicMs } from '../probes/clock/read-clocks.js';

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
}

export interface RuntimeOutputs {
  observation(observation: Observation): void;
  report(report: Report): void;
}

/** After the agent steps the clock itself, its own clock-step and offset-step triggers are expected this long (ms). */
const OWN_CLOCK_STEP_GRACE_MS = 15_000;

/** Observations that can mean network state was lost, and so send the safety net to look. */
const STATE_KINDS = new Set<Observation['kind']>(['firewall', 'address', 'route', 'link']);

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
  /** The guest's latest offset against the host (guest minus host, ms), from the collector connection's exchanges. */
  private hostOffset: { offsetMs: number; atMonotonicMs: number } | null = null;

  constructor(
    private readonly options: RuntimeOptions,
    private readonly outputs: RuntimeOutputs,
    private readonly log: (line: string) => void,
  ) {
    this.state = new StateDir(options.stateDir, log);
    this.safetyNet = new SafetyNet(options.safetyNet, this.state, log);
    this.engine = new EpisodeEngine((episode) => this.track(this.finish(episode)), options.episodes);
  }

  async start(): Promise<void> {
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
    this.signal([this.engine.announce(phase, migrationId)]);
  }

  async stop(): Promise<void> {
    this.engine.flush();
    await Promise.allSettled([...this.pendingReports]);
    await this.safetyNet.stop();
    await this.observer?.stop();
  }

  private signal(triggers: readonly EpisodeTrigger[]): void {
    const evidence = triggers.find(isMigrationEvidence);
    if (evidence) void this.safetyNet.migrationSignal({ kind: evidence.kind, detail: evidence.detail, atMs: evidence.at.monotonicMs });
  }

  /** Every observation passes here: the probes' and the transport's own (host offset, connection loss). */
  ingest(observation: Observation): void {
    this.outputs.observation(observation);
    if (observation.kind === 'host-offset') this.hostOffset = { offsetMs: observation.offsetMs, atMonotonicMs: observation.at.monotonicMs };
    this.signal(this.engine.ingest(observation));
    if (STATE_KINDS.has(observation.kind)) void this.safetyNet.check(observation.kind === 'firewall' ? 'firewall' : 'all');
  }

  /**
   * A migration that left the guest clock far from the host's (a long pause, a save/restore, a step) has the safety
   * net bring it back. Only a measured offset says by how much: a pause alone does not (after a Xen suspend realtime
   * ran on). The agent's own step is not a new episode.
   */
  private async healClockAfter(episode: Episode): Promise<void> {
    const offset = this.hostOffset;
    if (!offset || offset.atMonotonicMs < episode.openedAt.monotonicMs || !episode.triggers.some(isMigrationEvidence)) return;
    if (Math.abs(offset.offsetMs) < this.options.safetyNet.clockHealMs) return;
    this.engine.expectOwnClockStep(monotonicMs() + OWN_CLOCK_STEP_GRACE_MS);
    await this.safetyNet.healClock(offset.offsetMs, `after migration ${episode.migrationId ?? episode.id}`);
    this.hostOffset = null;
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
        observations: episode.observations as unknown as Report['observations'],
        observationsDropped: episode.observationsDropped,
      };
      assertValidReport(report);
      this.state.appendLine(REPORTS_FILE, report);
      this.outputs.report(report);
    } catch (error) {
      this.log(`could not report episode ${episode.id}: ${(error as Error).message}`);
    }
  }
}
