// The rollout's rules on a real store (SQLite, in memory) with stand-in guests: each "migration" is a function that
// stores the report the guest's agent would have sent, so that what halts a rollout is known exactly. The real thing,
// 50 simulated guests with real agents and a real collector, is test/e2e/rollout-sim.test.ts.
import t from 'tap';
import { ReportStore } from '../../../harness/collector/report-store.js';
import { haltReason, runRollout, type GuestOutcome, type RolloutGuest } from '../../../harness/rollout/rollout-runner.js';
import { hostNowMs } from '../../../harness/host-clock.js';
import type { Report } from '../../../contract/report-schema.js';
import { sampleReport, tempDir } from '../../helpers/collector-fixtures.js';

const outcome = (verdict: string, i: number): GuestOutcome => ({ index: i, guest: `g${i}`, agentId: `g${i}`, startedAtMs: i, completedAtMs: i, verdict: verdict as GuestOutcome['verdict'], evidence: [] });

t.test('the halt: the share over the latest window, strictly above the limit', async (t) => {
  const settings = { haltAt: 0.2, window: 5 };
  t.equal(haltReason([], settings), null, 'nothing migrated, nothing to halt on');
  t.equal(haltReason(['noticed', 'disrupted', 'transparent', 'healed', 'noticed'].map(outcome), settings), null, 'one in five is 20 %: not above');
  const halted = haltReason(['noticed', 'disrupted', 'transparent', 'silent', 'noticed'].map(outcome), settings)!;
  t.equal(halted.share, 0.4);
  t.same(halted.worst.map((o) => o.verdict), ['disrupted', 'silent'], 'silent counts: a crashed guest says nothing');
  t.equal(haltReason(['failed', 'disrupted', 'noticed', 'noticed', 'noticed', 'noticed', 'noticed'].map(outcome), settings), null, 'older than the window: forgotten');
  t.ok(haltReason(['failed'].map(outcome), settings), 'a failed migration counts, and a first bad guest halts a cautious rollout');
});

function standIns(store: ReportStore, verdicts: Array<Report['verdict'] | 'quiet' | 'nothing' | 'throws'>, migrated: string[]): RolloutGuest[] {
  return verdicts.map((verdict, i) => {
    const agentId = `guest-${i + 1}`;
    store.registerAgent({ agentId, machineId: '', hostname: agentId, macs: [], xenDomid: null, agentVersion: '0.1.0' }, 's', 0, 0);
    let seq = 0;
    return {
      name: `dom-${i + 1}`,
      agentId,
      async migrate() {
        migrated.push(`dom-${i + 1}`);
        const startedAtMs = hostNowMs();
        if (verdict === 'throws') throw new Error('virsh: migration refused');
        if (verdict !== 'nothing' && verdict !== 'quiet') {
          const report = sampleReport(agentId, (seq += 1), verdict);
          report.evidence = [{ severity: verdict === 'disrupted' ? 'disrupted' : 'noticed', kind: 'firewall-changed', detail: 'nftables: 4 removed', at: report.episode.openedAt }];
          store.apply([{ agentId, seq, receivedAtMs: hostNowMs(), report, body: JSON.stringify(report) }]);
        } else if (verdict === 'quiet') {
          // Heard from after the migration, with nothing to report: a transparent one.
          store.heard([{ agentId, heardMs: hostNowMs() + 10 }]);
        }
        return { startedAtMs, completedAtMs: hostNowMs(), totalMs: 1, downtimeMs: 1, setupMs: null, transferredBytes: null };
      },
    };
  });
}

