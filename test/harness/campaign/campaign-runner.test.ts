// The one campaign runner against a target: its life cycle (bring-up once, tear-down once whatever happened), its
// outcome (returned, never printed, no exit status set), and its journal (a complete campaign boots nothing). The
// driver here is a stand-in that moves nothing: the real drivers are run by the e2e tests (qmp, libvirt, sim) and
// test:xen; this test is of the runner alone. The agent is the real CollectorClient over the real campaign collector.
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t, { type Test } from 'tap';
import { agentKeyFor } from '../../../contract/frame-signing.js';
import { DEFAULT_CAMPAIGN_OPTIONS, type CampaignOptions } from '../../../harness/campaign/campaign-options.js';
import { completedCampaign, GUEST_SILENT_MS, guestSilentForMs, runCampaign, waitForAgentHello, waitForReport } from '../../../harness/campaign/campaign-runner.js';
import type { GuestTarget } from '../../../harness/campaign/campaign-target.js';
import type { MigrationDriver } from '../../../harness/drivers/migration-driver.js';
import { hostNowMs } from '../../../harness/host-clock.js';
import { inProcessAgent, sampleReport } from '../../helpers/collector-fixtures.js';

const AGENT_ID = 'runner-guest';

function standInDriver(migrations: number[]): MigrationDriver {
  return {
    name: 'stand-in',
    faults: [],
    prepare: async () => undefined,
    migrate: async () => {
      const startedAtMs = hostNowMs();
      migrations.push(startedAtMs);
      return { startedAtMs, completedAtMs: hostNowMs(), totalMs: 1, downtimeMs: null, setupMs: null, transferredBytes: null };
    },
    injectFault: async () => null,
    cleanup: async () => undefined,
  };
}

function options(outDir: string): CampaignOptions {
  return { ...DEFAULT_CAMPAIGN_OPTIONS, outDir, faultMatrix: [[]], migrationsPerFault: 2, expect: 'transparent', failOnUnexpected: true, settleMs: 600, blackoutIntervalMs: 0, bootTimeoutMs: 10_000 };
}

function target(t: Test, calls: string[], migrations: number[], failBringUp = false): GuestTarget {
  return {
    driverName: 'stand-in',
    collectorHost: '127.0.0.1',
    collectorPort: 0,
    async bringUp({ collector, fleetSecret, collectorPort }) {
      calls.push('bringUp');
      if (failBringUp) throw new Error('the guest did not boot');
      // Answers each announced migration with a report of it, as a guest agent does once its episode closes.
      let seq = 0;
      const { client } = inProcessAgent(t, `ws://127.0.0.1:${collectorPort}`, AGENT_ID, agentKeyFor(fleetSecret, AGENT_ID), undefined, 10_000, {
        onAnnounce: (phase, migrationId) => {
          if (phase !== 'finished') return;
          const report = sampleReport(AGENT_ID, (seq += 1), seq === 1 ? 'transparent' : 'noticed');
          report.episode.migrationId = migrationId;
          client.sendReport(report);
        },
      });
      const agent = await waitForAgentHello(collector, AGENT_ID, 10_000);
      return {
        driver: standInDriver(migrations), agent, meter: null, where: () => 'here', bootToAgentMs: 1,
        hypervisor: { driver: 'stand-in', qemu: null, destQemu: null }, guest: { kernel: 'none', memoryMiB: 0, bootToAgentMs: 1 },
      };
    },
    async tearDown() {
      calls.push('tearDown');
    },
  };
}

t.test('a campaign runs its migrations, writes its outputs and returns the outcome; a complete one boots nothing', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-runner-'));
  const calls: string[] = [];
  const migrations: number[] = [];
  const exitCodeBefore = process.exitCode;
  const outcome = await runCampaign(options(out), target(t, calls, migrations), hostNowMs(), () => undefined);
  t.same(calls, ['bringUp', 'tearDown']);
  t.equal(migrations.length, 2, 'the plan: one row, two migrations');
  t.equal(outcome.results.migrations.length, 2);
  t.equal(outcome.alreadyComplete, false);
  t.same(outcome.results.migrations.map((m) => [m.verdictSource, m.verdict, m.passed]), [['agent', 'transparent', true], ['agent', 'noticed', false]], "judged by the agent's reports");
  t.equal(outcome.worseThanExpected, 1, 'noticed is worse than the transparent expected');
  t.same(Object.keys(outcome.written).sort(), ['html', 'json', 'junit', 'tap', 'traces']);
  t.same(JSON.parse(readFileSync(outcome.written.json!, 'utf8')).migrations.map((m: { driver: string }) => m.driver), ['stand-in', 'stand-in']);
  t.equal(process.exitCode, exitCodeBefore, 'the runner leaves the exit status to the command line');

  const again = completedCampaign(options(out), 'stand-in');
  t.ok(again?.alreadyComplete, 'the journal holds both: nothing to run');
  t.same(again!.results.migrations.map((m) => m.index), outcome.results.migrations.map((m) => m.index));
  t.throws(() => completedCampaign({ ...options(out), migrationsPerFault: 3 }, 'stand-in'), /belongs to a different campaign/, 'another plan is another campaign');
});

