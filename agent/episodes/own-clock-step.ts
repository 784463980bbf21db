/** How close a move must be to the step flinch made to be that step: the step's own error (date's start-up) and reads. */
export function ownStepToleranceMs(byMs: number): number {
  return 50 + Math.abs(byMs) * 0.02;
}

/**
 * How far from what flinch asked for a time daemon's step may land and still be that step. Asked to step
 * (`chronyc makestep`), chronyd steps by its own estimate of the offset, not flinch's: in the lab it stepped 92 to
 * 108 % of what flinch had measured (one CI run: 4 313 ms for 4 015), a slew under way making it smaller and its
 * older estimate larger; it then slews the difference.
 */
export function daemonStepSlackMs(byMs: number): number {
  return ownStepToleranceMs(byMs) + Math.abs(byMs) / 4;
}

/**
 * Whether a clock move of `movedMs` is (part of) the step flinch asked for, `byMs`: the same direction, and between
 * half of it and a daemon's slack beyond it. `date` steps by exactly the amount; a time daemon by its own estimate.
 */
export function isOwnStep(movedMs: number, byMs: number): boolean {
  return Math.sign(movedMs) === Math.sign(byMs) && Math.abs(movedMs) <= Math.abs(byMs) + daemonStepSlackMs(byMs) && Math.abs(movedMs) >= Math.abs(byMs) / 2;
}

/** What one change of the offset to the host says about the step: whether it was the step's, and where the step is. */
export interface OffsetChangeVerdict {
  own: boolean;
  /** converged: the offset is back where it stood before the migration; expired: the grace ran out first. */
  state: 'pending' | 'converged' | 'expired';
}

/**
 * A realtime step the agent made itself (the safety net healing the clock, by `byMs`, so that the offset to the host
 * returns to `targetOffsetMs`, where it stood before the migration), as each view of the clock sees it. The guest's
 * clock probe sees it as one move of realtime against monotonic. The offset to the host sees it come back in one move
 * after `date`; after `chronyc makestep`, in chronyd's step (its own estimate: a slew under way since the migration
 * has already taken some) and then its slew of what that estimate missed. Neither is an event of the guest's, and each
 * is recognised until `untilMs` (monotonic).
 *
 * Convergence is judged on where the offset stands, not on the sum of its reported changes: the offset's reports are
 * thresholded, a tighter exchange replaces the reference without a report, and a daemon keeps slewing between the
 * measurement and the step, so the changes need not add up to the step (a lab run stayed "pending" forever 159 ms short).
 */
export class OwnClockStep {
  private clockMoveClaimed = false;

  constructor(
    readonly byMs: number,
    readonly targetOffsetMs: number,
    readonly askedAtMs: number,
    readonly untilMs: number,
  ) {}

  get toleranceMs(): number {
    return ownStepToleranceMs(this.byMs);
  }

  /** A move of realtime against monotonic the clock probe saw: true for the first one that is this step. */
  claimClockMove(movedMs: number, atMs: number): boolean {
    if (this.clockMoveClaimed || atMs > this.untilMs || !isOwnStep(movedMs, this.byMs)) return false;
    this.clockMoveClaimed = true;
    return true;
  }

  /**
   * A change of the offset to the host, `changeMs`, that left it at `offsetMs`: a move the way of the heal that does
   * not carry the offset further past where it is going than a daemon's step may is the heal's. Converged is back
   * within the tolerance, whoever made the last move (a daemon slews back what its step overshot).
   */
  takeOffsetChange(changeMs: number, offsetMs: number, atMs: number): OffsetChangeVerdict {
    if (atMs > this.untilMs) return { own: false, state: 'expired' };
    const direction = Math.sign(this.byMs);
    const own = Math.sign(changeMs) === direction && direction * (offsetMs - this.targetOffsetMs) <= daemonStepSlackMs(this.byMs);
    return { own, state: Math.abs(offsetMs - this.targetOffsetMs) <= this.toleranceMs ? 'converged' : 'pending' };
  }
}

/**
 * How far the guest's offset against the host (guest minus host) has moved since before the open episode. Taken from
 * where the offset stands, not from the sum of its reported changes, which misses the moves a tighter exchange makes
 * without a report: a lab migration's reports added up to 3 759 ms where the offset had moved 3 634 ms. A lab guest's
 * clock may sit a second off the host's for good (no time daemon, an emulated TSC); only what the episode moved is the
 * migration's.
 */
export class EpisodeOffset {
  private beforeMs: number | null = null;
  private latestMs: number | null = null;

  /** One reported change of the offset; `episodeOpen` after the episode engine has taken it in. */
  note(offsetMs: number, changeMs: number, episodeOpen: boolean, ownStep: boolean): void {
    if (!episodeOpen) {
      this.beforeMs = null;
      this.latestMs = offsetMs;
      return;
    }
    // The first change of the episode tells where the offset stood before it: its own starting point. flinch's own
    // step is not the migration's: where the offset stood before moves with it.
    if (this.beforeMs === null) this.beforeMs = ownStep ? offsetMs : offsetMs - changeMs;
    else if (ownStep) this.beforeMs += changeMs;
    this.latestMs = offsetMs;
  }

  /** The move since before the episode, and where the offset stood then; forgotten once taken. */
  take(): { movedMs: number; beforeMs: number } | null {
    const { beforeMs, latestMs } = this;
    this.beforeMs = null;
    if (beforeMs === null || latestMs === null) return null;
    return { movedMs: latestMs - beforeMs, beforeMs };
  }
}
