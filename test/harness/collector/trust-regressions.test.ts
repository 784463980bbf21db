// Regressions for what a hostile peer did to the collector and the agent: each a real collector (or a real
// CollectorClient against a hand-driven WebSocket server) on loopback.
import t from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { mkdtempSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReportStore } from '../../../harness/collector/report-store.js';
import { printable } from '../../../contract/command-line.js';
import { renderFleetStatus } from '../../../harness/fleet/fleet-status.js';
import type { AddressInfo } from 'node:net';
import { ListedKeyring, FleetKeyring } from '../../../harness/collector/keyring.js';
import { agentKeyFor, signCollectorFrame, signFrame, verifyCollectorFrame } from '../../../contract/frame-signing.js';
import { jsonDepthExceeds } from '../../../contract/messages.js';
import { closeReason, MAX_PRE_HELLO_FRAME_BYTES } from '../../../harness/collector/frame-limits.js';
import { helloFor, inProcessAgent, rawConnection, sampleReport, startCollector, until } from '../../helpers/collector-fixtures.js';
import { MigrationAnnouncer } from '../../../harness/collector/migration-announcer.js';

const GOOD_KEY = 'a'.repeat(64);
const FLEET_SECRET = 's'.repeat(40);
const EURO_ID = '€'.repeat(100);

t.test('a hello whose agent id is 100 × € closes that connection only, under every auth mode', async (t) => {
  const modes: Array<[string, ListedKeyring | FleetKeyring | null, string | null]> = [
    ['--agent-keys', new ListedKeyring(new Map([['good', GOOD_KEY]])), GOOD_KEY],
    ['--fleet-secret', new FleetKeyring(FLEET_SECRET), agentKeyFor(FLEET_SECRET, 'good')],
    ['--no-auth', null, null],
  ];
  for (const [mode, keyring, goodKey] of modes) {
    const { collector, store, port } = await startCollector(t, { keyring });
    const good = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'good', goodKey);
    await until(`${mode}: the good agent`, () => collector.agents.get('good'));
    const c = await rawConnection(port);
    const hello = helloFor(EURO_ID, c.nonce);
    if (keyring) c.sendSigned(keyring instanceof FleetKeyring ? agentKeyFor(FLEET_SECRET, EURO_ID) : GOOD_KEY, hello);
    else c.send(JSON.stringify(hello));
    const closed = await c.closed;
    t.ok(closed.code === 1008 || closed.code === 1011, `${mode}: closed with ${closed.code} (${closed.reason})`);
    t.ok(Buffer.byteLength(closed.reason) <= 123, `${mode}: the close reason fits ws's limit`);
    if (keyring === null) {
      // Authenticated (there is no auth), then a frame whose long non-ASCII type ends up in the close reason.
      const d = await rawConnection(port);
      d.send(JSON.stringify(helloFor('dave', d.nonce)));
      await until('dave welcomed', () => collector.agents.get('dave'));
      d.send(JSON.stringify({ type: 'ü'.repeat(200), seq: 1 }));
      t.equal((await d.closed).code, 1008, `${mode}: a long non-ASCII type is refused, not thrown`);
    }
    good.client.sendReport(sampleReport('good', 1));
    await until(`${mode}: the good agent's report stored after the attack`, () => store.lastSeq('good') >= 1);
    t.pass(`${mode}: the collector is still serving`);
  }
});

t.test('close reasons are ASCII and at most 123 bytes whatever the detail', async (t) => {
  for (const text of ['€'.repeat(100), 'x'.repeat(500), '\u001b]52;c;aGVsbG8=\u0007\n forged line']) {
    const reason = closeReason(text);
    t.ok(Buffer.byteLength(reason) <= 123 && /^[\x20-\x7e]*$/.test(reason), JSON.stringify(reason));
  }
});

