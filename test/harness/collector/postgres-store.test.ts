// The PostgreSQL store against a real server (a temporary cluster of Debian's postgresql, as the postgres user): the
// guarantees the SQLite store gives, kept when several collectors write at once, and the same answers as SQLite for
// any sequence of operations (fast-check generates them).
import t from 'tap';
import fc from 'fast-check';
import pg from 'pg';
import { PostgresStore } from '../../../harness/collector/postgres-store.js';
import { ReportStore, type IncomingData, type RetentionPolicy } from '../../../harness/collector/report-store.js';
import type { FleetStore } from '../../../harness/collector/store.js';
import type { Report } from '../../../contract/report-schema.js';
import { sampleReport } from '../../helpers/collector-fixtures.js';
import { startPostgres } from '../../helpers/postgres.js';

const postgres = await startPostgres({ fsync: false });
t.teardown(() => postgres.stop());
let databases = 0;
const newDatabase = () => postgres.database(`store_${(databases += 1)}`);
const NO_BOUNDS: RetentionPolicy = { maxAgeMs: null, maxBytes: null, perAgentBytes: null };

const identity = (agentId: string) => ({ agentId, machineId: 'm', hostname: agentId, macs: ['52:54:00:00:00:01'], xenDomid: null, agentVersion: '0.1.0' });
function item(agentId: string, seq: number, receivedAtMs = seq, verdict: Report['verdict'] = 'transparent', padding = 0): IncomingData {
  const report = sampleReport(agentId, seq, verdict);
  if (padding > 0) report.hostname = `${agentId}${'x'.repeat(padding)}`;
  return { agentId, seq, receivedAtMs, report, body: JSON.stringify(report) };
}

t.test('two collectors apply the same reports at once: each stored once, the last seq right', async (t) => {
  const url = await newDatabase();
  const [a, b] = [await PostgresStore.open(url, NO_BOUNDS), await PostgresStore.open(url, NO_BOUNDS)];
  t.teardown(async () => {
    await a.close();
    await b.close();
  });
  const agents = ['g1', 'g2', 'g3', 'g4'];
  for (const id of agents) await a.registerAgent(identity(id), 's1', 0, 1);
  // The same batches through both, in opposite agent orders, interleaved: what an agent that moved before its ack
  // arrived causes, for many agents at once. Rows taken in one order means no deadlock either.
  const batches = Array.from({ length: 20 }, (_, n) => agents.flatMap((id) => [item(id, n * 3 + 1), item(id, n * 3 + 2), item(id, n * 3 + 3)]));
  const stored = await Promise.all(batches.flatMap((batch) => [a.apply(batch), b.apply([...batch].reverse())]));
  t.equal(stored.reduce((x, y) => x + y, 0), 20 * 3 * agents.length, 'between them, every report stored once');
  for (const id of agents) {
    t.equal(await a.reportCount(id), 60, `${id}: 60 reports`);
    t.equal(await b.lastSeq(id), 60, `${id}: last seq 60`);
  }
  t.same((await a.reports('g1')).map((r) => r.seq), Array.from({ length: 60 }, (_, i) => i + 1), 'in order, none twice');
});

t.test('a new stream starts again at 0; the same stream keeps its seq', async (t) => {
  const store = await PostgresStore.open(await newDatabase(), NO_BOUNDS);
  t.teardown(() => store.close());
  t.equal(await store.registerAgent(identity('g'), 's1', 0, 1), 0, 'a new agent');
  await store.apply([item('g', 1), item('g', 2)]);
  t.equal(await store.registerAgent(identity('g'), 's1', 0, 2), 2, 'reconnected: what is stored');
  t.equal(await store.registerAgent(identity('g'), 's2', 0, 3), 0, 'reinstalled (a new stream): from the start');
  t.equal(await store.apply([item('g', 1), item('g', 2)]), 2, "the new stream's seq 1 and 2 are new reports");
  t.equal(await store.reportCount('g'), 4);
});

t.test("an agent's quota keeps its newest reports; retention by age and by total size", async (t) => {
  const body = JSON.stringify(item('q', 1, 1, 'transparent', 2000).report).length;
  const store = await PostgresStore.open(await newDatabase(), { maxAgeMs: 1000, maxBytes: body * 5, perAgentBytes: body * 3 });
  t.teardown(() => store.close());
  await store.registerAgent(identity('q'), 's', 0, 0);
  await store.registerAgent(identity('r'), 's', 0, 0);
  for (let seq = 1; seq <= 5; seq += 1) await store.apply([item('q', seq, 10_000 + seq, 'transparent', 2000)]);
  t.same((await store.reports('q')).map((r) => r.seq), [3, 4, 5], 'over its quota, the oldest went');
  for (let seq = 1; seq <= 3; seq += 1) await store.apply([item('r', seq, 10_000 + seq, 'transparent', 2000)]);
  t.equal(await store.prune(10_500), 1, 'over the total, the oldest of all went');
  t.same((await store.reports('r')).map((r) => r.seq), [2, 3]);
  t.equal(await store.prune(11_004), 3, 'older than a second at 11.004 s: q 3, r 2 and r 3');
  t.same((await store.reports('q')).map((r) => r.seq), [4, 5]);
  const client = new pg.Client({ connectionString: (store as unknown as { pool: { options: { connectionString: string } } }).pool.options.connectionString });
  await client.connect();
  const bytes = (await client.query<{ agent_id: string; stored_bytes: string; actual: string }>(
    'SELECT a.agent_id, a.stored_bytes, (SELECT COALESCE(SUM(octet_length(body)), 0) FROM reports r WHERE r.agent_id = a.agent_id) AS actual FROM agents a',
  )).rows;
  await client.end();
  t.ok(bytes.every((row) => row.stored_bytes === row.actual), 'each agent\'s byte count matches what it has stored');
});

