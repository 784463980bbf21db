// The Xen probe against an in-process fake xenstored (test/helpers/fake-xenstored.ts): there is no Xen on this
// machine. The nested Xen lab is where the real xenbus proves it.
import t, { type Test } from 'tap';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Observation, ObservationOf } from '../../../contract/observation.js';
import { XenProbe } from '../../../probes/xen/xen-probe.js';
import { XenstoreClient, XsFramer, encodeXsMessage } from '../../../probes/xen/xenstore-client.js';
import { FakeXenstored } from '../../helpers/fake-xenstored.js';

function fakeSys(hypervisor: string | null): { type: string; devices: string } {
  const root = mkdtempSync(path.join(os.tmpdir(), 'flinch-xen-'));
  const type = path.join(root, 'hypervisor-type');
  if (hypervisor !== null) writeFileSync(type, `${hypervisor}\n`);
  const devices = path.join(root, 'devices');
  mkdirSync(path.join(devices, 'vif-0'), { recursive: true });
  writeFileSync(path.join(devices, 'vif-0', 'devtype'), 'vif\n');
  writeFileSync(path.join(devices, 'vif-0', 'nodename'), 'device/vif/0\n');
  return { type, devices };
}

function guestXenstore(domid: number, replyDelayMs = 0): FakeXenstored {
  const xs = new FakeXenstored(domid, replyDelayMs);
  xs.set('domid', String(domid));
  xs.set('device/vif/0/state', '4');
  xs.set('device/vif/0/backend', `/local/domain/0/backend/vif/${domid}/0`);
  xs.set(`/local/domain/0/backend/vif/${domid}/0/state`, '4');
  return xs;
}

/** The probe started against `xs`, stopped at the end of the test. */
async function startedProbe(t: Test, xs: FakeXenstored) {
  const sys = fakeSys('xen');
  const observations: Observation[] = [];
  const probe = new XenProbe({ sysHypervisorType: sys.type, xenbusDevices: [], sysXenDevices: sys.devices, openXenbus: () => xs.clientStream() });
  await probe.start((o) => observations.push(o));
  t.teardown(() => probe.stop());
  return { xs, observations, probe };
}

const xen = (observations: Observation[]) => observations.filter((o): o is ObservationOf<'xen'> => o.kind === 'xen');

t.test('wire framing: split and glued messages come apart right', async (t) => {
  const a = encodeXsMessage({ type: 2, reqId: 1, txId: 0, payload: Buffer.from('domid\0') });
  const b = encodeXsMessage({ type: 15, reqId: 0, txId: 0, payload: Buffer.from('control/shutdown\0tok\0') });
  const framer = new XsFramer();
  const glued = Buffer.concat([a, b]);
  t.same(framer.push(glued.subarray(0, 10)), []);
  const messages = framer.push(glued.subarray(10));
  t.same(messages.map((m) => [m.type, m.payload.toString()]), [[2, 'domid\0'], [15, 'control/shutdown\0tok\0']]);
  const oversized = Buffer.alloc(16);
  oversized.writeUInt32LE(5000, 12);
  t.throws(() => new XsFramer().push(oversized), /exceeds 4096/);
});

t.test('client: reads, missing nodes, directories, errors', async (t) => {
  const xs = guestXenstore(3);
  const client = new XenstoreClient(xs.clientStream());
  t.equal(await client.read('domid'), '3');
  t.equal(await client.read('no/such/node'), null);
  t.same(await client.directory('device/vif'), ['0']);
  t.same(await client.directory('device/vbd'), []);
});

t.test('off Xen the probe is unavailable and says why', async (t) => {
  const sys = fakeSys('kvm');
  await t.rejects(new XenProbe({ sysHypervisorType: sys.type, xenbusDevices: [], sysXenDevices: sys.devices }).start(() => {}), {
    name: 'ProbeUnavailableError',
    message: 'xen: unavailable: not a Xen guest',
  });
  const none = fakeSys(null);
  await t.rejects(new XenProbe({ sysHypervisorType: none.type, xenbusDevices: [], sysXenDevices: none.devices }).start(() => {}), {
    message: /not a Xen guest/,
  });
});

