// End to end on a real Xen, nothing mocked: `flinch lab --hypervisor xen` boots Debian's Xen 4.17 with a PV dom0
// nested under QEMU TCG, creates a domU with the real xen-netfront and the single-file agent, and moves it with the real
// xl (save/restore, migrate to localhost). Every cycle must be flagged from inside the guest with the evidence netfront
// and Xen really leave, and the xenstore probe must read the domid and watch the vif state of a real xenstored
// (this replaces the in-process fake xenstored of test/probes/xen as the proof).
import t, { type Test } from 'tap';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Report } from '../../agent/report/report-schema.js';
import type { LabResults, MigrationResult } from '../../harness/report/lab-results.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';


function reportsOf(out: string): Report[] {
  return readFileSync(path.join(out, 'reports.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Report);
}

/** What every save/restore and migrate cycle of a netfront guest must show from inside (lab notes, shared/lab-notes/xen). */
function assertCycleFlagged(t: Test, m: MigrationResult, report: Report | undefined) {
  t.equal(m.error, undefined, `${m.method} completed`);
  t.equal(m.verdictSource, 'agent', "the verdict is the agent's own");
  t.ok(report, 'its full report is in reports.jsonl');
  if (!report) return;
  const triggers = report.episode.triggers;
  const kinds = new Set(triggers.map((x) => x.kind));
  for (const kind of ['xen-domid', 'kmsg-suspend', 'boottime-jump', 'carrier-counter', 'notify-peers']) t.ok(kinds.has(kind as never), `flagged by ${kind} (triggers: ${[...kinds].join(', ')})`);

  // netfront never sends carrier=0 over netlink on a resume: the counters are the trace, +2 per cycle.
  const counter = triggers.find((x) => x.kind === 'carrier-counter');
  const [, before, after] = /carrier_changes (\d+) → (\d+)/.exec(counter?.detail ?? '') ?? [];
  t.equal(Number(after) - Number(before), 2, `carrier_changes +2 (${counter?.detail})`);
  const resumeEvents = m.linkEvents.filter((e) => e.ifname === 'eth0' && (e.event === 'notify-peers' || e.event === 'igmp-resend'));
  t.ok(resumeEvents.length >= 2 && resumeEvents.every((e) => e.carrier === 1), 'NOTIFY_PEERS and IGMP_RESEND, carrier 1 in the messages');

  // Monotonic stops across the suspend while boottime runs on; realtime follows the host (a suspend, not a step).
  const jump = triggers.find((x) => x.kind === 'boottime-jump');
  const jumpMs = Number(/boottime ran (\d+) ms ahead/.exec(jump?.detail ?? '')?.[1] ?? 0);
  t.ok(jumpMs >= 500, `${jump?.detail} (a suspend of at least 500 ms)`);
  t.notOk(kinds.has('clock-step'), 'realtime did not step against boottime');
  const kmsg = report.evidence.filter((e) => e.kind.startsWith('kmsg-')).map((e) => e.detail);
  t.ok(kmsg.some((line) => /Freezing user space processes/.test(line)) && kmsg.some((line) => /Restarting tasks/.test(line)), 'kmsg: the suspend and the resume');

  // The xenstore probe, against the real xenstored: the domid the guest reads is the one xl gave the domain.
  const domid = m.xenEvents?.find((e) => e.change === 'domid');
  t.equal(`domid ${domid?.previous}`, m.from, `domid before: ${m.from}`);
  t.equal(`domid ${domid?.value}`, m.to, `domid after: ${m.to}`);
}

t.test('PV domU: the whole Xen lab (save/restore and migrate, plain, with a vif replug, with a firewall flush)', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-xen-pv-'));
  const run = await runCli([FLINCH, 'lab', '--hypervisor', 'xen', '--guest', 'pv', '--out', out], { timeoutMs: 1_500_000 });
  t.equal(run.code, 0, `flinch lab --hypervisor xen exits 0; stderr: ${run.stderr.slice(-800)}`);
  t.match(run.stdout, /xl save-restore\s+none/, 'prints the table');
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.equal(results.hypervisor.driver, 'xl');
  t.match(results.hypervisor.xen, /^4\.17\./);
  t.equal(results.guest.type, 'pv');
  t.same(results.migrations.map((m) => `${m.method} ${m.faults.join('+') || 'none'}`), [
    'save-restore none', 'save-restore nic-replug', 'save-restore guest-firewall-flush',
    'migrate none', 'migrate nic-replug', 'migrate guest-firewall-flush',
  ]);
  const reports = reportsOf(out);
  for (const m of results.migrations) {
    t.test(`#${m.index} xl ${m.method} ${m.faults.join('+') || 'none'} (${m.from} → ${m.to})`, async (t) => {
      const report = reports.find((r) => r.episode.id === m.episode?.id);
      assertCycleFlagged(t, m, report);
      if (m.faults.length === 0) {
        t.equal(m.verdict, 'noticed', 'suspended and announced, nothing lost: noticed');
      } else if (m.faults.includes('nic-replug')) {
        t.ok(m.episode?.disrupted.includes('interface-removed'), 'xl network-detach removed eth0');
        const vif = (m.xenEvents ?? []).filter((e) => e.change === 'vif-state').map((e) => e.value);
        t.ok(vif.includes('6') && vif.at(-1) === '4', `the vif's xenstore state went Closed and back to Connected (${vif.join(' → ')})`);
        t.equal(m.verdict, 'healed', 'the address and routes were put back on the new interface');
      } else {
        t.ok(m.episode?.disrupted.includes('firewall-flushed'), 'the flush inside the domU was seen');
        t.equal(m.verdict, 'healed', 'and the ruleset restored');
      }
    });
  }
  t.ok(results.channel!.reportsStored >= results.migrations.length, `every report reached the collector's store (${results.channel!.reportsStored})`);
  t.ok(existsSync(path.join(out, 'logs', 'dom0', 'xen', 'console', 'guest-flinch-domu.log')), "the domU's console, kept by xenconsoled, is copied out");
  t.match(readFileSync(path.join(out, 'logs', 'xen-host.serial.log'), 'utf8'), /Xen version 4\.17/, "Xen's own console is kept");
});

t.test('PVH domU: save/restore and migrate', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-xen-pvh-'));
  const run = await runCli([FLINCH, 'lab', '--hypervisor', 'xen', '--guest', 'pvh', '--faults', 'none', '--out', out], { timeoutMs: 1_200_000 });
  t.equal(run.code, 0, `exits 0; stderr: ${run.stderr.slice(-800)}`);
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.equal(results.guest.type, 'pvh');
  t.same(results.migrations.map((m) => m.method), ['save-restore', 'migrate']);
  const reports = reportsOf(out);
  for (const m of results.migrations) {
    t.test(`xl ${m.method} (${m.from} → ${m.to})`, async (t) => {
      assertCycleFlagged(t, m, reports.find((r) => r.episode.id === m.episode?.id));
      t.equal(m.verdict, 'noticed');
    });
  }
});
