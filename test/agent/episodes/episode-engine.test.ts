// The episode engine with an injected clock: time moves only when the test says so.
import t from 'tap';
import { isMigrationEvidence } from '../../../agent/episodes/triggers.js';
import { OwnClockStep } from '../../../agent/episodes/own-clock-step.js';
import { EpisodeEngine, DEFAULT_EPISODE_OPTIONS, type Episode, type EngineClock } from '../../../agent/episodes/episode-engine.js';

/** The engine as it is once its noise floor is past its warm-up (tested on its own at the end). */
const AFTER_WARM_UP = {
  ...DEFAULT_EPISODE_OPTIONS,
  pauseNoise: { ...DEFAULT_EPISODE_OPTIONS.pauseNoise, warmUpMs: 0 },
  offsetNoise: { ...DEFAULT_EPISODE_OPTIONS.offsetNoise, warmUpMs: 0 },
};
import { judgeEpisode, DEFAULT_VERDICT_THRESHOLDS } from '../../../agent/episodes/verdict.js';
import type { ObservationOf, Observation } from '../../../contract/observation.js';

function fakeClock() {
  let now = 1000;
  const timers: Array<{ at: number; fn: () => void; id: number }> = [];
  let next = 0;
  const clock: EngineClock = {
    now: () => ({ realtimeMs: now, monotonicMs: now }),
    setTimer: (fn, ms) => {
      const id = ++next;
      timers.push({ at: now + ms, fn, id });
      return id;
    },
    clearTimer: (id) => {
      const i = timers.findIndex((x) => x.id === id);
      if (i >= 0) timers.splice(i, 1);
    },
  };
  const advance = (ms: number) => {
    now += ms;
    for (const timer of timers.filter((x) => x.at <= now)) {
      timers.splice(timers.indexOf(timer), 1);
      timer.fn();
    }
  };
  return { clock, advance, stamp: () => ({ realtimeMs: now, monotonicMs: now }) };
}

const link = (at: { realtimeMs: number; monotonicMs: number }, extra: Partial<ObservationOf<'link'>> = {}, state: Partial<ObservationOf<'link'>['link']> = {}): ObservationOf<'link'> => ({
  kind: 'link', action: 'new', event: null, at, ...extra,
  link: { ifindex: 2, name: 'eth0', mac: '52:54:00:00:00:01', mtu: 1500, adminUp: true, lowerUp: true, running: true, operstate: 'up', carrier: 1, carrierChanges: 2, carrierUpCount: 1, carrierDownCount: 1, ...state },
});

t.test('NOTIFY_PEERS opens an episode that closes after a quiet settle window, with what came just before', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 3000, lookbackMs: 2000 }, clock);
  engine.ingest(link(stamp(), { action: 'dump' }));
  advance(500);
  const before: Observation = { kind: 'neighbour', action: 'del', ifindex: 2, address: '10.0.3.1', lladdr: null, state: [], at: stamp() };
  engine.ingest(before);
  advance(100);
  t.equal(engine.open, null, 'nothing yet');
  engine.ingest(link(stamp(), { event: 'notify-peers' }));
  t.ok(engine.open);
  advance(2000);
  engine.ingest(link(stamp(), { event: 'igmp-resend' }));
  advance(2999);
  t.equal(closed.length, 0, 'still settling: each observation restarts the window');
  advance(1);
  t.equal(closed.length, 1);
  const episode = closed[0]!;
  t.same(episode.triggers.map((x) => x.kind), ['notify-peers', 'igmp-resend']);
  t.equal(episode.observations.length, 4, 'the dump and the neighbour loss from the lookback, and both events');
  t.same(judgeEpisode(episode, 'not-needed', DEFAULT_VERDICT_THRESHOLDS).verdict, 'disrupted', 'the gateway neighbour was lost');
});

