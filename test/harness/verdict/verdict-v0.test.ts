import t from 'tap';
import { verdictV0 } from '../../../harness/verdict/verdict-v0.js';

t.test('nothing seen and no lag is transparent', async (t) => {
  t.same(verdictV0({ linkEvents: 0, clockLagMs: 0.4 }), { verdict: 'transparent', reasons: [] });
  t.same(verdictV0({ linkEvents: 0, clockLagMs: null }), { verdict: 'transparent', reasons: [] });
});

t.test('a link event or a lag of 1 ms either way is noticed, with the reasons', async (t) => {
  t.same(verdictV0({ linkEvents: 10, clockLagMs: 0 }), { verdict: 'noticed', reasons: ['10 link event(s)'] });
  t.same(verdictV0({ linkEvents: 0, clockLagMs: 1 }).verdict, 'noticed');
  t.same(verdictV0({ linkEvents: 0, clockLagMs: -3.25 }).reasons, ['clock lag -3.3 ms ≥ 1 ms']);
});

t.test('a guest silent since the migration is unknown, whatever else was measured before it went quiet', async (t) => {
  const silent = verdictV0({ linkEvents: 0, clockLagMs: null, silentForMs: 112_400 });
  t.equal(silent.verdict, 'unknown');
  t.match(silent.reasons[0], /^nothing heard from the guest for the last 112 s/);
  t.equal(verdictV0({ linkEvents: 2, clockLagMs: 0, silentForMs: 5000 }).verdict, 'unknown', 'link events from before it went quiet prove nothing after');
  t.equal(verdictV0({ linkEvents: 0, clockLagMs: 0, silentForMs: null }).verdict, 'transparent', 'heard: judged on what was seen');
});
