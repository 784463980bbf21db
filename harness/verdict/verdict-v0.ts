/**
 * Verdict v0, from the walking skeleton: a migration was noticed if the guest saw any link event or its clock fell
 * behind the host by at least the threshold against its pre-migration baseline. The episode engine replaces this.
 */
export type VerdictV0 = 'transparent' | 'noticed';

export interface VerdictV0Input {
  linkEvents: number;
  clockLagMs: number | null;
}

export const CLOCK_LAG_THRESHOLD_MS = 1;

export function verdictV0({ linkEvents, clockLagMs }: VerdictV0Input): { verdict: VerdictV0; reasons: string[] } {
  const reasons: string[] = [];
  if (linkEvents > 0) reasons.push(`${linkEvents} link event(s)`);
  if (clockLagMs !== null && Math.abs(clockLagMs) >= CLOCK_LAG_THRESHOLD_MS) {
    reasons.push(`clock lag ${clockLagMs.toFixed(1)} ms ≥ ${CLOCK_LAG_THRESHOLD_MS} ms`);
  }
  return { verdict: reasons.length > 0 ? 'noticed' : 'transparent', reasons };
}