t.test('domid, the suspend request and vif states are reported; a migration shows as a domid change', async (t) => {
  const { xs, observations, probe } = await startedProbe(t, guestXenstore(3));
  t.match(xen(observations)[0], { change: 'domid', value: '3', previous: null });

  xs.set('control/shutdown', 'suspend');
  xs.set('device/vif/0/state', '5');
  await sleep(50);
  t.match(xen(observations).find((o) => o.change === 'shutdown-request'), { path: 'control/shutdown', value: 'suspend', previous: null });
  t.match(xen(observations).find((o) => o.change === 'vif-state'), { path: 'device/vif/0/state', value: '5', previous: '4' });

  xs.migrate(7);
  await sleep(50);
  t.match(xen(observations).filter((o) => o.change === 'domid').at(-1), { value: '7', previous: '3' });

  const snapshot = await probe.snapshot();
  t.equal(snapshot.domid, '7');
  t.same(snapshot.devices, { 'vif-0': { devtype: 'vif', nodename: 'device/vif/0' } });
  t.ok('/local/domain/0/backend/vif/3/0/state' in snapshot.nodes, 'the backend state node is watched');
});

t.test('a WATCH is never written while a read is unanswered (Linux deadlocks), and reads still overlap', async (t) => {
  // Replies come 5 ms late, so the read each watch's initial event starts overlaps the next watch's registration.
  const { xs: slow, observations } = await startedProbe(t, guestXenstore(3, 5));
  slow.set('device/vif/0/state', '5');
  slow.set('control/shutdown', 'suspend');
  await sleep(200);
  t.ok(slow.requests.filter((r) => r.type === 4).length >= 3, 'the probe registered its watches');
  t.same(slow.watchesThatWouldDeadlock, [], 'no WATCH was written with a request outstanding');
  t.match(xen(observations).find((o) => o.change === 'vif-state'), { value: '5', previous: '4' }, 'and the watches still work');

  const another = guestXenstore(3, 5);
  const client = new XenstoreClient(another.clientStream());
  const [domid, missing, vifs] = await Promise.all([client.read('domid'), client.read('no/such'), client.directory('device/vif')]);
  t.same([domid, missing, vifs], ['3', null, ['0']], 'each of three concurrent reads gets its own answer');
  t.equal(another.maxOutstanding, 3, 'written at once, not one after the other');
  const [, , afterWatch] = await Promise.all([client.read('domid'), client.watch('device/vif/0/state', 'tok'), client.read('domid')]);
  t.equal(afterWatch, '3');
  t.same(another.watchesThatWouldDeadlock, [], 'the WATCH waited for the read before it; the read after it waited for it');
  client.close();
  await t.rejects(client.read('domid'), /connection closed/, 'a closed client fails at once instead of hanging');
});

t.test("after a restore under a new domid the new backend's vif state is watched, and the old backend's no longer", async (t) => {
  const { xs, observations, probe } = await startedProbe(t, guestXenstore(3));
  // What xl restore leaves: the domain under domid 8, its vif's backend under dom0's backend/vif/8/0.
  xs.set('/local/domain/0/backend/vif/8/0/state', '4');
  xs.set('device/vif/0/backend', '/local/domain/0/backend/vif/8/0');
  xs.tree.delete('/local/domain/0/backend/vif/3/0/state');
  xs.migrate(8);
  await sleep(100);
  t.match(xen(observations).filter((o) => o.change === 'domid').at(-1), { value: '8', previous: '3' });
  xs.set('/local/domain/0/backend/vif/8/0/state', '5');
  await sleep(50);
  t.match(xen(observations).find((o) => o.path === '/local/domain/0/backend/vif/8/0/state'), { change: 'vif-state', value: '5', previous: '4' }, "the new backend's state change is seen");
  const snapshot = await probe.snapshot();
  t.notOk('/local/domain/0/backend/vif/3/0/state' in snapshot.nodes, "the old backend's node is forgotten");
  t.notOk(xs.watches.some((w) => w.path.includes('/vif/3/')), 'and unwatched');
});
