// What every save/restore and migrate cycle of a netfront guest must show from inside (lab notes,
// shared/lab-notes/xen), shared by the PV and PVH runs of the nested Xen lab.
import type { Test } from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Report } from '../../contract/report-schema.js';
import type { MigrationResult } from '../../harness/report/lab-results.js';

export function reportsOf(out: string): Report[] {
  return readFileSync(path.join(out, 'reports.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Report);
}

/** Asserts the cycle was flagged from inside with all the evidence netfront and Xen leave. */
export function assertCycleFlagged(t: Test, m: MigrationResult, report: Report | undefined) {
  t.equal(m.error, undefined, `${m.method} completed`);
  t.equal(m.verdictSource, 'agent', "the verdict is the agent's own");
  t.ok(report, 'its full report is in reports.jsonl');
  if (!report) return;
  const triggers = report.episode.triggers;
  const kinds = new Set(triggers.map((x) => x.kind));
  // "domid 3", or with two hosts "a: Xen 4.17.5, domid 3". A domain that lands on another host can keep its domid
  // there (each host counts its own: the first domU of a fresh host is 1 on both), so a domid change is not required.
  const domidIn = (where: string) => /domid (\d+)$/.exec(where)?.[1];
  const domidChanged = domidIn(m.from) !== domidIn(m.to);
  for (const kind of [...(domidChanged ? ['xen-domid'] : []), 'kmsg-suspend', 'boottime-jump', 'carrier-counter', 'notify-peers']) t.ok(kinds.has(kind as never), `flagged by ${kind} (triggers: ${[...kinds].join(', ')})`);

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
  if (!domidChanged) {
    t.notOk(domid ?? kinds.has('xen-domid'), `the same domid on both sides (${m.from} → ${m.to}): no change read, none made up`);
    return;
  }
  t.ok(m.from.endsWith(`domid ${domid?.previous}`), `domid before: ${m.from} (the guest read ${domid?.previous})`);
  t.ok(m.to.endsWith(`domid ${domid?.value}`), `domid after: ${m.to} (the guest read ${domid?.value})`);
}