t.test('a frame nested 200 000 levels deep is refused before it is parsed; the good agent is not disconnected', async (t) => {
  const mallory = 'b'.repeat(64);
  const { collector, store, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['good', GOOD_KEY], ['mallory', mallory]])) });
  const good = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'good', GOOD_KEY);
  await until('the good agent', () => collector.agents.get('good'));
  const connectionsBefore = collector.agents.get('good')!.connections;
  const c = await rawConnection(port);
  c.sendSigned(mallory, helloFor('mallory', c.nonce));
  await until('mallory welcomed', () => collector.agents.get('mallory'));
  const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
  const report = JSON.stringify({ type: 'report', seq: 1, report: { ...sampleReport('mallory', 1), observations: [{ kind: 'x', at: { realtimeMs: 1, monotonicMs: 1 }, deep: '@' }] } }).replace('"@"', deep);
  const rejected = new Promise<string>((resolve) => collector.once('rejected', (reason, detail) => resolve(`${reason}: ${detail}`)));
  c.sendSigned(mallory, report);
  t.match(await rejected, /^malformed: frame nests deeper than 64 levels/);
  t.equal((await c.closed).code, 1008);
  t.equal(store.lastSeq('mallory'), 0, 'nothing of it was stored');
  good.client.sendReport(sampleReport('good', 1));
  await until('the good agent still reports', () => store.lastSeq('good') >= 1);
  t.equal(collector.agents.get('good')!.connections, connectionsBefore, 'and was never disconnected');
  t.ok(jsonDepthExceeds('{"a":"[[[[[[[[[[[["}', 3) === false, 'brackets inside strings do not count');
});

t.test('frames after a reject are not parsed or checked', async (t) => {
  const { collector, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['good', GOOD_KEY]])) });
  const c = await rawConnection(port);
  let rejects = 0;
  collector.on('rejected', () => (rejects += 1));
  c.send('not signed');
  for (let i = 0; i < 50; i += 1) c.send(signFrame(GOOD_KEY, c.nonce, JSON.stringify(helloFor('good', c.nonce))));
  await c.closed;
  t.equal(rejects, 1, 'one reject, the rest ignored');
  t.notOk(collector.agents.get('good'), 'a hello sent after the reject was not taken');
});

t.test('every collector frame after the challenge is signed with the agent\'s key over the collector\'s direction', async (t) => {
  const { collector, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['good', GOOD_KEY]])) });
  const c = await rawConnection(port);
  const frames: string[] = [];
  c.ws.on('message', (data) => frames.push(data.toString()));
  c.sendSigned(GOOD_KEY, helloFor('good', c.nonce));
  await until('an ack', () => frames.length > 0);
  new MigrationAnnouncer(collector).announce('good', 'starting', 'm-1');
  await until('the announcement', () => frames.length > 1);
  for (const frame of frames) {
    const mac = frame.slice(0, 64);
    const json = frame.slice(65);
    t.ok(verifyCollectorFrame(GOOD_KEY, c.nonce, json, mac), `signed: ${json}`);
    t.notOk(verifyCollectorFrame(GOOD_KEY, c.nonce, json, signFrame(GOOD_KEY, c.nonce, json).slice(0, 64)), 'an agent-direction MAC does not pass for a collector frame');
  }
});

t.test('the agent drops unsigned and forged collector frames, acks beyond what it sent, and announcements past the rate', async (t) => {
  // A hand-driven server stands in for a compromised or spoofed collector.
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => wss.close(() => resolve())));
  const port = (wss.address() as AddressInfo).port;
  const announced: string[] = [];
  const acked: number[] = [];
  const peer = new Promise<{ send: (frame: string) => void; nonce: string }>((resolve) => {
    wss.on('connection', (socket) => {
      const nonce = 'n'.repeat(32);
      socket.on('message', () => resolve({ send: (frame) => socket.send(frame), nonce }));
      socket.send(JSON.stringify({ type: 'challenge', protocol: 2, nonce }));
    });
  });
  const agent = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'good', GOOD_KEY, undefined, 10_000, {
    onAnnounce: (phase, id) => announced.push(`${phase} ${id}`),
    onAck: (seq) => acked.push(seq),
  });
  for (let i = 1; i <= 3; i += 1) agent.client.sendReport(sampleReport('good', i));
  const { send, nonce } = await peer;
  const signed = (message: object) => signCollectorFrame(GOOD_KEY, nonce, JSON.stringify(message));
  send(JSON.stringify({ type: 'announce', phase: 'starting', migrationId: 'forged-unsigned' }));
  send(signCollectorFrame('c'.repeat(64), nonce, JSON.stringify({ type: 'announce', phase: 'starting', migrationId: 'forged-key' })));
  send(signFrame(GOOD_KEY, nonce, JSON.stringify({ type: 'announce', phase: 'starting', migrationId: 'reflected' })));
  send(JSON.stringify({ type: 'ack', seq: 3 }));
  send(signed({ type: 'ack', seq: 1_000_000 }));
  send(signed({ type: 'ack', seq: 2 }));
  for (let i = 0; i < 30; i += 1) send(signed({ type: 'announce', phase: 'starting', migrationId: `m-${i}` }));
  await until('the signed ack', () => acked.length > 0);
  await until('the rate limit', () => announced.length >= 20);
  await new Promise((resolve) => setTimeout(resolve, 200));
  t.same(acked, [2], 'only the signed ack within what was sent counted');
  t.equal(agent.spool.unacked.length, 1, 'seq 3 is still in the spool: nothing was silently lost');
  t.equal(announced.length, 20, 'announcements past 20 a minute are dropped');
  t.notOk(announced.some((a) => /forged|reflected/.test(a)), 'no unsigned, forged or reflected announcement got through');
});

