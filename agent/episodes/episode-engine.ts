import { randomUUID } from 'node:crypto';
import type { ClockStamp, Observation } from '../../contract/observation.js';
import { stampNow } from '../../probes/clock/read-clocks.js';
import { DEFAULT_TRIGGER_THRESHOLDS, isMigrationEvidence, TriggerDetector, type EpisodeTrigger, type TriggerThresholds } from './triggers.js';
import { DEFAULT_OFFSET_NOISE, DEFAULT_PAUSE_NOISE, NoiseFloor, type NoiseFloorOptions } from './noise-floor.js';
import type { OwnClockStep } from './own-clock-step.js';

export interface EpisodeOptions {
  /** An episode closes after this long without a new observation (ms). */
  settleMs: number;
  /** Observations this recent when an episode opens belong to it: a loss can be seen just before its trigger (ms). */
  lookbackMs: number;
  /** An episode that never quiets down is closed anyway after this long (ms). */
  maxEpisodeMs: number;
  /** Most observations one episode carries; the rest are counted. */
  maxObservations: number;
  thresholds: TriggerThresholds;
  /** How a pause alone is told from the machine's own timing noise. */
  pauseNoise: NoiseFloorOptions;
  /** How a move of the offset to the host is told from the probes' own wobble. */
  offsetNoise: NoiseFloorOptions;
}

/** Observations that measure rather than report a change: alone, they do not keep an episode open. */
const MEASUREMENT_KINDS = new Set<Observation['kind']>(['host-offset', 'pause', 'clock']);

export const DEFAULT_EPISODE_OPTIONS: EpisodeOptions = {
  settleMs: 3000,
  lookbackMs: 2000,
  maxEpisodeMs: 120_000,
  maxObservations: 1000,
  thresholds: DEFAULT_TRIGGER_THRESHOLDS,
  pauseNoise: DEFAULT_PAUSE_NOISE,
  offsetNoise: DEFAULT_OFFSET_NOISE,
};

export interface Episode {
  id: string;
  migrationId: string | null;
  openedAt: ClockStamp;
  closedAt: ClockStamp | null;
  triggers: EpisodeTrigger[];
  observations: Observation[];
  observationsDropped: number;
}

/**
 * Migration evidence opens an episode, and so do what the guest's users feel whatever caused it: a pause above the
 * machine's noise floor and a clock step. A flush, a carrier change or a re-created interface alone is an
 * administrator's everyday work: it joins an episode (or the lookback of the next) but opens none.
 */
function opensEpisode(trigger: EpisodeTrigger): boolean {
  return isMigrationEvidence(trigger) || trigger.kind === 'pause' || trigger.kind === 'clock-step';
}

/** Time and timers, injectable so that the engine is tested without waiting. */
export interface EngineClock {
  now(): ClockStamp;
  setTimer(callback: () => void, ms: number): unknown;
  clearTimer(handle: unknown): void;
}