t.test('a carrier counter that moved, an interface re-created, a canary lost: each alone opens nothing, and joins a migration\'s episode', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  const flushed = () => ({ kind: 'firewall', backend: 'nftables', hash: 'x', previousHash: 'y', rules: 0, added: [], removed: ['r'], canary: 'missing', staleInterfaceRefs: [], trigger: 'event', at: stamp() }) as Observation;
  engine.ingest(link(stamp(), { action: 'dump' }));
  t.same(engine.ingest(link(stamp(), {}, { carrierChanges: 4 })).map((x) => x.kind), ['carrier-counter']);
  advance(200);
  engine.ingest(link(stamp(), { action: 'del' }));
  t.same(engine.ingest(link(stamp(), {}, { ifindex: 3, carrierChanges: 1 })).map((x) => x.kind), ['interface-recreated']);
  advance(200);
  t.same(engine.ingest(flushed()).map((x) => x.kind), ['canary-lost']);
  advance(AFTER_WARM_UP.lookbackMs + 1);
  t.same(closed, [], 'an administrator does all of these: no episode');
  engine.announce('starting', 'm-1');
  engine.ingest(flushed());
  engine.ingest(link(stamp(), {}, { ifindex: 3, carrierChanges: 2 }));
  engine.announce('finished', 'm-1');
  advance(200);
  t.same(closed[0]!.triggers.map((x) => x.kind), ['harness-announce', 'canary-lost', 'carrier-counter', 'harness-announce'], 'inside a migration\'s episode they count');
  t.equal(judgeEpisode(closed[0]!, 'not-needed', DEFAULT_VERDICT_THRESHOLDS).verdict, 'disrupted');
  t.equal(judgeEpisode(closed[0]!, 'healed', DEFAULT_VERDICT_THRESHOLDS).verdict, 'healed', 'healed when the safety net says so');
});

t.test("a re-creation seen just before the announcement that explains it is in the announced episode (its word came late)", async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  engine.ingest(link(stamp(), { action: 'dump' }));
  advance(AFTER_WARM_UP.lookbackMs + 500);
  engine.ingest(link(stamp(), { action: 'del' }));
  engine.ingest(link(stamp(), {}, { ifindex: 3 }));
  advance(AFTER_WARM_UP.lookbackMs - 100);
  engine.announce('starting', 'm-1');
  engine.announce('finished', 'm-1');
  advance(200);
  t.same(closed[0]!.triggers.map((x) => x.kind), ['interface-recreated', 'harness-announce', 'harness-announce']);
  t.equal(closed[0]!.observations.filter((o) => o.kind === 'link').length, 2, 'with the observations that raised it');

  // Older than the lookback, it belongs to nobody's migration.
  engine.ingest(link(stamp(), { action: 'del' }, { ifindex: 3 }));
  engine.ingest(link(stamp(), {}, { ifindex: 4 }));
  advance(AFTER_WARM_UP.lookbackMs + 1);
  engine.announce('starting', 'm-2');
  engine.announce('finished', 'm-2');
  advance(200);
  t.same(closed[1]!.triggers.map((x) => x.kind), ['harness-announce', 'harness-announce']);
});

t.test('a harness announcement names the episode; an endless one is closed at the cap', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 1000, maxEpisodeMs: 5000 }, clock);
  engine.announce('starting', 'm-1');
  for (let i = 0; i < 20; i += 1) {
    advance(500);
    engine.ingest({ kind: 'pause', lateByMs: 20, stealMs: 0, at: stamp() });
  }
  t.equal(closed.length >= 1, true);
  t.equal(closed[0]!.migrationId, 'm-1');
  t.ok(closed[0]!.closedAt!.monotonicMs - closed[0]!.openedAt.monotonicMs <= 5000, 'closed by the cap');
  const quiet = new EpisodeEngine((e) => closed.push(e), DEFAULT_EPISODE_OPTIONS, clock);
  quiet.announce('starting', 'm-2');
  advance(DEFAULT_EPISODE_OPTIONS.settleMs * 3);
  t.equal(quiet.open?.migrationId, 'm-2', 'a migration under way keeps its episode open through a quiet copy phase');
  quiet.announce('finished', 'm-2');
  advance(DEFAULT_EPISODE_OPTIONS.settleMs);
  t.equal(quiet.open, null, 'then it settles as usual');
  t.equal(judgeEpisode(closed.at(-1)!, 'not-needed', DEFAULT_VERDICT_THRESHOLDS).verdict, 'transparent', 'announced, nothing seen: transparent');
});

