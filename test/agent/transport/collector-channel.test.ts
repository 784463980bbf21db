// The agent (real bundle, real process) and the collector (real server) talking over loopback.
import t, { type Test } from 'tap';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket, { WebSocketServer } from 'ws';
import { CollectorServer, type AgentRecord } from '../../../harness/collector/collector-server.js';
import { startAgent } from '../../helpers/agent-process.js';

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startCollector(t: Test, port: number, lines: string[] = []): Promise<CollectorServer> {
  const collector = new CollectorServer({ host: '127.0.0.1', port, timeProbeIntervalMs: 50, log: (l) => lines.push(l) });
  await collector.start();
  t.teardown(() => collector.stop());
  return collector;
}

async function until<T>(what: string, probe: () => T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

t.test('an unreachable collector: the agent keeps retrying, then delivers everything it queued, in order', async (t) => {
  const port = await freePort();
  const agent = startAgent(t, ['run', '--collector', `ws://127.0.0.1:${port}`, '--agent-id', 'vm-1', '--probes', 'clock']);
  await until('a retry line', () => agent.stderr.join('').includes('retrying in'));
  t.match(agent.stderr.join(''), /collector ws:\/\/127\.0\.0\.1:\d+\/: .*ECONNREFUSED.*; retrying in [\d.]+ s \(\d+ queued\)/);
  t.equal(agent.child.exitCode, null, 'the agent is still running');

  const collector = await startCollector(t, port);
  const record = await until('the hello', () => collector.agents.get('vm-1'));
  await until('queued observations', () => record.observations.length >= 2 && record);
  const seqs = record.observations.map((o) => o.seq);
  t.same(seqs, seqs.map((_, i) => i + 1), 'sequence numbers start at 1 with no gap');
  const kinds = record.observations.map((o) => o.observation.kind);
  t.ok(kinds.includes('clock') && kinds.includes('probe-status'), 'what was seen while disconnected arrived');
  await until('time replies', () => record.offsets.samples.length >= 3);
  const offset = record.offsets.offsetBetween(0, Number.MAX_SAFE_INTEGER)!;
  t.ok(Math.abs(offset.offsetMs) < 5, `same host, same clock: offset ${offset.offsetMs.toFixed(2)} ms is near zero`);
});

t.test('bad frames close only the offending connection, with a reason, and are counted', async (t) => {
  const port = await freePort();
  const lines: string[] = [];
  const collector = await startCollector(t, port, lines);
  const good = startAgent(t, ['run', '--collector', `ws://127.0.0.1:${port}`, '--agent-id', 'good', '--probes', 'clock']);
  const goodRecord: AgentRecord = await until('the good agent', () => collector.agents.get('good'));

  const attempts: Array<[string, string | Buffer, number, RegExp]> = [
    ['not JSON', '{"type": "hello", ', 1008, /not JSON/],
    ['an array', '[1,2,3]', 1008, /not a JSON object/],
    ['an unknown type', JSON.stringify({ type: 'reboot-the-guest' }), 1008, /unknown message type/],
    ['an observation before hello', JSON.stringify({ type: 'observation', seq: 1, observation: { kind: 'clock', at: { realtimeMs: 1, monotonicMs: 1 } } }), 1008, /before hello/],
    ['a hello of a future protocol', JSON.stringify({ type: 'hello', protocol: 99, agentId: 'x', hostname: 'x', agentVersion: '1' }), 1008, /unsupported protocol 99/],
    ['a binary frame', Buffer.from([0xde, 0xad, 0xbe, 0xef]), 1008, /binary frames/],
    ['an oversized frame', 'x'.repeat(1100 * 1024), 1009, /./],
  ];
  for (const [what, frame, expectedCode, reason] of attempts) {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`);
    await new Promise((resolve) => ws.once('open', resolve));
    const closed = new Promise<[number, string]>((resolve) => ws.once('close', (code, r) => resolve([code, r.toString()])));
    ws.on('error', () => undefined);
    ws.send(frame);
    const [code, text] = await closed;
    t.equal(code, expectedCode, `${what}: closed with ${expectedCode}`);
    if (expectedCode === 1008) t.match(text, reason, `${what}: the reason says why`);
  }
  t.equal(collector.rejected, 6, 'each policy violation was counted');
  t.ok(lines.some((l) => /rejected a frame .*not JSON/.test(l)), 'and logged');
  const before = goodRecord.offsets.samples.length;
  await until('the good agent still answering', () => goodRecord.offsets.samples.length > before + 2);
  t.equal(good.child.exitCode, null);
});

t.test('the agent ignores anything from the collector but time probes, and says so', async (t) => {
  const port = await freePort();
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const replies: unknown[] = [];
  server.on('connection', (ws) => {
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'hello') {
        ws.send(JSON.stringify({ type: 'flush-firewall' }));
        ws.send('garbage');
        ws.send(JSON.stringify({ type: 'time-probe', id: 7, t1: 123 }));
      }
      if (message.type === 'time-reply') replies.push(message);
    });
  });
  const agent = startAgent(t, ['run', '--collector', `ws://127.0.0.1:${port}`, '--probes', 'clock']);
  await until('the time reply', () => replies.length > 0);
  t.match(replies[0], { type: 'time-reply', id: 7, t1: 123 });
  await until('the log lines', () => (agent.stderr.join('').match(/ignored a message/g) ?? []).length >= 2);
  t.match(agent.stderr.join(''), /unexpected message type "flush-firewall"/);
  t.equal(agent.child.exitCode, null, 'still running');
});
