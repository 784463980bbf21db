// The collector as a publisher, against a real collector on loopback: what the agent publishes is streamed; the
// connection's own observations (the offset to the host) and, only when accepted, the harness's announcements come
// back into the agent's pipeline; the hello names the Xen domain the guest was last seen in.
import t, { type Test } from 'tap';
import { CollectorPublisher, type CollectorFeed } from '../../../agent/publishers/collector-publisher.js';
import { agentKeyFor } from '../../../contract/frame-signing.js';
import type { Observation } from '../../../contract/observation.js';
import type { GuestSystem } from '../../../contract/messages.js';
import { sampleReport, startCollector, tempDir, until } from '../../helpers/collector-fixtures.js';
import { SAMPLE_OBSERVATIONS } from '../../helpers/observation-samples.js';

const AGENT = 'publisher-agent';
const KEY = agentKeyFor('fleet secret', AGENT);

const GUEST: GuestSystem = { distro: 'Debian GNU/Linux', release: '12 (bookworm)', kernel: '6.1.0-28-cloud-amd64', arch: 'x64', virtual: true, hypervisor: 'KVM' };

async function setUp(t: Test, acceptAnnounce: boolean, guest: GuestSystem | null = GUEST) {
  const { collector, store, port } = await startCollector(t, { keyring: { keyFor: (id) => (id === AGENT ? KEY : null) } });
  const ingested: Observation[] = [];
  const announced: string[] = [];
  const feed: CollectorFeed = { ingest: (o) => ingested.push(o), announce: (phase, id) => announced.push(`${phase} ${id}`) };
  const publisher = new CollectorPublisher({
    urls: [`ws://127.0.0.1:${port}`], agentId: AGENT, key: KEY, ca: undefined, stateDir: tempDir('flinch-publisher-'),
    spoolMaxBytes: 1024 * 1024, acceptAnnounce, metrics: null, log: () => undefined,
  });
  t.teardown(() => publisher.close());
  publisher.start(feed, guest);
  await until('the hello', () => collector.agents.get(AGENT));
  return { collector, store, publisher, ingested, announced };
}

t.test('observations and reports are streamed; the offset to the host comes back as an observation of its own', async (t) => {
  const { collector, publisher, ingested } = await setUp(t, false);
  publisher.observation(SAMPLE_OBSERVATIONS.link);
  publisher.report(sampleReport(AGENT, 1));
  const agent = collector.agents.get(AGENT)!;
  await until('both stored', () => agent.observations.length >= 1 && agent.reports.length >= 1);
  t.equal(agent.observations[0]!.observation.kind, 'link');
  await until('an offset measured from the time exchanges', () => ingested.find((o) => o.kind === 'host-offset'), 10_000);
  t.pass('the connection measured the offset to the host and handed it to the agent');
});

t.test("the hello carries the guest the agent read at start, into the store; without one, none", async (t) => {
  const { collector, store } = await setUp(t, false);
  t.same(collector.agents.get(AGENT)!.hello.guest, GUEST);
  t.same(store.agents().find((a) => a.agentId === AGENT)?.guest, GUEST, 'stored with the agent');
  const without = await setUp(t, false, null);
  t.notOk('guest' in without.collector.agents.get(AGENT)!.hello);
  t.equal(without.store.agents().find((a) => a.agentId === AGENT)?.guest, undefined);
});

t.test('the next hello names the domain a xen observation said the guest is in', async (t) => {
  const { collector, publisher } = await setUp(t, false);
  t.equal(collector.agents.get(AGENT)!.hello.xenDomid, null);
  publisher.observation(SAMPLE_OBSERVATIONS.xen);
  const connections = collector.agents.get(AGENT)!.connections;
  for (const client of (collector as unknown as { wss: { clients: Set<{ terminate(): void }> } }).wss.clients) client.terminate();
  await until('a new hello', () => collector.agents.get(AGENT)!.connections > connections, 15_000);
  t.equal(collector.agents.get(AGENT)!.hello.xenDomid, 7);
});

t.test("a harness's signed announcement reaches the agent only when it accepts them", async (t) => {
  const accepting = await setUp(t, true);
  t.ok(accepting.collector.tell(AGENT, { type: 'announce', phase: 'starting', migrationId: 'm-1' }));
  await until('the announcement', () => accepting.announced.length > 0);
  t.same(accepting.announced, ['starting m-1']);
});

t.test('an agent that does not accept announcements is not told of them', async (t) => {
  const refusing = await setUp(t, false);
  t.ok(refusing.collector.tell(AGENT, { type: 'announce', phase: 'starting', migrationId: 'm-2' }));
  // The same frame, accepted, arrives within milliseconds (the test above); a second's wait is generous.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  t.same(refusing.announced, []);
});