t.test("a migration starting while a noisy episode is open gets an episode of its own", async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 1000, maxEpisodeMs: 60_000 }, clock);
  const noise = () => engine.ingest({ kind: 'pause', lateByMs: 80, stealMs: 0, at: stamp() });
  noise();
  for (let i = 0; i < 5; i += 1) {
    advance(500);
    noise();
  }
  engine.announce('starting', 'm-1');
  t.equal(closed.length, 1, 'the unnamed episode, open longer than a settle window, is closed');
  t.equal(closed[0]!.migrationId, null);
  advance(500);
  noise();
  engine.announce('finished', 'm-1');
  advance(500);
  engine.announce('starting', 'm-2');
  t.equal(closed.length, 2, "m-1's episode closes when m-2 starts, though the noise kept it open");
  t.equal(closed[1]!.migrationId, 'm-1');
  t.equal(engine.open!.migrationId, 'm-2');
  engine.announce('finished', 'm-2');
  t.equal(engine.open!.migrationId, 'm-2', 'finishing joins the open episode of the same migration');
  const fresh = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 1000 }, clock);
  fresh.ingest({ kind: 'pause', lateByMs: 80, stealMs: 0, at: stamp() });
  advance(200);
  fresh.announce('starting', 'm-3');
  t.equal(fresh.open!.migrationId, 'm-3', 'an episode that has just opened is the migration\'s own: it is named, not closed');
  t.equal(fresh.open!.triggers[0]!.kind, 'pause');
});

t.test("what a migration's before-faults did just before it started is its own, not the closing episode's", async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 1000, lookbackMs: 500, maxEpisodeMs: 60_000 }, clock);
  const noise = () => engine.ingest({ kind: 'pause', lateByMs: 80, stealMs: 0, at: stamp() });
  engine.ingest(link(stamp())); // the baseline the carrier counter moves from
  noise();
  for (let i = 0; i < 4; i += 1) {
    advance(400);
    noise();
  }
  advance(100);
  engine.ingest(link(stamp(), {}, { carrier: 0, lowerUp: false, running: false, operstate: 'lower-layer-down', carrierChanges: 3, carrierDownCount: 2 }));
  advance(100);
  engine.announce('starting', 'm-1');
  t.equal(closed.length, 1, 'the noisy unnamed episode is closed');
  t.notOk(closed[0]!.observations.some((o) => o.kind === 'link' && o.link.carrier === 0), 'without the link going down');
  t.notOk(closed[0]!.triggers.some((x) => x.kind === 'carrier-counter'));
  t.ok(closed[0]!.triggers.some((x) => x.kind === 'pause'), 'it keeps its older noise');
  const open = engine.open!;
  t.equal(open.migrationId, 'm-1');
  t.ok(open.observations.some((o) => o.kind === 'link' && o.link.carrier === 0), "the carrier loss is in the migration's episode");
  t.ok(open.triggers.some((x) => x.kind === 'carrier-counter'));
  t.equal(open.triggers.at(-1)!.kind, 'harness-announce', 'carried triggers come before the announcement');
});

t.test("a lost announcement does not keep an episode open: the next migration's, whatever its phase, closes it", async (t) => {
  const { clock } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 1000 }, clock);
  engine.announce('starting', 'm-1'); // its "finished" never arrives: the connection was lost across the save/restore
  engine.announce('finished', 'm-2'); // replayed by the collector when the agent came back
  t.same(closed.map((e) => e.migrationId), ['m-1']);
  t.equal(engine.open!.migrationId, 'm-2');
});

t.test('a suspend (monotonic stopped, realtime and boottime ran on) is noticed however long; a step of realtime alone disrupts', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  const sample = (rt: number, bt: number) =>
    ({ kind: 'clock', realtimeMs: 0, monotonicMs: 0, boottimeMs: 0, realtimeMinusMonotonicMs: rt, boottimeMinusMonotonicMs: bt, at: stamp() }) as Observation;
  engine.ingest(sample(0, 0));
  engine.ingest(sample(20_430, 20_440)); // Xen save/restore of 20 s, as the nested lab sees it
  advance(200);
  t.same(closed[0]!.triggers.map((x) => x.kind), ['boottime-jump']);
  t.equal(judgeEpisode(closed[0]!, 'not-needed', DEFAULT_VERDICT_THRESHOLDS).verdict, 'noticed');
  engine.ingest(sample(25_430, 20_440)); // realtime stepped 5 s on its own
  advance(200);
  t.same(closed[1]!.triggers.map((x) => x.kind), ['clock-step']);
  t.equal(judgeEpisode(closed[1]!, 'not-needed', DEFAULT_VERDICT_THRESHOLDS).verdict, 'disrupted');
});

