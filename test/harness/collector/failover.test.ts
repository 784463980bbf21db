// Three real `flinch collect` processes on one real PostgreSQL store; agents (the real CollectorClient and spool, in
// this process) stream reports to them with --collector-failover's order. One collector is killed (SIGKILL) in the
// middle of the stream and started again: its agents move to their next collector and come back, and every report
// is stored exactly once.
import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { agentKeyFor } from '../../../contract/frame-signing.js';
import { collectorOrder } from '../../../agent/transport/shard.js';
import { FLINCH, cleanEnvironment, runCli } from '../../helpers/run-cli.js';
import { freePort, inProcessAgent, sampleReport, tempDir, until } from '../../helpers/collector-fixtures.js';
import { startPostgres } from '../../helpers/postgres.js';

const SECRET = 'failover-fleet-secret-0123456789abcdef';
const AGENTS = 30;

t.test('a collector killed mid-stream: its agents move and come back, 0 lost, 0 stored twice', async (t) => {
  const postgres = await startPostgres({ fsync: false });
  t.teardown(() => postgres.stop());
  const store = await postgres.database('fleet');
  const dir = tempDir('flinch-failover-');
  const secretFile = path.join(dir, 'fleet.secret');
  writeFileSync(secretFile, SECRET, { mode: 0o600 });
  const ports = [await freePort(), await freePort(), await freePort()];
  const urls = ports.map((port) => `ws://127.0.0.1:${port}`);
  const running: Array<ChildProcess | null> = [null, null, null];
  const startCollector = async (i: number) => {
    const child = spawn(process.execPath, [FLINCH, 'collect', '--listen', `127.0.0.1:${ports[i]}`, '--store', store, '--fleet-secret', secretFile], {
      env: cleanEnvironment(), stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    running[i] = child;
    await until(`collector ${i} listening`, () => stderr.includes('listening on') || child.exitCode !== null);
    t.equal(child.exitCode, null, `collector ${i} started: ${stderr.trim()}`);
    t.match(stderr, /store postgres:\/\/flinch@127\.0\.0\.1/, 'the log names the store');
  };
  t.teardown(() => running.forEach((child) => child?.kill('SIGKILL')));
  // Two start at once on a new database: the schema is created once, not raced.
  await Promise.all([startCollector(0), startCollector(1)]);
  await startCollector(2);

  // The ports are new each run, so are the orders: the agents are picked so that ten prefer each collector, and of the
  // ten that prefer the one that dies, five each have either survivor next.
  const victim = urls[0]!;
  const wanted = new Map<string, number>([[`${urls[0]} ${urls[1]}`, 5], [`${urls[0]} ${urls[2]}`, 5], [urls[1]!, 10], [urls[2]!, 10]]);
  const ids: string[] = [];
  for (let n = 0; ids.length < AGENTS; n += 1) {
    const [first, second] = collectorOrder(`guest-${n}`, urls);
    const key = first === victim ? `${first} ${second}` : first!;
    if ((wanted.get(key) ?? 0) === 0) continue;
    wanted.set(key, wanted.get(key)! - 1);
    ids.push(`guest-${n}`);
  }
  const logs: string[] = [];
  const agents = ids.map((id) => {
    const order = collectorOrder(id, urls);
    const agent = inProcessAgent(t, order[0]!, id, agentKeyFor(SECRET, id), undefined, 10_000, {
      urls: order, failbackCheckMs: 500, log: (line) => logs.push(`${id}: ${line}`),
    });
    return { id, order, agent, sent: 0, seen: new Set<string>() };
  });
  const victims = agents.filter((a) => a.order[0] === victim);

  let streaming = true;
  const stream = (async () => {
    while (streaming) {
      for (const a of agents) {
        a.sent += 1;
        a.agent.client.sendReport(sampleReport(a.id, a.sent, a.sent % 7 === 0 ? 'disrupted' : 'transparent'));
        a.seen.add(a.agent.client.url);
      }
      await sleep(50);
    }
  })();

  await until('every agent on its first collector', () => agents.every((a) => a.agent.client.connected && a.agent.client.url === a.order[0]));
  await sleep(1000);
  running[0]!.kill('SIGKILL');
  await until('the dead collector\'s agents on their second choice', () => victims.every((a) => a.agent.client.connected && a.agent.client.url === a.order[1]), 20_000);
  t.pass('every agent of the dead collector moved to its second choice');
  t.ok(agents.filter((a) => a.order[0] !== victim).every((a) => a.seen.size === 1), 'the others did not move');
  await sleep(1500);

  await startCollector(0);
  await until('the agents back on their first collector', () => victims.every((a) => a.agent.client.connected && a.agent.client.url === victim), 20_000);
  t.pass('and came back once it answered again');
  await sleep(500);
  streaming = false;
  await stream;
  await until('everything acknowledged', () => agents.every((a) => a.agent.spool.unacked.length === 0), 30_000);

  const client = new pg.Client({ connectionString: store });
  await client.connect();
  t.teardown(() => client.end());
  const rows = (await client.query<{ agent_id: string; n: string; distinct_episodes: string; max_seq: string }>(
    'SELECT agent_id, COUNT(*) AS n, COUNT(DISTINCT episode_id) AS distinct_episodes, MAX(seq) AS max_seq FROM reports GROUP BY agent_id',
  )).rows;
  const byAgent = new Map(rows.map((r) => [r.agent_id, r]));
  const wrong = agents.filter((a) => {
    const row = byAgent.get(a.id);
    return !row || Number(row.n) !== a.sent || Number(row.distinct_episodes) !== a.sent;
  });
  t.same(wrong.map((a) => `${a.id}: sent ${a.sent}, stored ${byAgent.get(a.id)?.n}`), [], 'every report stored exactly once');
  const total = agents.reduce((sum, a) => sum + a.sent, 0);
  t.ok(total > AGENTS * 50, `${total} reports in all`);
  const lastSeqs = (await client.query<{ agent_id: string; last_seq: string }>('SELECT agent_id, last_seq FROM agents')).rows;
  t.ok(lastSeqs.every((r) => Number(r.last_seq) === Number(byAgent.get(r.agent_id)!.max_seq)), "each agent's last seq is its last report's");
  t.ok(logs.some((line) => /moving to ws:/.test(line)) && logs.some((line) => /answers again; moving back/.test(line)), 'the agents said where they went');

  const status = await runCli([FLINCH, 'fleet', 'status', '--store', store, '--json']);
  t.equal(status.code, 0, status.stderr);
  const fleet = JSON.parse(status.stdout) as { agents: number; episodes: number; byHour: Array<{ guests: number }> };
  t.equal(fleet.agents, AGENTS, 'fleet status reads the whole fleet from the shared store');
  t.equal(fleet.episodes, total);
  t.equal(fleet.byHour.reduce((max, h) => Math.max(max, h.guests), 0), AGENTS);
});

t.test('a shared store the collector cannot use: one line, the password not in it', async (t) => {
  const port = await freePort();
  const dir = tempDir('flinch-failover-');
  writeFileSync(path.join(dir, 'fleet.secret'), SECRET, { mode: 0o600 });
  const refused = await runCli([FLINCH, 'collect', '--listen', '127.0.0.1:0', '--store', `postgres://flinch:s3cret@127.0.0.1:${port}/fleet`, '--fleet-secret', path.join(dir, 'fleet.secret')]);
  t.equal(refused.code, 2, 'a usage error');
  t.match(refused.stderr, /^flinch: (error: )?--store postgres:\/\/flinch:\*\*\*@127\.0\.0\.1:\d+\/fleet: .*ECONNREFUSED/m);
  t.notMatch(refused.stderr, /s3cret/, 'the password is not printed');
  t.equal(refused.stderr.trim().split('\n').length, 1, 'one line');
  const status = await runCli([FLINCH, 'fleet', 'status', '--store', `postgres://flinch:s3cret@127.0.0.1:${port}/fleet`]);
  t.equal(status.code, 2);
  t.notMatch(status.stderr, /s3cret/);
});