t.test("an agent that comes back as another process during a migration: disrupted, whatever the new one reports", async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-runner-'));
  const migrations: number[] = [];
  const reportEach = (client: { sendReport: (r: ReturnType<typeof sampleReport>) => void }, seq: () => number) => (phase: string, migrationId: string) => {
    if (phase !== 'finished') return;
    const report = sampleReport(AGENT_ID, seq(), 'transparent');
    report.episode.migrationId = migrationId;
    client.sendReport(report);
  };
  let seq = 0;
  const restartingTarget: GuestTarget = {
    ...target(t, [], migrations),
    async bringUp({ collector, fleetSecret, collectorPort }) {
      const key = agentKeyFor(fleetSecret, AGENT_ID);
      const url = `ws://127.0.0.1:${collectorPort}`;
      const first = inProcessAgent(t, url, AGENT_ID, key, undefined, 10_000, { instance: 'aaaaaaaaaaaaaaaa', onAnnounce: (p, m) => reportEach(first.client, () => (seq += 1))(p, m) });
      const agent = await waitForAgentHello(collector, AGENT_ID, 10_000);
      const driver = standInDriver(migrations);
      const migrate = driver.migrate.bind(driver);
      // The second migration: the agent process dies in it and another one starts, with the same identity and spool.
      driver.migrate = async (o) => {
        const timing = await migrate(o);
        if (migrations.length === 2) {
          first.client.close();
          const second = inProcessAgent(t, url, AGENT_ID, key, undefined, 10_000, { instance: 'bbbbbbbbbbbbbbbb', onAnnounce: (p, m) => reportEach(second.client, () => (seq += 1))(p, m) });
          const deadline = Date.now() + 10_000;
          while (agent.hello.instance !== 'bbbbbbbbbbbbbbbb' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        }
        return timing;
      };
      return {
        driver, agent, meter: null, where: () => 'here', bootToAgentMs: 1,
        hypervisor: { driver: 'stand-in', qemu: null, destQemu: null }, guest: { kernel: 'none', memoryMiB: 0, bootToAgentMs: 1 },
      };
    },
  };
  const outcome = await runCampaign(options(out), restartingTarget, hostNowMs(), () => undefined);
  const [kept, restarted] = outcome.results.migrations;
  t.equal(kept!.verdict, 'transparent', 'the same process before and after: its own verdict');
  t.equal(restarted!.verdict, 'disrupted', 'another process after the migration: disrupted, though it reported transparent');
  t.match(restarted!.reasons[0], /^disrupted: the agent restarted during the migration/, restarted!.reasons[0] ?? 'no reason');
});

t.test('a target that fails to come up is still torn down, and the error is the campaign\'s', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-runner-'));
  const calls: string[] = [];
  await t.rejects(runCampaign(options(out), target(t, calls, [], true), hostNowMs(), () => undefined), /the guest did not boot/);
  t.same(calls, ['bringUp', 'tearDown']);
});

t.test("a migration's report: the episode the agent named after it, or else the unnamed one that opened during it", async (t) => {
  // An agent enrolled without --accept-announce names no episode after the harness's announcements (a user's own).
  const report = (migrationId: string | null, openedAtGuestMs: number) => {
    const r = sampleReport(AGENT_ID, 1);
    r.episode = { ...r.episode, migrationId, openedAt: { realtimeMs: openedAtGuestMs, monotonicMs: 1 } };
    return { receivedAtMs: 0, seq: 1, report: r };
  };
  // The guest's clock ran 250 ms ahead of the host's before this migration, which ran from host time 10 000 to 14 000.
  const window = { fromMs: 10_000, toMs: 14_000, guestOffsetMs: 250 };
  const earlier = report(null, 7_000);
  const opened = report(null, 12_100);
  t.equal(await waitForReport({ reports: [earlier, opened] }, 'm-2', 0, window), opened.report, "the unnamed episode that opened within the migration's window");
  t.equal(await waitForReport({ reports: [earlier] }, 'm-2', 0, window), null, "an earlier migration's, sent late on reconnecting, is not it");
  const named = report('m-2', 30_000);
  t.equal(await waitForReport({ reports: [opened, named] }, 'm-2', 0, window), named.report, 'one named after the migration wins');
  t.equal(await waitForReport({ reports: [report('m-1', 12_000)] }, 'm-2', 0, window), null, "one named after another migration is that one's");
  t.equal(await waitForReport({ reports: [opened] }, 'm-2', 0, { ...window, guestOffsetMs: null }), null, 'without the offset from before, an unnamed one cannot be placed');
});

t.test('a guest that has gone quiet since the migration is silent, however much it said before it did', async (t) => {
  const heard = (observationsAt: number[], exchangesAt: number[], reportsAt: number[] = []) => ({
    observations: observationsAt.map((receivedAtMs) => ({ receivedAtMs })),
    reports: reportsAt.map((receivedAtMs) => ({ receivedAtMs })),
    offsets: { samples: exchangesAt.map((hostAtMs) => ({ hostAtMs })) },
  }) as unknown as Parameters<typeof guestSilentForMs>[0];
  const completedAt = 100_000;
  t.equal(guestSilentForMs(heard([], []), completedAt, completedAt + GUEST_SILENT_MS + 1), GUEST_SILENT_MS + 1, 'nothing after the migration: silent from its completion');
  t.equal(guestSilentForMs(heard([], []), completedAt, completedAt + GUEST_SILENT_MS), null, 'not before the bound');
  // Linux 6.12 on QEMU 7.2's TCG: observations for 39 s on the destination, then a double fault.
  t.equal(guestSilentForMs(heard([completedAt + 39_000], [completedAt + 38_000]), completedAt, completedAt + 70_000), 31_000, 'heard for a while, then nothing');
  t.equal(guestSilentForMs(heard([], [completedAt + 60_000]), completedAt, completedAt + 70_000), null, 'a time exchange 10 s ago: alive');
  t.equal(guestSilentForMs(heard([], [], [completedAt + 65_000]), completedAt, completedAt + 70_000), null, 'a report is a sign of life too');
  t.equal(guestSilentForMs(heard([completedAt - 5_000], [completedAt - 1]), completedAt, completedAt + 20_000), 20_000, 'what it said before the migration does not count');
});
