// Unit: the legacy iptables poll's two rates. Time is injected; the rates are long enough that no timer fires here.
import t from 'tap';
import { LEGACY_ATTENTION_MS, LegacyPoll } from '../../../probes/firewall/iptables-probe.js';

const RATES = { legacyPollMs: 1_000_000, legacyIdlePollMs: 9_000_000 };

t.test('idle until something happens; then a read at once and the fast rate for the attention window', (t) => {
  let now = 5_000;
  let reads = 0;
  const poll = new LegacyPoll(() => (reads += 1), RATES, () => now);
  t.teardown(() => poll.stop());
  t.equal(poll.currentIntervalMs, RATES.legacyIdlePollMs);
  t.equal(reads, 0, 'nothing read before anything happened');

  poll.attend();
  t.equal(reads, 1, 'attention reads at once');
  t.equal(poll.currentIntervalMs, RATES.legacyPollMs);

  now += 1_000;
  poll.attend();
  t.equal(reads, 1, 'already attentive: the fast poll reads next, not every observation');

  now += LEGACY_ATTENTION_MS - 1;
  t.equal(poll.currentIntervalMs, RATES.legacyPollMs, 'the window runs from the last attention');
  now += 1;
  t.equal(poll.currentIntervalMs, RATES.legacyIdlePollMs, 'back to the idle rate');

  poll.attend();
  t.equal(reads, 2, 'attention after the window reads at once again');
  t.end();
});

t.test('a stopped poll reads nothing more', (t) => {
  let reads = 0;
  const poll = new LegacyPoll(() => (reads += 1), RATES, () => 0);
  poll.stop();
  poll.attend();
  t.equal(reads, 0);
  t.end();
});

t.test('the timer reads at the rate in force', async (t) => {
  let reads = 0;
  const poll = new LegacyPoll(() => (reads += 1), { legacyPollMs: 5, legacyIdlePollMs: 9_000_000 });
  t.teardown(() => poll.stop());
  poll.attend();
  while (reads < 3) await new Promise((resolve) => setTimeout(resolve, 5));
  t.ok(reads >= 3, 'the fast rate re-arms itself after each read');
});