t.test('waves, verdicts from the store, a halt that leaves the rest untouched, and a resume', async (t) => {
  const store = new ReportStore(':memory:');
  t.teardown(() => store.close());
  const out = tempDir('flinch-rollout-');
  const migrated: string[] = [];
  const plan: Array<Report['verdict'] | 'quiet' | 'nothing' | 'throws'> = ['noticed', 'quiet', 'transparent', 'nothing', 'disrupted', 'disrupted', 'noticed', 'noticed'];
  const guests = standIns(store, plan, migrated);
  const lines: string[] = [];
  const settings = { parallel: 2, haltAt: 0.25, window: 4, verdictTimeoutMs: 600, verdictGraceMs: 0 };
  const first = await runRollout(guests, settings, store, out, (l) => lines.push(l));
  t.same(migrated, ['dom-1', 'dom-2', 'dom-3', 'dom-4', 'dom-5', 'dom-6'], 'three waves of two, then it stopped');
  t.same(first.migrated.map((o) => o.verdict), ['noticed', 'transparent', 'transparent', 'silent', 'disrupted', 'disrupted']);
  t.match(first.migrated[1]!.evidence[0], /the agent was heard from after the migration/, 'a quiet agent heard from is transparent');
  t.match(first.migrated[3]!.evidence[0], /no report within 0\.6 s, and the agent not heard from since the migration/, 'one never heard from again is silent');
  t.equal(first.halted!.share, 0.75, 'silent, disrupted, disrupted of the last four');
  t.same(first.halted!.worst.map((o) => o.guest), ['dom-4', 'dom-5', 'dom-6']);
  t.match(first.halted!.worst[1]!.evidence, ['firewall-changed: nftables: 4 removed'], 'with the evidence that stopped it');
  t.same(first.untouched, ['dom-7', 'dom-8'], 'the rest untouched');

  const again = await runRollout(guests, settings, store, out, (l) => lines.push(l));
  t.equal(migrated.length, 6, 'resumed unchanged: it halts again before moving anyone');
  t.ok(again.halted);
  t.ok(lines.some((l) => /resuming: 6 guest\(s\) already in/.test(l)));

  const onward = await runRollout(guests, { ...settings, haltAt: 0.9 }, store, out, () => undefined);
  t.same(migrated.slice(6), ['dom-7', 'dom-8'], 'with a higher limit, it goes on from where it stopped');
  t.equal(onward.halted, null);
  t.equal(onward.migrated.length, 8);
  t.same(onward.untouched, []);

  const other = standIns(new ReportStore(':memory:'), ['noticed'], []);
  await t.rejects(runRollout(other, settings, store, out, () => undefined), /belongs to a different rollout \(other guests\)/, 'another guest list is not mixed into the journal');
});

t.test('a migration that fails is a failed guest, with its error', async (t) => {
  const store = new ReportStore(':memory:');
  t.teardown(() => store.close());
  const outcome = await runRollout(standIns(store, ['throws', 'noticed'], []), { parallel: 1, haltAt: 0.5, window: 10, verdictTimeoutMs: 200, verdictGraceMs: 0 }, store, tempDir('flinch-rollout-'), () => undefined);
  t.same(outcome.migrated.map((o) => [o.guest, o.verdict]), [['dom-1', 'failed']]);
  t.match(outcome.migrated[0]!.evidence, ['the migration failed: virsh: migration refused']);
  t.same(outcome.untouched, ['dom-2']);
});

t.test('one migration, two episodes: the later, worse one is gathered within the grace, and both evidences kept', async (t) => {
  const store = new ReportStore(':memory:');
  t.teardown(() => store.close());
  const agentId = 'two-episodes';
  store.registerAgent({ agentId, machineId: '', hostname: agentId, macs: [], xenDomid: null, agentVersion: '0.1.0' }, 's', 0, 0);
  const episode = (seq: number, verdict: Report['verdict'], kind: string) => {
    const report = sampleReport(agentId, seq, verdict);
    report.evidence = [{ severity: verdict === 'disrupted' ? 'disrupted' : 'noticed', kind, detail: `episode ${seq}`, at: report.episode.openedAt }];
    store.apply([{ agentId, seq, receivedAtMs: hostNowMs(), report, body: JSON.stringify(report) }]);
  };
  const guest: RolloutGuest = {
    name: 'dom', agentId,
    async migrate() {
      const startedAtMs = hostNowMs();
      episode(1, 'noticed', 'clock-lag');
      setTimeout(() => episode(2, 'disrupted', 'connection-reset'), 600);
      return { startedAtMs, completedAtMs: hostNowMs(), totalMs: 1, downtimeMs: 1, setupMs: null, transferredBytes: null };
    },
  };
  const settings = { parallel: 1, haltAt: 1, window: 10, verdictTimeoutMs: 5000 };
  const gathered = await runRollout([guest], { ...settings, verdictGraceMs: 2000 }, store, tempDir('flinch-rollout-'), () => undefined);
  t.equal(gathered.migrated[0]!.verdict, 'disrupted', 'the worst of the two');
  t.same(gathered.migrated[0]!.evidence, ['connection-reset: episode 2', 'clock-lag: episode 1'], "both episodes' evidence, the worst's first");
});