t.test('before its hello a connection may send only small frames; after it, the full 1 MiB', async (t) => {
  const { collector, store, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['good', GOOD_KEY]])) });
  const early = await rawConnection(port);
  early.send('x'.repeat(MAX_PRE_HELLO_FRAME_BYTES + 1));
  const closed = await early.closed;
  t.equal(closed.code, 1009, `an oversized pre-hello frame is refused (${closed.reason})`);
  const c = await rawConnection(port);
  c.sendSigned(GOOD_KEY, helloFor('good', c.nonce));
  await until('welcomed', () => collector.agents.get('good'));
  const big = sampleReport('good', 1);
  big.evidence = Array.from({ length: 100 }, (_, i) => ({ severity: 'noticed' as const, kind: 'pad', detail: 'p'.repeat(1900), at: { realtimeMs: i, monotonicMs: i } }));
  const frame = JSON.stringify({ type: 'report', seq: 1, report: big });
  t.ok(frame.length > 150_000, `a ${frame.length}-byte report`);
  c.sendSigned(GOOD_KEY, frame);
  await until('the large report stored', () => store.lastSeq('good') >= 1);
  t.pass('is taken after the hello (the raised limit reached ws)');
});

t.test('one address cannot hold every pending slot: its connections past the limit are busy, other addresses are served', async (t) => {
  const { collector, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['good', GOOD_KEY]])), maxPendingPerAddress: 10, helloTimeoutMs: 10_000 });
  const hostile: WebSocket[] = [];
  const closes: Array<Promise<number>> = [];
  for (let i = 0; i < 15; i += 1) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { localAddress: '127.0.0.2' });
    ws.on('error', () => undefined);
    closes.push(new Promise((resolve) => ws.once('close', (code) => resolve(code))));
    hostile.push(ws);
  }
  t.teardown(() => hostile.forEach((ws) => ws.terminate()));
  const busy = await Promise.race([Promise.all(closes.slice(10)), new Promise<number[]>((resolve) => setTimeout(() => resolve([]), 5000))]);
  t.same(busy, [1013, 1013, 1013, 1013, 1013], 'the five past the limit: try again later');
  inProcessAgent(t, `ws://127.0.0.1:${port}`, 'good', GOOD_KEY);
  await until('the good agent from another address', () => collector.agents.get('good'));
  t.pass('served meanwhile');
});

