// Regressions for what a hostile peer did to the collector and the agent: each a real collector (or a real
// CollectorClient against a hand-driven WebSocket server) on loopback.
import t from 'tap';
import { WebSocketServer } from 'ws';
import type { AddressInfo } from 'node:net';
import { ListedKeyring, FleetKeyring } from '../../../harness/collector/keyring.js';
import { agentKeyFor, signCollectorFrame, signFrame, verifyCollectorFrame } from '../../../agent/protocol/frame-signing.js';
import { jsonDepthExceeds } from '../../../agent/protocol/messages.js';
import { closeReason } from '../../../harness/collector/collector-server.js';
import { helloFor, inProcessAgent, rawConnection, sampleReport, startCollector, until } from '../../helpers/collector-fixtures.js';

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
  collector.announce('good', 'starting', 'm-1');
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