export const REAL_CLOCK: EngineClock = {
  now: stampNow,
  setTimer: (callback, ms) => setTimeout(callback, ms),
  clearTimer: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

/**
 * Groups observations into migration episodes. An episode opens on a trigger (or a harness announcement), takes in
 * everything observed while it is open (and shortly before), and closes after a quiet settle window. It decides
 * nothing about the guest and changes nothing; `onClose` hands the finished episode on.
 */
export class EpisodeEngine {
  private readonly detector: TriggerDetector;
  private current: Episode | null = null;
  private settleTimer: unknown = null;
  /** The harness announced the open episode's migration as starting and not yet as finished. */
  private migrationUnderWay = false;
  /** When the harness last spoke of the open episode's migration (monotonic ms): the cap counts from there. */
  private lastHarnessWordMs = 0;
  /** What came in while no episode was open, with the triggers it raised: the lookback of the next episode. */
  private readonly recent: Array<{ observation: Observation; triggers: readonly EpisodeTrigger[] }> = [];

  constructor(
    private readonly onClose: (episode: Episode) => void,
    private readonly options: EpisodeOptions = DEFAULT_EPISODE_OPTIONS,
    private readonly clock: EngineClock = REAL_CLOCK,
    private readonly onOpen: (episode: Episode) => void = () => undefined,
  ) {
    this.detector = new TriggerDetector(options.thresholds, new NoiseFloor(options.pauseNoise), new NoiseFloor(options.offsetNoise));
  }

  get open(): Episode | null {
    return this.current;
  }

  /** The agent is about to step realtime by `byMs` itself: the clock's next move of that size, before then, is its own. */
  expectOwnClockStep(step: OwnClockStep): void {
    this.detector.expectOwnClockStep(step);
  }

  /** The pause noise this engine has learnt. */
  get noiseFloor(): NoiseFloor {
    return this.detector.pauseNoise;
  }

  /**
   * Takes one observation in; returns the triggers it raised. See opensEpisode for which open an episode; the others
   * join an open one, or the lookback of the next.
   */
  ingest(observation: Observation): EpisodeTrigger[] {
    const triggers = this.detector.detect(observation);
    const opens = triggers.some(opensEpisode);
    if (!this.current && !opens) {
      this.remember(observation, triggers);
      return triggers;
    }
    const episode = this.current ?? this.start(triggers.find(opensEpisode)!.at, null);
    episode.triggers.push(...triggers);
    this.add(episode, observation);
    // A measurement that found nothing (an offset moving within its floor, a pause below it) is kept as evidence but
    // does not hold the episode open: a time daemon slewing a clock back after a migration moves the offset to the
    // host every second for a minute, and that kept the episode, and so the safety net, waiting for its 120 s cap.
    if (triggers.length > 0 || !MEASUREMENT_KINDS.has(observation.kind)) this.armSettle();
    return triggers;
  }

  /**
   * The harness says a migration starts or has finished. Starting opens (or joins) an episode and names it. Only an
   * authenticated announcement the agent was told to accept may come here: it is migration evidence.
   */
  announce(phase: 'starting' | 'finished', migrationId: string): EpisodeTrigger | null {
    const at = this.clock.now();
    // The harness says "starting" again while a long migration runs (xl migrate between two nested Xen hosts took
    // 140 s, and the cap closed its episode before the guest was even suspended): the episode stays open, with the cap
    // counted from the last word, and nothing else is added.
    if (phase === 'starting' && this.migrationUnderWay && this.current?.migrationId === migrationId) {
      this.lastHarnessWordMs = at.monotonicMs;
      this.armSettle();
      return null;
    }
    // An episode belongs to one migration: one of another migration is closed first, whatever the phase (a lost
    // "finished" must not keep it open). A migration starting is a new episode unless the open, unnamed one is just
    // beginning; otherwise every later migration would be folded into whatever keeps it open (a noisy guest).
    let carried: Pick<Episode, 'triggers' | 'observations'> | null = null;
    if (this.current) {
      const age = at.monotonicMs - this.current.openedAt.monotonicMs;
      const otherMigration = this.current.migrationId !== null && this.current.migrationId !== migrationId;
      if (otherMigration || (this.current.migrationId === null && phase === 'starting' && age > this.options.settleMs)) {
        // The harness injects a migration's "before" faults (a link set down) just before it announces the start:
        // what the closing episode took in that recently is the new migration's.
        if (phase === 'starting') carried = this.detachSince(this.current, at.monotonicMs - this.options.lookbackMs);
        this.close();
      }
    }
    const episode = this.current ?? this.start(at, migrationId);
    if (carried) {
      episode.triggers.unshift(...carried.triggers);
      for (const observation of carried.observations) this.add(episode, observation);
    }
    episode.migrationId ??= migrationId;
    const trigger: EpisodeTrigger = { kind: 'harness-announce', detail: `migration ${migrationId} ${phase}`, at };
    episode.triggers.push(trigger);
    // While the harness says a migration is under way the episode stays open (up to the cap): a live migration's
    // copy phase can be quiet for longer than a settle window before the guest is stopped (xl migrate: ~10 s).
    this.migrationUnderWay = phase === 'starting';
    this.lastHarnessWordMs = at.monotonicMs;
    this.armSettle();
    return trigger;
  }

  /** Closes the open episode now (agent shutting down). */
  flush(): void {
    if (this.current) this.close();
  }

  private start(at: ClockStamp, migrationId: string | null): Episode {
    const episode: Episode = {
      id: randomUUID(), migrationId, openedAt: at, closedAt: null, triggers: [], observations: [], observationsDropped: 0,
    };
    const since = this.clock.now().monotonicMs - this.options.lookbackMs;
    // A trigger that opens nothing (an interface re-created) seen just before the announcement that does is part of
    // the same migration: under load the harness's word can reach the agent after the netlink events it explains.
    for (const { observation, triggers } of this.recent) {
      if (observation.at.monotonicMs < since) continue;
      episode.triggers.push(...triggers);
      this.add(episode, observation);
    }
    this.recent.length = 0;
    this.current = episode;
    this.onOpen(episode);
    return episode;
  }

  /** Takes out of `episode` the triggers and observations from `sinceMonotonicMs` on. */
  private detachSince(episode: Episode, sinceMonotonicMs: number): Pick<Episode, 'triggers' | 'observations'> {
    const isRecent = (x: { at: ClockStamp }) => x.at.monotonicMs >= sinceMonotonicMs;
    const detached = { triggers: episode.triggers.filter(isRecent), observations: episode.observations.filter(isRecent) };
    episode.triggers = episode.triggers.filter((x) => !isRecent(x));
    episode.observations = episode.observations.filter((x) => !isRecent(x));
    return detached;
  }

  private add(episode: Episode, observation: Observation): void {
    if (episode.observations.length < this.options.maxObservations) episode.observations.push(observation);
    else episode.observationsDropped += 1;
  }

  private remember(observation: Observation, triggers: readonly EpisodeTrigger[]): void {
    this.recent.push({ observation, triggers });
    const since = this.clock.now().monotonicMs - this.options.lookbackMs;
    while (this.recent.length > 0 && (this.recent[0]!.observation.at.monotonicMs < since || this.recent.length > 500)) this.recent.shift();
  }

  private armSettle(): void {
    const episode = this.current!;
    if (this.settleTimer !== null) this.clock.clearTimer(this.settleTimer);
    // After a long announced migration its "finished" still gets a settle window for the resume's evidence.
    const since = Math.max(episode.openedAt.monotonicMs, this.lastHarnessWordMs);
    const left = Math.max(0, this.options.maxEpisodeMs - (this.clock.now().monotonicMs - since));
    const wait = this.migrationUnderWay ? left : Math.min(this.options.settleMs, left);
    this.settleTimer = this.clock.setTimer(() => this.close(), wait);
  }

  private close(): void {
    this.migrationUnderWay = false;
    this.lastHarnessWordMs = 0;
    const episode = this.current!;
    if (this.settleTimer !== null) this.clock.clearTimer(this.settleTimer);
    this.settleTimer = null;
    this.current = null;
    episode.closedAt = this.clock.now();
    // A pause that opened an episode in which nothing proved a migration was this machine's noise after all.
    if (!episode.triggers.some(isMigrationEvidence)) {
      for (const t of episode.triggers) if (t.kind === 'pause' && t.magnitudeMs !== undefined) this.noiseFloor.note(t.magnitudeMs, t.at.monotonicMs);
    }
    this.onClose(episode);
  }
}
