/**
 * Verdict v0, from the walking skeleton: a migration was noticed if the guest saw any link event or its clock fell
 * behind the host by at least the threshold against its pre-migration baseline. The episode engine replaces this.
 * A guest that has gone silent since the migration is unknown, never transparent: silence is what a guest whose kernel
 * panicked or hung looks like from here (a Debian 12 guest's did, once, after a TCG live migration in CI).
 */
export type VerdictV0 = 'transparent' | 'noticed' | 'unknown';

export interface VerdictV0Input {
  linkEvents: number;
  clockLagMs: number | null;
  /** How long the guest has said nothing at all, up to the verdict; null when it was heard lately. */
  silentForMs?: number | null;
}

export const CLOCK_LAG_THRESHOLD_MS = 1;

export function verdictV0({ linkEvents, clockLagMs, silentForMs = null }: VerdictV0Input): { verdict: VerdictV0; reasons: string[] } {
  if (silentForMs !== null) {
    return {
      verdict: 'unknown',
      reasons: [`nothing heard from the guest for the last ${(silentForMs / 1000).toFixed(0)} s: no report, and its agent has sent no observation and answered no time exchange (crashed, hung or cut off?)`],
    };
  }
  const reasons: string[] = [];
  if (linkEvents > 0) reasons.push(`${linkEvents} link event(s)`);
  if (clockLagMs !== null && Math.abs(clockLagMs) >= CLOCK_LAG_THRESHOLD_MS) {
    reasons.push(`clock lag ${clockLagMs.toFixed(1)} ms ≥ ${CLOCK_LAG_THRESHOLD_MS} ms`);
  }
  return { verdict: reasons.length > 0 ? 'noticed' : 'transparent', reasons };
}