t.test('the store is created 0600, keeps each agent under its quota, and applies age and size bounds', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-store-'));
  const file = path.join(dir, 'fleet.sqlite');
  const store = new ReportStore(file, { maxAgeMs: 60_000, maxBytes: 400_000, perAgentBytes: 100_000 });
  t.teardown(() => store.close());
  t.equal(statSync(file).mode & 0o777, 0o600, 'owner-only');
  store.registerAgent({ agentId: 'flood', machineId: '', hostname: 'flood', macs: [], xenDomid: null, agentVersion: '0.1.0' }, '00000000000000aa', 0, 0);
  store.registerAgent({ agentId: 'calm', machineId: '', hostname: 'calm', macs: [], xenDomid: null, agentVersion: '0.1.0' }, '00000000000000bb', 0, 0);
  const padded = (agentId: string, n: number) => {
    const report = sampleReport(agentId, n);
    report.evidence = [{ severity: 'noticed', kind: 'pad', detail: 'p'.repeat(1990), at: { realtimeMs: n, monotonicMs: n } }];
    for (let i = 0; i < 4; i += 1) report.evidence.push({ ...report.evidence[0]! });
    return { agentId, seq: n, receivedAtMs: 1000 + n, report, body: JSON.stringify(report) };
  };
  store.apply([padded('calm', 1)]);
  for (let n = 1; n <= 40; n += 1) store.apply([padded('flood', n)]);
  t.ok(store.storedBytes('flood') <= 100_000, `the flooding agent is kept under its quota (${store.storedBytes('flood')} bytes)`);
  t.equal(store.lastSeq('flood'), 40, 'its seq still advances: nothing is re-sent and stored twice');
  t.same(store.reports('flood').map((r) => r.seq).slice(-1), [40], 'its newest report is kept');
  t.equal(store.reportCount('calm'), 1, 'the other agent is untouched');
  t.ok(store.prune(1000 + 60_000 + 2) >= 1, 'age: reports received over a minute before are deleted');
  t.equal(store.reportCount('calm'), 0, 'the calm agent\'s report (received at 1001) is gone');
  t.ok(store.reports('flood').every((r) => r.seq >= 2), 'and so is anything else that old');

  const sized = new ReportStore(path.join(dir, 'sized.sqlite'), { maxAgeMs: null, maxBytes: 50_000, perAgentBytes: null });
  t.teardown(() => sized.close());
  sized.registerAgent({ agentId: 'flood', machineId: '', hostname: 'flood', macs: [], xenDomid: null, agentVersion: '0.1.0' }, '00000000000000aa', 0, 0);
  for (let n = 1; n <= 40; n += 1) sized.apply([padded('flood', n)]);
  t.ok(sized.storedBytes() > 50_000, 'over the bound before pruning');
  sized.prune(0);
  t.ok(sized.storedBytes() <= 50_000, `size: the oldest go until the bodies fit (${sized.storedBytes()} bytes)`);
  t.equal(sized.reports('flood').at(-1)!.seq, 40, 'the newest stays');
});

t.test("the write-ahead log goes back into the database on the checkpoint thread, never in the writer's commits", async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-store-wal-'));
  const file = path.join(dir, 'fleet.sqlite');
  const store = new ReportStore(file, { maxAgeMs: null, maxBytes: null, perAgentBytes: null });
  t.teardown(() => store.close());
  store.registerAgent({ agentId: 'a', machineId: '', hostname: 'a', macs: [], xenDomid: null, agentVersion: '0.1.0' }, '00000000000000aa', 0, 0);
  const before = statSync(file).size;
  for (let n = 1; n <= 200; n += 1) {
    const report = sampleReport('a', n);
    report.evidence = [{ severity: 'noticed', kind: 'pad', detail: 'p'.repeat(4000), at: { realtimeMs: n, monotonicMs: n } }];
    store.apply([{ agentId: 'a', seq: n, receivedAtMs: n, report, body: JSON.stringify(report) }]);
  }
  // Autocheckpoint is off for the writer: 800 KB later the database file has not grown, the log holds it all.
  t.ok(statSync(file).size - before < 100_000, `the writer did not checkpoint (database ${statSync(file).size} bytes)`);
  t.ok(statSync(`${file}-wal`).size > 700_000, 'the log holds the reports');
  const deadline = Date.now() + 5000;
  while (statSync(file).size - before < 700_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  t.ok(statSync(file).size - before >= 700_000, `the checkpoint thread copied them into the database (${statSync(file).size} bytes)`);
  t.equal(store.reportCount('a'), 200);
});

