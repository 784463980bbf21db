// Integration: the real agent (the bundle the guest runs) watching real veth pairs in a private network namespace.
import t, { type Test } from 'tap';
import type { ObservationOf, Observation } from '../../../contract/observation.js';
import { ipIn, testNetns } from '../../helpers/netns.js';
import { startAgent, type AgentProcess } from '../../helpers/agent-process.js';

const isLink = (o: Observation): o is ObservationOf<'link'> => o.kind === 'link';
const linkNamed = (name: string, extra: (o: ObservationOf<'link'>) => boolean = () => true) => (o: Observation) =>
  isLink(o) && o.link.name === name && extra(o);

async function watchingAgent(t: Test, netns: string): Promise<AgentProcess> {
  const agent = startAgent(t, ['watch', '--json', '--probes', 'link'], netns);
  await agent.waitFor((o) => o.kind === 'probe-status' && o.probe === 'link' && o.status === 'running', 0, 10_000);
  return agent;
}

t.test('the initial dump lists the interfaces already there', async (t) => {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const agent = await watchingAgent(t, netns);
  const dumped = agent.observations.filter(isLink).filter((o) => o.action === 'dump').map((o) => o.link.name);
  t.same(dumped.sort(), ['lo', 'va', 'vb']);
});

t.test('carrier down and up from the peer shows as carrier 0 then 1 with the counters moving', async (t) => {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  await ipIn(netns, 'link', 'set', 'va', 'up');
  await ipIn(netns, 'link', 'set', 'vb', 'up');
  const agent = await watchingAgent(t, netns);
  const up = (await agent.waitFor(linkNamed('va', (o) => o.link.carrier === 1 && o.link.operstate === 'up'))) as ObservationOf<'link'>;
  const before = up.link.carrierChanges!;

  let mark = agent.observations.length;
  await ipIn(netns, 'link', 'set', 'vb', 'down');
  const down = (await agent.waitFor(linkNamed('va', (o) => o.action === 'new' && o.link.carrier === 0), mark)) as ObservationOf<'link'>;
  t.equal(down.link.lowerUp, false, 'LOWER_UP cleared');
  t.equal(down.link.adminUp, true, 'va itself stays administratively up');
  t.equal(down.link.carrierChanges, before + 1, 'carrier_changes counted the drop');
  t.equal(down.link.carrierDownCount, (up.link.carrierDownCount ?? 0) + 1);

  mark = agent.observations.length;
  await ipIn(netns, 'link', 'set', 'vb', 'up');
  const back = (await agent.waitFor(linkNamed('va', (o) => o.action === 'new' && o.link.carrier === 1), mark)) as ObservationOf<'link'>;
  t.equal(back.link.carrierChanges, before + 2, 'a flap moves the counter by two, as netfront does');
  t.equal(back.link.carrierUpCount, (up.link.carrierUpCount ?? 0) + 1);
});

t.test('delete and re-create: a DEL, then a NEW under a new ifindex', async (t) => {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const agent = await watchingAgent(t, netns);
  const original = agent.observations.filter(isLink).find((o) => o.link.name === 'va')!;

  let mark = agent.observations.length;
  await ipIn(netns, 'link', 'del', 'va');
  const deleted = (await agent.waitFor(linkNamed('va', (o) => o.action === 'del'), mark)) as ObservationOf<'link'>;
  t.equal(deleted.link.ifindex, original.link.ifindex, 'the DEL names the old ifindex');

  mark = agent.observations.length;
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const recreated = (await agent.waitFor(linkNamed('va', (o) => o.action === 'new'), mark)) as ObservationOf<'link'>;
  t.not(recreated.link.ifindex, original.link.ifindex, 'same name, new ifindex');
});

t.test('MAC and MTU changes are observed', async (t) => {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  const agent = await watchingAgent(t, netns);

  let mark = agent.observations.length;
  await ipIn(netns, 'link', 'set', 'va', 'address', '02:00:00:aa:bb:cc');
  await agent.waitFor(linkNamed('va', (o) => o.action === 'new' && o.link.mac === '02:00:00:aa:bb:cc'), mark);

  mark = agent.observations.length;
  await ipIn(netns, 'link', 'set', 'va', 'mtu', '1400');
  const mtu = (await agent.waitFor(linkNamed('va', (o) => o.action === 'new' && o.link.mtu === 1400), mark)) as ObservationOf<'link'>;
  t.equal(mtu.link.mac, '02:00:00:aa:bb:cc', 'the MAC change stuck');
});