t.test('clock steps: small ones are noticed, large ones disrupt', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  const sample = (rt: number) => ({ kind: 'clock', realtimeMs: 0, monotonicMs: 0, boottimeMs: 0, realtimeMinusMonotonicMs: rt, boottimeMinusMonotonicMs: 0, at: stamp() }) as Observation;
  engine.ingest(sample(0));
  engine.ingest(sample(50));
  advance(200);
  engine.ingest(sample(5050));
  advance(200);
  t.same(closed.map((e) => judgeEpisode(e, 'not-needed', DEFAULT_VERDICT_THRESHOLDS).verdict), ['noticed', 'disrupted']);
});

t.test("a clock read that was held up (a wide read spread) is not taken for a step, a real step still is", async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  const sample = (rt: number, bt: number, readSpreadMs: number) =>
    ({ kind: 'clock', realtimeMs: 0, monotonicMs: 0, boottimeMs: 0, realtimeMinusMonotonicMs: rt, boottimeMinusMonotonicMs: bt, readSpreadMs, at: stamp() }) as Observation;
  engine.ingest(sample(0, 0, 0.1));
  engine.ingest(sample(-5.4, -5, 10.9)); // the read took 10.9 ms: realtime and boottime "moved" by its midpoint error
  engine.ingest(sample(0, 0, 0.2));
  advance(200);
  t.same(closed, [], 'no episode');
  engine.ingest(sample(8, 0, 0.2));
  advance(200);
  t.same(closed.flatMap((e) => e.triggers.map((x) => x.kind)), ['clock-step'], 'an 8 ms step read tightly is one');
});

t.test("inside a migration's episode, a pause or an offset move within the machine's noise is not evidence (controls found it)", async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  engine.announce('starting', 'control-1');
  engine.ingest({ kind: 'pause', lateByMs: 0, stealMs: 10, at: stamp() });
  engine.ingest({ kind: 'host-offset', offsetMs: 1, rttMs: 1, changeMs: -15.4, at: stamp() });
  engine.announce('finished', 'control-1');
  advance(200);
  t.equal(closed[0]!.observations.length, 2, 'both kept in the episode');
  t.same(judgeEpisode(closed[0]!, 'not-needed', DEFAULT_VERDICT_THRESHOLDS), { verdict: 'transparent', evidence: [] }, 'but nothing the guest noticed');

  engine.announce('starting', 'm-2');
  engine.ingest({ kind: 'pause', lateByMs: 400, stealMs: 0, at: stamp() });
  engine.ingest({ kind: 'host-offset', offsetMs: 80, rttMs: 1, changeMs: 400, at: stamp() });
  engine.announce('finished', 'm-2');
  advance(200);
  t.match(judgeEpisode(closed[1]!, 'not-needed', DEFAULT_VERDICT_THRESHOLDS), { verdict: 'noticed', evidence: [{ kind: 'pause' }, { kind: 'clock-lag' }] }, 'above the floor they are');
});

t.test('a pause alone opens an episode only above the noise floor the engine learns from its own history', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  const pause = (lateByMs: number, stealMs = 0) => engine.ingest({ kind: 'pause', lateByMs, stealMs, at: stamp() });
  for (let i = 0; i < 200; i += 1) {
    t.same(pause(i % 2 ? 0.4 : 12, i % 3 ? 10 : 0), [], 'host noise (the issue\'s "woke 0.4 ms late, 10 ms stolen") opens nothing');
    advance(500);
  }
  t.equal(closed.length, 0);
  t.equal(engine.noiseFloor.learntMs(), 12, 'the noise is learnt');
  t.equal(engine.noiseFloor.thresholdMs(stamp().monotonicMs), DEFAULT_EPISODE_OPTIONS.pauseNoise.minimumMs, 'below the minimum, the minimum holds');
  t.same(pause(60).map((x) => x.kind), ['pause'], 'a 60 ms pause stands out');
  advance(200);
  t.equal(closed.length, 1);
  t.equal(engine.noiseFloor.thresholdMs(stamp().monotonicMs), 50, 'one spike is under the 99th percentile of 201 samples');
  for (let i = 0; i < 10; i += 1) {
    pause(60);
    advance(200);
  }
  t.ok(engine.noiseFloor.thresholdMs(stamp().monotonicMs) >= 180, `spikes that prove nothing raise the floor (${engine.noiseFloor.thresholdMs(stamp().monotonicMs)} ms)`);
  const opened = closed.length;
  t.same(pause(100), [], 'and a 100 ms pause is noise now');
  advance(200);
  t.equal(closed.length, opened);
});