t.test('what guests send is shown escaped on terminals and in logs', async (t) => {
  t.equal(printable('ok\u001b]52;c;aGVsbG8=\u0007\nforged\u202e'), 'ok\\x1b]52;c;aGVsbG8=\\x07\\x0aforged\\u202e');
  const rendered = renderFleetStatus({
    agents: 1, episodes: 0, guestsDisruptedRate: 0, spoolDropped: 0, byLastVerdict: {},
    silent: [{ agentId: 'a', hostname: 'evil\u001b[2K\rhost', lastSeen: 'x', silentForS: 1 }], perGuest: [],
    byGuest: {
      kernel: [{ value: 'kernel\u001b[2J', guests: 1, episodes: 0, disrupted: 0, disruptedRate: 0, guestsDisruptedRate: 0 }], distro: [], hypervisor: [],
    },
    byHour: [],
    byCampaign: [{ value: 'lab\u001b[2J', guests: 1, episodes: 1, disrupted: 0, guestsDisrupted: 0, guestsDisruptedRate: 0 }],
  } satisfies Parameters<typeof renderFleetStatus>[0], 10);
  t.notMatch(rendered, /\u001b|\r/, 'no control character reaches the terminal');
  t.match(rendered, /evil\\x1b\[2K\\x0dhost/);
  t.match(rendered, /kernel\\x1b\[2J/, "and a guest's kernel as its hello said it");
  t.match(rendered, /lab\\x1b\[2J/, 'and a campaign named by a migration id');
  const { port, collector } = await startCollector(t, { keyring: new ListedKeyring(new Map([['good', GOOD_KEY]])) });
  const c = await rawConnection(port);
  c.sendSigned(GOOD_KEY, helloFor('good', c.nonce, { hostname: 'line\nforged: rejected everything' }));
  t.equal((await c.closed).code, 1008, 'a hello whose hostname has a control character is refused at the edge');
  t.notOk(collector.agents.get('good'));
});

t.test('a flood of 1 000 hostile connections (idle, slow, partial large frames) from one address while 200 good agents report', async (t) => {
  const keys = new Map(Array.from({ length: 200 }, (_, i) => [`good-${i}`, agentKeyFor(FLEET_SECRET, `good-${i}`)]));
  const { collector, store, port } = await startCollector(t, { keyring: new FleetKeyring(FLEET_SECRET), helloTimeoutMs: 5000 });
  const net = await import('node:net');
  const hostile: Array<import('node:net').Socket> = [];
  t.teardown(() => hostile.forEach((s) => s.destroy()));
  for (let i = 0; i < 1000; i += 1) {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.3' });
    socket.on('error', () => undefined);
    hostile.push(socket);
    const kind = i % 3;
    socket.once('connect', () => {
      if (kind === 0) return; // idle: never upgrades
      socket.write(`GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
      // A masked text frame header announcing 1 MiB, then a trickle (slow) or a partial 12 KiB body (large).
      const header = Buffer.from([0x81, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4]);
      socket.once('data', () => socket.write(Buffer.concat([header, Buffer.alloc(kind === 1 ? 10 : 12 * 1024, 0x61)])));
    });
  }
  const agents = [...keys].map(([id, key]) => inProcessAgent(t, `ws://127.0.0.1:${port}`, id, key));
  await until('200 good agents connected', () => collector.connectedAgents >= 200, 60_000);
  agents.forEach((a, i) => a.client.sendReport(sampleReport(`good-${i}`, 1)));
  await until('every good agent\'s report stored', () => [...keys.keys()].every((id) => store.lastSeq(id) >= 1), 60_000);
  t.equal(collector.connectedAgents, 200, 'all 200 served');
  t.ok([...keys.keys()].every((id) => collector.agents.get(id)!.connections === 1), 'none disconnected');
  t.ok(process.memoryUsage().rss < 1024 ** 3, `rss ${Math.round(process.memoryUsage().rss / 1024 ** 2)} MiB with the flood held open`);
});

t.test('a peer refused as busy that sends an oversize frame anyway cannot throw out of the collector', async (t) => {
  const { collector, store, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['good', GOOD_KEY]])), maxPendingPerAddress: 1, helloTimeoutMs: 10_000 });
  const net = await import('node:net');
  const sockets: Array<import('node:net').Socket> = [];
  t.teardown(() => sockets.forEach((s) => s.destroy()));
  const upgrade = 'GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n';
  // A masked text frame header announcing 1 MiB, written together with the upgrade: it is there before any refusal.
  const header = Buffer.from([0x81, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4]);
  for (let i = 0; i < 5; i += 1) {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.4' });
    socket.on('error', () => undefined);
    socket.once('connect', () => socket.write(Buffer.concat([Buffer.from(upgrade), header, Buffer.alloc(100, 0x61)])));
    sockets.push(socket);
  }
  await until('the busy refusals', () => collector.rejected >= 4);
  await new Promise((resolve) => setTimeout(resolve, 500));
  const good = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'good', GOOD_KEY);
  good.client.sendReport(sampleReport('good', 1));
  await until('the collector still serving', () => store.lastSeq('good') >= 1);
  t.pass('alive');
});
