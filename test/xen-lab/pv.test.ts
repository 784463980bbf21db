// End to end on a real Xen, nothing mocked: `flinch lab --hypervisor xen` boots Debian's Xen 4.17 with a PV dom0
// nested under QEMU TCG, creates a domU with the real xen-netfront and the single-file agent, and moves it with the real
// xl (save/restore, migrate to localhost). Every cycle must be flagged from inside the guest with the evidence netfront
// and Xen really leave, and the xenstore probe must read the domid and watch the vif state of a real xenstored
// (this replaces the in-process fake xenstored of test/probes/xen as the proof).
// Not part of `npm test`: `npm run test:xen` runs it (README, "Nested Xen lab").
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LabResults } from '../../harness/report/lab-results.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { assertCycleFlagged, reportsOf } from './cycle-evidence.js';

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
      // From the guest's suspend, as xenstored fired @releaseDomain in dom0, to xl's return (an upper bound).
      t.ok(typeof m.pauseMs === 'number' && m.pauseMs > 0 && m.pauseMs < m.totalMs!, `the pause: ${m.pauseMs} ms of xl's ${m.totalMs} ms`);
      if (m.faults.length === 0) {
        t.equal(m.verdict, 'noticed', 'suspended and announced, nothing lost: noticed');
      } else if (m.faults.includes('nic-replug')) {
        t.ok(m.episode?.disrupted.includes('interface-removed'), 'xl network-detach removed eth0');
        const vif = (m.xenEvents ?? []).filter((e) => e.change === 'vif-state').map((e) => e.value);
        // The probe reads a node when its watch fires, so a quick detach can be seen as Closed (6) or, once the
        // backend has already removed the node, as gone (null); either way the vif went, and came back Connected.
        t.ok((vif.includes('6') || vif.includes(null)) && vif.at(-1) === '4', `the vif's xenstore state went Closed or away, and back to Connected (${vif.map(String).join(' → ')})`);
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