t.test('a pause in an episode with migration evidence is not learnt as noise; --timing-noise overrides the floor', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  for (let i = 0; i < 20; i += 1) {
    engine.announce('starting', `m-${i}`);
    engine.ingest({ kind: 'pause', lateByMs: 300, stealMs: 0, at: stamp() });
    engine.announce('finished', `m-${i}`);
    advance(200);
  }
  t.equal(engine.noiseFloor.learntMs(), 0, 'migrations\' pauses are not noise');
  t.same(engine.ingest({ kind: 'pause', lateByMs: 300, stealMs: 0, at: stamp() }).map((x) => x.kind), ['pause']);
  const strict = new EpisodeEngine(() => undefined, { ...AFTER_WARM_UP, pauseNoise: { ...AFTER_WARM_UP.pauseNoise, overrideMs: 500 } }, clock);
  t.same(strict.ingest({ kind: 'pause', lateByMs: 300, stealMs: 0, at: stamp() }), [], 'under an explicit 500 ms floor a 300 ms pause is noise');
});

t.test('only migration signals are migration evidence', async (t) => {
  for (const kind of ['notify-peers', 'igmp-resend', 'xen-domid', 'xen-suspend', 'boottime-jump', 'kmsg-suspend', 'host-offset-step', 'harness-announce'] as const) {
    t.ok(isMigrationEvidence({ kind }), kind);
  }
  for (const kind of ['pause', 'clock-step', 'carrier-counter', 'interface-recreated', 'canary-lost'] as const) {
    t.notOk(isMigrationEvidence({ kind }), `${kind}: an administrator or a busy host does this too`);
  }
});

t.test('the offset to the host: probe wobble is learnt as noise; a migration-sized lag is migration evidence', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  const offset = (changeMs: number) => engine.ingest({ kind: 'host-offset', offsetMs: 0, rttMs: 1, changeMs, at: stamp() });
  for (let i = 0; i < 100; i += 1) {
    t.same(offset(i % 2 ? 2.5 : -3), [], 'a loaded host\'s few-ms wobble opens nothing');
    advance(1000);
  }
  t.equal(closed.length, 0);
  const step = offset(-55);
  t.same(step.map((x) => x.kind), ['host-offset-step'], 'a QEMU-downtime-sized lag is a trigger');
  t.ok(isMigrationEvidence(step[0]!));
});

t.test("the agent's own clock step (healing the clock) opens no episode", async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 100 }, clock);
  const sample = (rt: number) => ({ kind: 'clock', realtimeMs: 0, monotonicMs: 0, boottimeMs: 0, realtimeMinusMonotonicMs: rt, boottimeMinusMonotonicMs: 0, at: stamp() }) as Observation;
  engine.ingest(sample(0));
  engine.expectOwnClockStep(new OwnClockStep(3200, 0, stamp().monotonicMs, stamp().monotonicMs + 1000));
  t.same(engine.ingest(sample(3200)), [], 'the step it made itself');
  t.same(engine.ingest({ kind: 'host-offset', offsetMs: 0, rttMs: 1, changeMs: 3200, cause: 'flinch-clock-heal', at: stamp() }), [], 'and the offset coming back, marked by the runtime');
  t.same(engine.ingest(sample(6400)).map((x) => x.kind), ['clock-step'], 'expected once: the next step of the same size is the guest\'s');
  engine.expectOwnClockStep(new OwnClockStep(-2000, 0, stamp().monotonicMs, stamp().monotonicMs + 1000));
  t.same(engine.ingest(sample(9400)).map((x) => x.kind), ['clock-step'], 'a move of another size is not the one flinch made');
  advance(2000);
  t.same(engine.ingest(sample(7400)).map((x) => x.kind), ['clock-step'], 'nor one after the expectation ran out');
});

