// Ping/pong liveness on both ends: the collector drops a peer that stops answering pings; the agent replaces a
// connection on which the collector has gone silent. Real sockets on loopback.
import t, { type Test } from 'tap';
import net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { ListedKeyring } from '../../../harness/collector/keyring.js';
import { signFrame } from '../../../contract/frame-signing.js';
import { freePort, helloFor, inProcessAgent, rawConnection, startCollector, until } from '../../helpers/collector-fixtures.js';
import { MigrationAnnouncer } from '../../../harness/collector/migration-announcer.js';

const KEY = 'e'.repeat(64);

t.test('the collector terminates a connection that stays silent past its limit, and not before (a frozen guest is silent)', async (t) => {
  const { collector, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['mute', KEY]])), pingIntervalMs: 100, silenceLimitMs: 1500 });
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { autoPong: false });
  ws.on('error', () => undefined);
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  ws.once('message', (data) => {
    const { nonce } = JSON.parse(data.toString()) as { nonce: string };
    ws.send(signFrame(KEY, nonce, JSON.stringify(helloFor('mute', nonce))));
  });
  await until('hello', () => collector.agents.get('mute'));
  t.equal(collector.connectedAgents, 1);
  await new Promise((resolve) => setTimeout(resolve, 700));
  t.equal(ws.readyState, WebSocket.OPEN, 'still connected after seven unanswered pings');
  t.equal(await closed, 1006, 'cut without a close handshake, as a dead peer would be');
  await until('forgotten', () => collector.connectedAgents === 0);
  t.pass('no longer counted as connected');
});

t.test('the agent replaces a connection on which the collector has gone silent', async (t) => {
  const port = await freePort();
  const server = new WebSocketServer({ host: '127.0.0.1', port, autoPong: true });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  let connections = 0;
  server.on('connection', (ws) => {
    connections += 1;
    // A challenge, then nothing ever again: no acks, no pings, no probes.
    ws.send(JSON.stringify({ type: 'challenge', protocol: 2, nonce: '1'.repeat(32) }));
  });
  const agent = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'patient', null, undefined, 600);
  await until('a second connection', () => connections >= 2, 10_000);
  t.ok(connections >= 2, `the agent reconnected on its own (${connections} connections)`);
  agent.client.close();
});

t.test("an announcement made while the agent is away is given to it when it reconnects (a guest frozen by a save/restore loses its connection across exactly that migration)", async (t) => {
  const { collector, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['frozen', KEY]])) });
  t.equal(new MigrationAnnouncer(collector).announce('frozen', 'finished', 'm-7'), false, 'not connected: not sent now');
  const { ws, nonce, sendSigned } = await rawConnection(port);
  const received: Array<Record<string, unknown>> = [];
  // Collector frames after the challenge are "<mac> <json>", signed with the agent's key.
  ws.on('message', (data) => received.push(JSON.parse(data.toString().replace(/^[0-9a-f]{64} /, '')) as Record<string, unknown>));
  sendSigned(KEY, helloFor('frozen', nonce));
  await until('the replayed announcement', () => received.find((m) => m.type === 'announce'));
  t.match(received.find((m) => m.type === 'announce'), { phase: 'finished', migrationId: 'm-7' });
  t.equal(received.findIndex((m) => m.type === 'ack') < received.findIndex((m) => m.type === 'announce'), true, 'after the ack, like any announcement');
  ws.close();
});

/**
 * A TCP relay between agent and collector that can hold back what the collector sends, as the collector's own TCP
 * does after a guest's long freeze: what it sent into the freeze waits for a backed-off retransmission timer.
 */
async function relay(t: Test, to: number) {
  const port = await freePort();
  const state = { holding: false, connections: 0 };
  const server = net.createServer((agentSide) => {
    state.connections += 1;
    const holdThis = () => state.holding;
    const collectorSide = net.connect(to, '127.0.0.1');
    agentSide.pipe(collectorSide);
    collectorSide.on('data', (chunk) => {
      if (!holdThis()) agentSide.write(chunk);
    });
    const end = () => {
      agentSide.destroy();
      collectorSide.destroy();
    };
    agentSide.on('error', end).on('close', end);
    collectorSide.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { port, state };
}

/** Blocks this process's event loop, as a paused guest's agent is: its timers fire late, its realtime jumps. */
function freezeFor(ms: number) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    // busy: nothing else in this process runs
  }
}

t.test("after a pause, a connection whose collector side has stalled is replaced at once, and that is not a reset", async (t) => {
  const { collector, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['thawed', KEY]])) });
  const { port: relayPort, state } = await relay(t, port);
  const lost: string[] = [];
  const replaced: string[] = [];
  inProcessAgent(t, `ws://127.0.0.1:${relayPort}`, 'thawed', KEY, undefined, 45_000, {
    onConnectionLost: (detail) => lost.push(detail),
    onConnectionReplaced: (detail) => replaced.push(detail),
    resumeCheckMs: 1500,
  });
  await until('hello', () => collector.agents.get('thawed'));

  freezeFor(4500); // a pause, with nothing held back: the check's ping is answered and the connection kept
  await new Promise((resolve) => setTimeout(resolve, 3000));
  t.equal(state.connections, 1, 'a pause alone does not replace a healthy connection');

  state.holding = true; // from now on the old connection hears nothing from the collector
  freezeFor(4500);
  await until('a new connection', () => state.connections >= 2, 10_000);
  state.holding = false;
  await until('the new connection greeted', () => collector.agents.get('thawed')!.connections >= 2, 10_000);
  t.same(lost, [], 'no connection reported lost');
  t.match(replaced, [/after this guest was paused: the connection stalled/], 'one reported replaced, and why');
});

t.test("the store learns when a quiet agent was last heard from (its pongs), and a frozen one's stops moving", async (t) => {
  const { store, port } = await startCollector(t, { keyring: new ListedKeyring(new Map([['quiet', KEY]])), pingIntervalMs: 100, livenessIntervalMs: 100 });
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  ws.on('error', () => undefined);
  t.teardown(() => ws.terminate());
  ws.once('message', (data) => {
    const { nonce } = JSON.parse(data.toString()) as { nonce: string };
    ws.send(signFrame(KEY, nonce, JSON.stringify(helloFor('quiet', nonce))));
  });
  const helloSeen = await until('registered', () => store.lastSeenMs('quiet'));
  // It sends nothing after its hello; only its pongs (ws answers pings by itself) say it is alive.
  const later = await until('heard from after the hello', () => {
    const seen = store.lastSeenMs('quiet');
    return seen !== null && seen > helloSeen + 300 ? seen : null;
  });
  t.ok(later > helloSeen, 'last seen moved forward without a message');
  ws.pause();
  // Paused: no pong is read or sent, as for a frozen guest.
  (ws as unknown as { _socket: net.Socket })._socket.pause();
  await new Promise((resolve) => setTimeout(resolve, 300));
  const frozenAt = store.lastSeenMs('quiet')!;
  await new Promise((resolve) => setTimeout(resolve, 800));
  t.ok(store.lastSeenMs('quiet')! - frozenAt < 250, 'a peer that stopped answering is not seen as alive');
});
