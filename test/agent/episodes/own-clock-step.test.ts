// The agent's own clock step as each view of the clock sees it: the clock probe's one move, the offset to the host's
// moves (date: one; chronyd: its step, then a slew), converging, or running out of time.
import t from 'tap';
import { isOwnStep, OwnClockStep } from '../../../agent/episodes/own-clock-step.js';

t.test("a time daemon's step for flinch is its own estimate: smaller than asked, the same way, counts as flinch's", async (t) => {
  t.ok(isOwnStep(-3694, -3694), 'date: exactly the step');
  t.ok(isOwnStep(-3450, -3694), 'chronyd: its estimate, a slew having taken some already');
  t.notOk(isOwnStep(-1500, -3694), 'less than half is not it');
  t.notOk(isOwnStep(3694, -3694), 'the other way is not it');
  t.notOk(isOwnStep(-4000, -3694), 'beyond what was asked (and its tolerance) is not it');
});

t.test('the clock probe claims the step once, within its time', async (t) => {
  const step = new OwnClockStep(-3000, 1000, 5000);
  t.notOk(step.claimClockMove(-1000, 2000), 'a move of another size is not it');
  t.ok(step.claimClockMove(-2990, 2000));
  t.notOk(step.claimClockMove(-2990, 2100), 'a second move like it is the guest\'s');
  t.notOk(new OwnClockStep(-3000, 1000, 5000).claimClockMove(-3000, 5001), 'nor one after the grace');
});

t.test('the offset to the host: date comes back in one move', async (t) => {
  const step = new OwnClockStep(-3000, 1000, 120_000);
  t.same(step.takeOffsetChange(-3010, 3000), { own: true, state: 'converged' });
});

t.test("the offset to the host: chronyd's step, then its slew; a move the other way is not the heal's", async (t) => {
  const step = new OwnClockStep(-3000, 1000, 120_000);
  t.same(step.takeOffsetChange(-2600, 3000), { own: true, state: 'pending' }, "chronyd's estimate");
  t.same(step.takeOffsetChange(150, 4000), { own: false, state: 'pending' }, 'the other way: the guest\'s (or the probe\'s wobble)');
  t.same(step.takeOffsetChange(-250, 5000), { own: true, state: 'pending' });
  t.same(step.takeOffsetChange(-800, 6000), { own: false, state: 'pending' }, 'further than the step is not the heal\'s');
  t.same(step.takeOffsetChange(-150, 7000), { own: true, state: 'converged' }, 'the slew took the rest');
});

t.test('past its grace the step is over, converged or not', async (t) => {
  const step = new OwnClockStep(2000, 1000, 121_000);
  t.same(step.takeOffsetChange(500, 2000), { own: true, state: 'pending' });
  t.same(step.takeOffsetChange(1500, 121_001), { own: false, state: 'expired' });
});
