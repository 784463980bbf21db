// /dev/kmsg is not namespaced: these tests write a few uniquely marked lines to this machine's kernel log and look for
// them. Each write opens the device anew, so the kernel's per-writer rate limit does not drop them.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import type { ObservationOf, Observation } from '../../../contract/observation.js';
import { acceptSequence } from '../../../probes/kmsg/kmsg-probe.js';
import { parseKmsgRecord, tagKmsgMessage } from '../../../probes/kmsg/parse-kmsg.js';
import { startAgent } from '../../helpers/agent-process.js';

t.test('records are parsed with priority, facility, sequence and time; escapes decoded', async (t) => {
  const r = parseKmsgRecord('6,1234,15139997,-;Freezing user space processes\\x0a done\n SUBSYSTEM=xen\n')!;
  t.same(
    { ...r },
    { priority: 6, facility: 0, seq: 1234, kernelTimeMs: 15139.997, message: 'Freezing user space processes\n done', raw: '6,1234,15139997,-;Freezing user space processes\\x0a done\n SUBSYSTEM=xen' },
  );
  t.equal(parseKmsgRecord('12,7,100,-;user line')!.facility, 1);
  t.equal(parseKmsgRecord('garbage'), null);
  t.equal(parseKmsgRecord('x,y,z;no numbers'), null);
});

t.test('what is recognised', async (t) => {
  t.same(tagKmsgMessage('Freezing user space processes ... (elapsed 0.001 seconds) done.'), ['suspend-resume']);
  t.same(tagKmsgMessage('Restarting tasks ... done.'), ['suspend-resume']);
  t.same(tagKmsgMessage('xen:manage: suspending xenstore...'), ['suspend-resume', 'xen-manage']);
  t.same(tagKmsgMessage('netfront_resume: vif vif-0: device/vif/0'), ['netfront']);
  t.same(tagKmsgMessage('xen_netfront: backend supports XDP headroom'), ['netfront']);
  t.same(tagKmsgMessage('PM: suspend entry (deep)'), ['pm']);
  t.same(tagKmsgMessage('e1000: eth0 NIC Link is Up'), []);
});

t.test('an overrun is counted from the sequence gap; records already seen are skipped', async (t) => {
  t.same(acceptSequence(null, 500), { lostBefore: 0 });
  t.same(acceptSequence(500, 501), { lostBefore: 0 });
  t.same(acceptSequence(500, 530), { lostBefore: 29 });
  t.equal(acceptSequence(500, 500), null);
  t.equal(acceptSequence(500, 12), null);
});

t.test('lines written to /dev/kmsg reach the agent as tagged observations', async (t) => {
  const marker = `flinch-test-${process.pid}-${Date.now()}`;
  writeFileSync('/dev/kmsg', `${marker}: seen before the agent started\n`);
  const agent = startAgent(t, ['watch', '--json', '--probes', 'kmsg']);
  await agent.waitFor((o) => o.kind === 'probe-status' && o.probe === 'kmsg' && o.status === 'running', 0, 10_000);
  writeFileSync('/dev/kmsg', `${marker}: Freezing user space processes\n`);
  writeFileSync('/dev/kmsg', `${marker}: xen:manage: suspending xenstore...\n`);
  const isOurs = (text: string) => (o: Observation) => o.kind === 'kmsg' && o.message.includes(marker) && o.message.includes(text);
  const freezing = (await agent.waitFor(isOurs('Freezing'))) as ObservationOf<'kmsg'>;
  t.same(freezing.tags, ['suspend-resume']);
  t.equal(freezing.replay, false);
  t.match(freezing.raw, new RegExp(`^\\d+,\\d+,\\d+,[^;]*;${marker}: Freezing user space processes`), 'the raw record is kept');
  const manage = (await agent.waitFor(isOurs('xen:manage'))) as ObservationOf<'kmsg'>;
  t.same(manage.tags, ['suspend-resume', 'xen-manage']);
  t.ok(manage.seq > freezing.seq);
  t.notOk(agent.observations.some(isOurs('before the agent started')), 'history is not reported as new unless asked');
});

t.test('a real ring-buffer overrun (EPIPE) is survived and the loss counted', async (t) => {
  // Overrunning the kernel's log buffer takes more than its size in records while the agent is not reading: the
  // agent is stopped with SIGSTOP, ~1.5 MiB is written (each write opens the device anew, past the rate limit), and
  // the agent is resumed. This fills this machine's kernel log with test lines, which is the point.
  const marker = `flinch-overrun-${process.pid}-${Date.now()}`;
  const agent = startAgent(t, ['watch', '--json', '--probes', 'kmsg']);
  await agent.waitFor((o) => o.kind === 'probe-status' && o.probe === 'kmsg' && o.status === 'running', 0, 10_000);
  agent.child.kill('SIGSTOP');
  const filler = 'x'.repeat(180);
  for (let i = 0; i < 8000; i += 1) writeFileSync('/dev/kmsg', `${marker} ${i} ${filler}\n`);
  writeFileSync('/dev/kmsg', `${marker} last\n`);
  agent.child.kill('SIGCONT');
  const last = (await agent.waitFor((o) => o.kind === 'kmsg' && o.message === `${marker} last`, 0, 20_000)) as ObservationOf<'kmsg'>;
  const ours = agent.observations.filter((o): o is ObservationOf<'kmsg'> => o.kind === 'kmsg' && o.message.startsWith(marker));
  const lost = ours.reduce((sum, o) => sum + o.lostBefore, 0);
  t.ok(lost > 0, `the overrun was noticed: ${lost} records lost, ${ours.length} read`);
  t.ok(ours.length < 8001, 'not every record could be read');
  t.ok(last.seq > ours[0]!.seq, 'and reading went on to the newest record');
  t.equal(agent.child.exitCode, null, 'the agent is still running');
});
