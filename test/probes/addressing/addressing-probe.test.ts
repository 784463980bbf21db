// Integration: addresses and routes in a private namespace, including the IPv4 routes the kernel drops silently.
import t, { type Test } from 'tap';
import type { ObservationOf, Observation } from '../../../contract/observation.js';
import { formatIp } from '../../../probes/addressing/decode-addressing.js';
import { ipIn, testNetns } from '../../helpers/netns.js';
import { startAgent, type AgentProcess } from '../../helpers/agent-process.js';

const address = (match: (o: ObservationOf<'address'>) => boolean) => (o: Observation) => o.kind === 'address' && match(o);
const route = (match: (o: ObservationOf<'route'>) => boolean) => (o: Observation) => o.kind === 'route' && match(o);

async function setUp(t: Test): Promise<{ netns: string; agent: AgentProcess }> {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  await ipIn(netns, 'addr', 'add', '192.0.2.10/24', 'dev', 'va');
  await ipIn(netns, 'addr', 'add', '2001:db8::10/64', 'dev', 'va', 'nodad');
  await ipIn(netns, 'link', 'set', 'va', 'up');
  await ipIn(netns, 'link', 'set', 'vb', 'up');
  await ipIn(netns, 'route', 'add', '198.51.100.0/24', 'via', '192.0.2.1');
  const agent = startAgent(t, ['watch', '--json', '--probes', 'addressing'], netns);
  await agent.waitFor((o) => o.kind === 'probe-status' && o.probe === 'addressing' && o.status === 'running', 0, 10_000);
  return { netns, agent };
}

t.test('the dump holds addresses and routes of both families', async (t) => {
  const { agent } = await setUp(t);
  await agent.waitFor(address((o) => o.action === 'dump' && o.address === '192.0.2.10' && o.prefixLength === 24));
  await agent.waitFor(address((o) => o.action === 'dump' && o.address === '2001:db8::10' && o.family === 'inet6'));
  await agent.waitFor(route((o) => o.action === 'dump' && o.destination === '198.51.100.0/24' && o.gateway === '192.0.2.1'));
  t.pass('all there');
});

t.test('ip addr flush shows as address deletions', async (t) => {
  const { netns, agent } = await setUp(t);
  const mark = agent.observations.length;
  await ipIn(netns, 'addr', 'flush', 'dev', 'va');
  await agent.waitFor(address((o) => o.action === 'del' && o.address === '192.0.2.10' && !o.reconciled), mark);
  await agent.waitFor(address((o) => o.action === 'del' && o.address === '2001:db8::10'), mark);
  t.pass('both deletions seen');
});

t.test('a deleted route shows as a route deletion', async (t) => {
  const { netns, agent } = await setUp(t);
  const mark = agent.observations.length;
  await ipIn(netns, 'route', 'del', '198.51.100.0/24');
  const gone = (await agent.waitFor(route((o) => o.action === 'del' && o.destination === '198.51.100.0/24'), mark)) as ObservationOf<'route'>;
  t.equal(gone.reconciled, false, 'the kernel said so itself');
});

t.test('a removed interface: the IPv4 routes the kernel drops without a word are still reported', async (t) => {
  const { netns, agent } = await setUp(t);
  const mark = agent.observations.length;
  await ipIn(netns, 'link', 'del', 'va');
  const gateway = (await agent.waitFor(route((o) => o.action === 'del' && o.destination === '198.51.100.0/24'), mark)) as ObservationOf<'route'>;
  t.equal(gateway.reconciled, true, 'found by re-reading, marked as such');
  const subnet = (await agent.waitFor(route((o) => o.action === 'del' && o.destination === '192.0.2.0/24'), mark)) as ObservationOf<'route'>;
  t.equal(subnet.reconciled, true);
});

t.test('address formatting', async (t) => {
  t.equal(formatIp(Buffer.from([192, 0, 2, 1])), '192.0.2.1');
  t.equal(formatIp(Buffer.from('20010db8000000000000000000000001', 'hex')), '2001:db8::1');
  t.equal(formatIp(Buffer.from('fe800000000000000000000000000000', 'hex')), 'fe80::');
  t.equal(formatIp(Buffer.from('00000000000000000000000000000000', 'hex')), '::');
  t.equal(formatIp(Buffer.from('20010db8000100000001000000000001', 'hex')), '2001:db8:1:0:1::1', 'the longest zero run is the one compressed');
  t.equal(formatIp(Buffer.from([1, 2, 3])), null);
});
