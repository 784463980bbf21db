import type { OutsideFigures } from '../blackout/outside-view.js';

export type OutsideVerdict = 'transparent' | 'noticed' | 'disrupted';

/** A gap around the resume longer than this is a disruption a user's connections feel (TCP's first retransmit is 1 s). */
export const OUTSIDE_DISRUPTED_GAP_MS = 1000;
/** A clock lag counts once it is above this, and above twice what the stamps can tell apart. */
export const OUTSIDE_NOTICED_LAG_MS = 5;

/**
 * The verdict from outside, with nothing of flinch in the guest: `disrupted` if the guest stopped answering around the
 * resume for longer than OUTSIDE_DISRUPTED_GAP_MS (or did not answer again at all), `noticed` if its clock came
 * back behind (or ahead) by more than the stamps' noise, else `transparent`. It cannot see what only the guest sees
 * (link events, lost firewall rules), so it can call transparent what the agent calls noticed, never the other way
 * for the clock.
 */
export function outsideVerdict(figures: OutsideFigures, answeredAfter: boolean): { verdict: OutsideVerdict; evidence: string[] } {
  const evidence: string[] = [];
  let verdict: OutsideVerdict = 'transparent';
  if (!answeredAfter) {
    verdict = 'disrupted';
    evidence.push('disrupted: the guest did not answer ICMP after the migration');
  } else if (figures.resumeGapMs !== null && figures.resumeGapMs > OUTSIDE_DISRUPTED_GAP_MS) {
    verdict = 'disrupted';
    evidence.push(`disrupted: no ICMP reply for ${figures.resumeGapMs} ms around the resume (more than ${OUTSIDE_DISRUPTED_GAP_MS} ms)`);
  }
  const { clockLagMs: lag, clockLagUncertaintyMs: uncertainty } = figures;
  if (lag !== null && uncertainty !== null && Math.abs(lag) > Math.max(OUTSIDE_NOTICED_LAG_MS, 2 * uncertainty)) {
    if (verdict === 'transparent') verdict = 'noticed';
    evidence.push(`noticed: the guest clock came back ${Math.abs(lag)} ms ${lag > 0 ? 'behind' : 'ahead'} (ICMP timestamps, ±${uncertainty} ms)`);
  }
  return { verdict, evidence };
}
