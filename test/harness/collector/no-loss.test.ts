// At-least-once delivery plus exactly-once storage, under fire: 10 000 reports from the real CollectorClient and Spool
// through a TCP proxy that kills connections at random, with the collector stopped and restarted on the same store in
// the middle. The proxy is the only stand-in: it plays a network that resets connections.
import t, { type Test } from 'tap';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ListedKeyring } from '../../../harness/collector/keyring.js';
import { freePort, inProcessAgent, sampleReport, startCollector, tempDir, until } from '../../helpers/collector-fixtures.js';

const KEY = 'd'.repeat(64);
const TOTAL = 10_000;

/** Forwards to `target()`, and every 50–300 ms cuts one live connection (both sides) mid-stream. */
async function killingProxy(t: Test, target: () => number) {
  const live = new Set<{ client: net.Socket; upstream: net.Socket }>();
  let kills = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(target(), '127.0.0.1');
    const pair = { client, upstream };
    live.add(pair);
    const end = () => {
      live.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  let stopped = false;
  const killer = (async () => {
    while (!stopped) {
      await sleep(50 + Math.random() * 250);
      const victims = [...live];
      const victim = victims[Math.floor(Math.random() * victims.length)];
      if (victim) {
        kills += 1;
        victim.client.destroy();
        victim.upstream.destroy();
      }
    }
  })();
  t.teardown(async () => {
    stopped = true;
    await killer;
    for (const pair of live) pair.client.destroy();
    server.close();
  });
  return { port: (server.address() as net.AddressInfo).port, kills: () => kills, stop: () => (stopped = true) };
}

t.test(`${TOTAL} reports, random connection kills, a collector restart: 0 lost, 0 stored twice`, async (t) => {
  const keyring = new ListedKeyring(new Map([['stream', KEY]]));
  const storeFile = `${tempDir('flinch-noloss-')}/collector.sqlite`;
  const backendPort = await freePort();
  const first = await startCollector(t, { keyring, port: backendPort, storeFile });
  const proxy = await killingProxy(t, () => backendPort);
  const agent = inProcessAgent(t, `ws://127.0.0.1:${proxy.port}`, 'stream', KEY);

  let appended = 0;
  const produce = async (upTo: number) => {
    while (appended < upTo) {
      for (let i = 0; i < 20 && appended < upTo; i += 1) agent.client.sendReport(sampleReport('stream', ++appended, appended % 97 === 0 ? 'disrupted' : 'transparent'));
      await sleep(8);
    }
  };
  await produce(TOTAL / 2);

  // The collector goes away mid-stream, with whatever it had not acknowledged, and comes back on the same store.
  await first.collector.stop();
  first.store.close();
  await produce((TOTAL * 3) / 4);
  await sleep(300);
  const second = await startCollector(t, { keyring, port: backendPort, storeFile });
  await produce(TOTAL);

  await until('every report acknowledged', () => agent.spool.unacked.length === 0, 120_000);
  proxy.stop();
  const seqs = second.store.reports('stream').map((r) => r.seq);
  t.equal(seqs.length, TOTAL, `${TOTAL} reports stored`);
  t.same(seqs, Array.from({ length: TOTAL }, (_, i) => i + 1), 'exactly seq 1..N: none lost, none twice');
  const episodes = new Set(second.store.reports('stream').map((r) => r.report.episode.id));
  t.equal(episodes.size, TOTAL, 'each report is a different episode');
  t.equal(agent.spool.dropped, 0, 'the spool never had to drop');
  const duplicates = (await second.collector.metrics.duplicates.get()).values[0]?.value ?? 0;
  t.ok(proxy.kills() >= 10, `the proxy killed ${proxy.kills()} connections; ${second.collector.agents.get('stream')?.connections} reconnections to the restarted collector; ${duplicates} re-sent messages dropped as duplicates`);
});

t.test('a backlog larger than the collector allows in one burst goes out paced, on one connection, none refused', async (t) => {
  const port = await freePort();
  const agent = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'backlog', KEY);
  // Spooled while no collector runs: more than the collector's burst of 4 000 frames.
  for (let n = 1; n <= TOTAL; n += 1) agent.client.sendReport(sampleReport('backlog', n));
  const lines: string[] = [];
  const { collector, store } = await startCollector(t, { keyring: new ListedKeyring(new Map([['backlog', KEY]])), port }, lines);
  // New data while the backlog drains must wait its turn, not overtake it.
  await until('the first acks', () => agent.acks.length > 0);
  agent.client.sendReport(sampleReport('backlog', TOTAL + 1));
  await until('everything acknowledged', () => agent.spool.unacked.length === 0, 60_000);
  t.equal(store.reportCount('backlog'), TOTAL + 1, 'all stored');
  t.equal(collector.rejected, 0, `nothing refused (${lines.filter((l) => /rejected/.test(l)).slice(0, 2).join(' | ')})`);
  t.equal(collector.agents.get('backlog')!.connections, 1, 'on one connection');
});
