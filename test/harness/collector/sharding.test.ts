// Several collectors, each with its own store: every agent reports to exactly one, chosen from its id by rendezvous
// hashing, and removing a collector moves only the agents that were on it.
import t from 'tap';
import { collectorFor, collectorOrder } from '../../../agent/transport/shard.js';
import { FleetKeyring } from '../../../harness/collector/keyring.js';
import { agentKeyFor } from '../../../contract/frame-signing.js';
import { inProcessAgent, sampleReport, startCollector, until } from '../../helpers/collector-fixtures.js';

const SECRET = 'sharding-fleet-secret-0123456789abcdef';

t.test('rendezvous hashing: stable, spread, and minimal movement when a collector leaves', async (t) => {
  const collectors = ['ws://c1:7431', 'ws://c2:7431', 'ws://c3:7431', 'ws://c4:7431'];
  const ids = Array.from({ length: 4000 }, (_, i) => `vm-${i}`);
  const owner = new Map(ids.map((id) => [id, collectorFor(id, collectors)]));
  t.same(owner.get('vm-7'), collectorFor('vm-7', [...collectors].reverse()), 'order of the list does not matter');
  for (const c of collectors) {
    const share = ids.filter((id) => owner.get(id) === c).length / ids.length;
    t.ok(share > 0.2 && share < 0.3, `${c} gets ${(share * 100).toFixed(1)} % (fair share 25 %)`);
  }
  const nextOfC2 = ids.filter((id) => owner.get(id) === 'ws://c2:7431').map((id) => collectorOrder(id, collectors)[1]);
  for (const c of collectors.filter((c) => c !== 'ws://c2:7431')) {
    const share = nextOfC2.filter((next) => next === c).length / nextOfC2.length;
    t.ok(share > 0.25 && share < 0.42, `failing over, ${c} would take ${(share * 100).toFixed(1)} % of c2's agents (fair share 33 %)`);
  }
  t.same(ids.slice(0, 50).map((id) => collectorOrder(id, collectors)[0]), ids.slice(0, 50).map((id) => owner.get(id)), "an order starts with the agent's shard");
  const remaining = collectors.filter((c) => c !== 'ws://c2:7431');
  const moved = ids.filter((id) => collectorFor(id, remaining) !== owner.get(id));
  t.ok(moved.every((id) => owner.get(id) === 'ws://c2:7431'), 'only the agents of the removed collector move');
});

t.test('three real collectors: each agent\'s reports land in its own shard only', async (t) => {
  const keyring = new FleetKeyring(SECRET);
  const shards = await Promise.all([0, 1, 2].map(() => startCollector(t, { keyring })));
  const urls = shards.map((s) => `ws://127.0.0.1:${s.port}`);
  const agents = Array.from({ length: 30 }, (_, i) => `guest-${i}`).map((id) => {
    const url = collectorFor(id, urls);
    const agent = inProcessAgent(t, url, id, agentKeyFor(SECRET, id));
    for (let n = 1; n <= 5; n += 1) agent.client.sendReport(sampleReport(id, n));
    return { id, url, agent };
  });
  await until('all acknowledged', () => agents.every((a) => a.agent.spool.unacked.length === 0));
  for (const { id, url } of agents) {
    const counts = shards.map((s) => s.store.reportCount(id));
    t.same(counts, urls.map((u) => (u === url ? 5 : 0)), `${id}: 5 reports in its shard, none elsewhere`);
  }
  t.ok(shards.every((s) => s.store.agents().length > 0), 'every shard has agents');
});
