/** How close a move must be to the step flinch made to be that step: the step's own error (date's start-up) and reads. */
export function ownStepToleranceMs(byMs: number): number {
  return 50 + Math.abs(byMs) * 0.02;
}

/**
 * Whether a clock move of `movedMs` is (part of) the step flinch asked for, `byMs`: the same direction, no larger than
 * it (within the tolerance), and at least half of it. `date` steps by exactly the amount; a time daemon asked to step
 * (chronyc makestep) steps by its own estimate, which a slew already under way has made smaller.
 */
export function isOwnStep(movedMs: number, byMs: number): boolean {
  return Math.sign(movedMs) === Math.sign(byMs) && Math.abs(movedMs) <= Math.abs(byMs) + ownStepToleranceMs(byMs) && Math.abs(movedMs) >= Math.abs(byMs) / 2;
}

/** What one change of the offset to the host says about the step: whether it was the step's, and where the step is. */
export interface OffsetChangeVerdict {
  own: boolean;
  /** converged: the offset has moved back by the whole step; expired: the grace ran out first. */
  state: 'pending' | 'converged' | 'expired';
}

/**
 * A realtime step the agent made itself (the safety net healing the clock, by `byMs`), as each view of the clock sees
 * it. The guest's clock probe sees it as one move of realtime against monotonic. The offset to the host sees it come
 * back in one move after `date`; after `chronyc makestep`, in chronyd's step and then its slew of what its estimate
 * missed. Neither is an event of the guest's, and each is recognised once, until `untilMs` (monotonic).
 */
export class OwnClockStep {
  private clockMoveClaimed = false;
  private offsetMovedMs = 0;

  constructor(
    readonly byMs: number,
    readonly askedAtMs: number,
    readonly untilMs: number,
  ) {}

  /** A move of realtime against monotonic the clock probe saw: true for the first one that is this step. */
  claimClockMove(movedMs: number, atMs: number): boolean {
    if (this.clockMoveClaimed || atMs > this.untilMs || !isOwnStep(movedMs, this.byMs)) return false;
    this.clockMoveClaimed = true;
    return true;
  }

  /** A change of the offset to the host: moves the way of the heal, and no further than it, are the heal's. */
  takeOffsetChange(changeMs: number, atMs: number): OffsetChangeVerdict {
    if (atMs > this.untilMs) return { own: false, state: 'expired' };
    const tolerance = ownStepToleranceMs(this.byMs);
    const own = Math.sign(changeMs) === Math.sign(this.byMs) && Math.abs(this.offsetMovedMs + changeMs) <= Math.abs(this.byMs) + tolerance;
    if (own) this.offsetMovedMs += changeMs;
    return { own, state: Math.abs(this.offsetMovedMs - this.byMs) <= tolerance ? 'converged' : 'pending' };
  }
}