t.test('for its first 10 minutes the floor is at least 200 ms: the noise is not known yet', async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const engine = () => new EpisodeEngine(() => undefined, { ...DEFAULT_EPISODE_OPTIONS, settleMs: 100 }, clock);
  const pause = (e: EpisodeEngine, lateByMs: number) => e.ingest({ kind: 'pause', lateByMs, stealMs: 0, at: stamp() });
  const early = engine();
  t.same(pause(early, 30), [], 'the first reading starts the warm-up');
  t.equal(early.noiseFloor.thresholdMs(stamp().monotonicMs), 200, 'warming up: 200 ms');
  t.same(pause(early, 120), [], 'so a 120 ms spike (this machine under stress-ng showed 80 ms of steal) opens nothing');
  const later = engine();
  t.same(pause(later, 30), []);
  advance(10 * 60_000 + 1);
  t.equal(later.noiseFloor.thresholdMs(stamp().monotonicMs), 90, 'past the warm-up: 3 × the 99th percentile of what proved nothing');
  t.same(pause(later, 120).map((x) => x.kind), ['pause'], 'and the same 120 ms pause now stands out');
});

t.test("a time daemon slewing the clock back (the offset moving every second, within its floor) does not hold an episode open", async (t) => {
  const { clock, advance, stamp } = fakeClock();
  const closed: Episode[] = [];
  const engine = new EpisodeEngine((e) => closed.push(e), { ...AFTER_WARM_UP, settleMs: 3000 }, clock);
  engine.ingest(link(stamp(), { event: 'notify-peers' }));
  // chronyd at its 83 333 ppm maximum: 8 ms of offset every 100 ms, seen by exchanges every 100 ms, for a minute.
  for (let i = 0; i < 600 && closed.length === 0; i += 1) {
    advance(100);
    engine.ingest({ kind: 'host-offset', offsetMs: -5000 + i * 8, rttMs: 1, changeMs: 8, at: stamp() });
  }
  t.equal(closed.length, 1, 'closed within the minute');
  t.ok(closed[0]!.closedAt!.monotonicMs - closed[0]!.openedAt.monotonicMs <= 3100, 'a settle window after the last event, not the 120 s cap');
  t.ok(closed[0]!.observations.some((o) => o.kind === 'host-offset'), 'the offsets seen meanwhile are still evidence');
});

t.test('a migration announced again while it runs keeps its episode open past the cap, counted from the last word', async (t) => {
  const { clock, advance } = fakeClock();
  const closed: Episode[] = [];
  const options = { ...AFTER_WARM_UP, settleMs: 1000, maxEpisodeMs: 5000 };
  const engine = new EpisodeEngine((e) => closed.push(e), options, clock);
  t.ok(engine.announce('starting', 'm-1'), 'the first word is a trigger');
  // A migration of 12 s, the harness repeating itself every 3 s: the 5 s cap never runs out.
  for (let i = 0; i < 4; i += 1) {
    advance(3000);
    t.equal(engine.announce('starting', 'm-1'), null, `repeat ${i + 1}: no new trigger`);
  }
  t.equal(engine.open?.migrationId, 'm-1', '12 s in, past the 5 s cap: still open');
  t.same(engine.open!.triggers.map((x) => x.kind), ['harness-announce'], 'one announcement in the episode, not five');
  engine.announce('finished', 'm-1');
  advance(900);
  t.equal(engine.open?.migrationId, 'm-1', 'finished: a settle window for the resume evidence, not closed on the spot');
  advance(200);
  t.equal(closed.length, 1, 'then it settles');
  t.equal(closed[0]!.triggers.filter((x) => x.kind === 'harness-announce').length, 2, 'starting and finished');

  // The same migration not repeated: closed at the cap, as before (the harness is gone, or a frame was lost for good).
  const silent = new EpisodeEngine((e) => closed.push(e), options, clock);
  silent.announce('starting', 'm-2');
  advance(4900);
  t.equal(silent.open?.migrationId, 'm-2');
  advance(200);
  t.equal(silent.open, null, 'closed at the cap without a repeat');
  // A repeat for another migration than the open one is no repeat: it starts its own episode.
  const other = new EpisodeEngine((e) => closed.push(e), options, clock);
  other.announce('starting', 'm-3');
  t.ok(other.announce('starting', 'm-4'), 'another migration: a trigger of its own');
  t.equal(other.open?.migrationId, 'm-4');
});