t.test('a store of a newer schema is refused untouched; the error names the store without its password', async (t) => {
  const url = await newDatabase();
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  await client.query('CREATE TABLE flinch_schema (version INTEGER NOT NULL); INSERT INTO flinch_schema VALUES (99)');
  await t.rejects(PostgresStore.open(url), /flinch@127\.0\.0\.1:\d+\/store_\d+: store schema 99 is newer than this collector \(1\)/);
  t.same((await client.query("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")).rows, [{ table_name: 'flinch_schema' }], 'nothing created');
  await client.end();
  const withPassword = url.replace('flinch@', 'flinch:hunter2@').replace(/:\d+\//, ':1/');
  const refused = await PostgresStore.open(withPassword).then(() => null, (error: Error) => error.message);
  t.match(refused, /^postgres:\/\/flinch:\*\*\*@127\.0\.0\.1:1\/store_\d+: .*ECONNREFUSED/, 'refused, named without its password');
  t.notMatch(refused, /hunter2/);
});

type Operation =
  | { kind: 'register'; agent: number; stream: number }
  | { kind: 'apply'; items: Array<{ agent: number; seq: number; at: number; verdict: Report['verdict']; size: number; observation: boolean }> }
  | { kind: 'prune'; at: number };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('register' as const), agent: fc.nat(2), stream: fc.nat(1) }), weight: 1 },
  {
    arbitrary: fc.record({
      kind: fc.constant('apply' as const),
      items: fc.array(
        fc.record({
          agent: fc.nat(2), seq: fc.integer({ min: 1, max: 12 }), at: fc.integer({ min: 0, max: 5000 }),
          verdict: fc.constantFrom('transparent', 'noticed', 'disrupted', 'healed') as fc.Arbitrary<Report['verdict']>,
          size: fc.nat(600), observation: fc.boolean(),
        }),
        { maxLength: 6 },
      ),
    }),
    weight: 4,
  },
  { arbitrary: fc.record({ kind: fc.constant('prune' as const), at: fc.integer({ min: 0, max: 8000 }) }), weight: 1 },
);

/** What a reader can see of a store, in an order both give. */
async function observable(store: FleetStore) {
  const agents = (await store.agents()).map(({ firstSeenMs: _first, ...rest }) => rest);
  const reports: Record<string, number[]> = {};
  for (const agent of agents) reports[agent.agentId] = (await store.reports(agent.agentId)).map((r) => r.seq).sort((a, b) => a - b);
  const counts = Object.fromEntries([...(await store.verdictCounts())].sort().map(([id, byVerdict]) => [id, Object.fromEntries(Object.entries(byVerdict).sort())]));
  const byHour = (await store.episodesBy('hour')).sort((a, b) => `${a.key}${a.agentId}`.localeCompare(`${b.key}${b.agentId}`));
  return { agents, reports, counts, byHour, total: await store.reportCount() };
}

t.test('PostgreSQL and SQLite give the same answers to any sequence of operations', async (t) => {
  const retention: RetentionPolicy = { maxAgeMs: 3000, maxBytes: 6000, perAgentBytes: 2500 };
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(operation, { minLength: 1, maxLength: 25 }), async (operations) => {
      runs += 1;
      const sqlite = new ReportStore(':memory:', retention);
      const postgresStore = await PostgresStore.open(await newDatabase(), retention);
      try {
        const registered = new Set<number>();
        for (const op of operations) {
          for (const store of [sqlite, postgresStore] as FleetStore[]) {
            if (op.kind === 'register') await store.registerAgent(identity(`a${op.agent}`), `stream-${op.stream}`, 0, 100);
            else if (op.kind === 'prune') await store.prune(op.at);
            else {
              // A collector applies only for agents that said hello, each agent's seqs once and ascending (as one connection sends them).
              const seen = new Set<string>();
              const batch = [...op.items]
                .sort((x, y) => x.seq - y.seq)
                .filter((i) => registered.has(i.agent) && !seen.has(`${i.agent}/${i.seq}`) && seen.add(`${i.agent}/${i.seq}`))
                .map((i) => (i.observation ? { agentId: `a${i.agent}`, seq: i.seq, receivedAtMs: i.at, report: null, body: null } : item(`a${i.agent}`, i.seq, i.at, i.verdict, i.size)));
              await store.apply(batch);
            }
          }
          if (op.kind === 'register') registered.add(op.agent);
        }
        const [a, b] = [await observable(sqlite), await observable(postgresStore)];
        if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`SQLite ${JSON.stringify(a)}\nPostgreSQL ${JSON.stringify(b)}`);
      } finally {
        sqlite.close();
        await postgresStore.close();
      }
    }),
    { numRuns: 40 },
  );
  t.equal(runs >= 40, true, `${runs} sequences compared`);
});
