// The outside verdict's rules on the figures a real lab run gave (QEMU TCG, ICMP every 5 ms): a plain migration, a
// control, a link-down, a guest that never answered again.
import t from 'tap';
import { outsideVerdict } from '../../../harness/verdict/outside-verdict.js';
import { splitBlackout } from '../../../harness/blackout/network-witness.js';

const figures = { sent: 1000, received: 980, longestGapMs: 169.3, resumeGapMs: 169.3, clockLagMs: 123.1, clockLagUncertaintyMs: 3.8 };

t.test('a plain migration: the clock came back 123 ms behind, the gap was short', async (t) => {
  const { verdict, evidence } = outsideVerdict(figures, true);
  t.equal(verdict, 'noticed');
  t.match(evidence[0], /^noticed: the guest clock came back 123.1 ms behind \(ICMP timestamps, ±3.8 ms\)$/);
});

t.test('a control: no lag beyond the noise, no gap', async (t) => {
  t.same(outsideVerdict({ ...figures, resumeGapMs: 8.2, longestGapMs: 12.2, clockLagMs: 0.1, clockLagUncertaintyMs: 3.7 }, true), { verdict: 'transparent', evidence: [] });
  t.equal(outsideVerdict({ ...figures, clockLagMs: 6, clockLagUncertaintyMs: 3.7 }, true).verdict, 'transparent', 'a lag under twice the uncertainty is noise');
  t.equal(outsideVerdict({ ...figures, clockLagMs: -9, clockLagUncertaintyMs: 3.7 }, true).verdict, 'noticed', 'a clock that comes back ahead is noticed too');
});

t.test('a link-down: 3.2 s without a reply is a disruption', async (t) => {
  const { verdict, evidence } = outsideVerdict({ ...figures, resumeGapMs: 3222.2, clockLagMs: 90.1 }, true);
  t.equal(verdict, 'disrupted');
  t.equal(evidence.length, 2, 'the lag is still said');
});

t.test('a guest that never answered again', async (t) => {
  t.equal(outsideVerdict({ ...figures, resumeGapMs: null, clockLagMs: null, clockLagUncertaintyMs: null }, false).verdict, 'disrupted');
});

t.test('the blackout around the resume splits into stretches that add up to it', async (t) => {
  const pause = { stoppedAtMs: 1000, resumedAtMs: 1120 };
  const split = splitBlackout({ fromMs: 998, toMs: 1400 }, pause, 1120.1, 1120.6);
  t.same(split, { beforePauseMs: 2, pauseMs: 120, untilAnnouncementMs: 0.1, untilBridgeMs: 0.5, restMs: 279.4 });
  const sum = Object.values(split).reduce((a, b) => a + b, 0);
  t.ok(Math.abs(sum - 402) < 0.2, `they add up to the gap (${sum})`);
  t.same(splitBlackout({ fromMs: 998, toMs: 1400 }, pause, null, null), { beforePauseMs: 2, pauseMs: 120, untilAnnouncementMs: 0, untilBridgeMs: 0, restMs: 280 }, 'nothing announced: the rest has it');
  t.same(splitBlackout({ fromMs: -1000, toMs: 1300 }, pause, 1200, 1150), { beforePauseMs: 2000, pauseMs: 120, untilAnnouncementMs: 80, untilBridgeMs: 0, restMs: 100 }, 'a bridge that had moved before the first announcement adds nothing');
});
