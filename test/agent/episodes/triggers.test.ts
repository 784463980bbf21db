// TriggerDetector alone: which observations open an episode, and which of those are migration evidence.
import t from 'tap';
import { isLocalMigrationEvidence, isMigrationEvidence, TriggerDetector } from '../../../agent/episodes/triggers.js';
import type { Observation, ObservationOf } from '../../../contract/observation.js';
import { SAMPLE_OBSERVATIONS } from '../../helpers/observation-samples.js';
import { OwnClockStep } from '../../../agent/episodes/own-clock-step.js';

const at = (monotonicMs: number) => ({ realtimeMs: 1_764_590_000_000 + monotonicMs, monotonicMs });
function clock(monotonicMs: number, realtimeMinusMonotonicMs: number, boottimeMinusMonotonicMs = 0): ObservationOf<'clock'> {
  return { kind: 'clock', realtimeMs: 0, monotonicMs, boottimeMs: monotonicMs + boottimeMinusMonotonicMs, realtimeMinusMonotonicMs, boottimeMinusMonotonicMs, readSpreadMs: 0, at: at(monotonicMs) };
}
function link(action: 'new' | 'del', ifindex: number, carrierChanges: number, event: ObservationOf<'link'>['event'] = null): ObservationOf<'link'> {
  return { ...SAMPLE_OBSERVATIONS.link, action, event, link: { ...SAMPLE_OBSERVATIONS.link.link, ifindex, carrierChanges }, at: at(ifindex) };
}
const kinds = (detector: TriggerDetector, o: Observation) => detector.detect(o).map((x) => x.kind);

t.test('clocks: a step of realtime alone is a clock step; a suspend (boottime runs on) is a boottime jump', async (t) => {
  const d = new TriggerDetector();
  t.same(kinds(d, clock(1000, 5000)), [], 'the first reading is a baseline');
  t.same(kinds(d, clock(2000, 5000.5)), [], 'half a millisecond is the clocks\' own');
  t.same(kinds(d, clock(3000, 10_000)), ['clock-step']);
  t.same(kinds(d, clock(4000, 10_000 + 40_000, 40_000)), ['boottime-jump'], 'realtime followed boottime across the suspend: no step');
  d.expectOwnClockStep(new OwnClockStep(-2000, 0, 4500, 10_000));
  t.same(kinds(d, clock(5000, 48_000, 40_000)), [], "flinch's own step back is not the guest's");
  t.same(kinds(d, clock(6000, 46_000, 40_000)), ['clock-step'], 'and only the one it expected');
});

t.test('links: carrier counters, the announce events, an interface re-created under its MAC', async (t) => {
  const d = new TriggerDetector();
  t.same(kinds(d, link('new', 2, 2)), []);
  t.same(kinds(d, link('new', 2, 4, 'notify-peers')), ['carrier-counter', 'notify-peers']);
  t.same(kinds(d, link('new', 2, 4, 'igmp-resend')), ['igmp-resend']);
  t.same(kinds(d, link('del', 2, 4)), []);
  t.same(kinds(d, link('new', 7, 0)), ['interface-recreated']);
});

t.test('a pause opens an episode only above the noise floor; kmsg, Xen and canaries as they say', async (t) => {
  const d = new TriggerDetector();
  t.same(kinds(d, { ...SAMPLE_OBSERVATIONS.pause, lateByMs: 150, stealMs: 0, at: at(1000) }), [], 'under the warm-up floor (200 ms): noise');
  t.same(kinds(d, { ...SAMPLE_OBSERVATIONS.pause, lateByMs: 1200, stealMs: 0, at: at(2000) }), ['pause']);
  t.same(kinds(d, SAMPLE_OBSERVATIONS.kmsg), ['kmsg-suspend']);
  t.same(kinds(d, { ...SAMPLE_OBSERVATIONS.kmsg, replay: true }), [], 'a line from before the agent started is history');
  t.same(kinds(d, SAMPLE_OBSERVATIONS.xen), ['xen-domid']);
  t.same(kinds(d, { ...SAMPLE_OBSERVATIONS.firewall, canary: 'missing' }), ['canary-lost']);
  t.same(kinds(d, SAMPLE_OBSERVATIONS['host-offset']), [], "an offset change flinch caused is not the guest's");
});

t.test('what is migration evidence: only what a migration alone produces', async (t) => {
  for (const kind of ['notify-peers', 'igmp-resend', 'xen-domid', 'xen-suspend', 'boottime-jump', 'kmsg-suspend', 'host-offset-step', 'harness-announce'] as const) {
    t.ok(isMigrationEvidence({ kind }), kind);
  }
  for (const kind of ['pause', 'clock-step', 'carrier-counter', 'interface-recreated', 'canary-lost'] as const) t.notOk(isMigrationEvidence({ kind }), kind);
  t.notOk(isLocalMigrationEvidence({ kind: 'harness-announce' }), 'a collector cannot claim what the guest did not see');
  t.ok(isLocalMigrationEvidence({ kind: 'notify-peers' }));
});
