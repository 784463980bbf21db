// A real collector on loopback under hostile input, while a good agent (the real CollectorClient and Spool, in this
// process) keeps reporting. "mallory" is a provisioned guest with a valid key of its own that misbehaves; the other
// attackers have no key at all.
import t from 'tap';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { ListedKeyring } from '../../../harness/collector/keyring.js';
import { signFrame } from '../../../contract/frame-signing.js';
import { freePort, helloFor, inProcessAgent, rawConnection, sampleReport, startCollector, until } from '../../helpers/collector-fixtures.js';
import { SAMPLE_OBSERVATIONS } from '../../helpers/observation-samples.js';

const GOOD_KEY = 'a'.repeat(64);
const MALLORY_KEY = 'b'.repeat(64);
const keyring = new ListedKeyring(new Map([['good', GOOD_KEY], ['mallory', MALLORY_KEY]]));
const observation = (seq: number, extra: Record<string, unknown> = {}) => ({
  type: 'observation', seq, observation: SAMPLE_OBSERVATIONS.clock, ...extra,
});

t.test('hostile inputs are each refused with their reason, counted, and the good agent is served throughout', async (t) => {
  const lines: string[] = [];
  const { collector, store, port } = await startCollector(t, { keyring, helloTimeoutMs: 500, maxPending: 20, maxFramesPerSecond: 300 }, lines);
  const good = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'good', GOOD_KEY);
  await until('the good agent', () => collector.agents.get('good'));
  let sent = 0;
  const feeder = setInterval(() => good.client.sendReport(sampleReport('good', ++sent)), 20);
  t.teardown(() => clearInterval(feeder));

  /** Connects as mallory (authenticated) and returns the connection ready for abuse. */
  const asMallory = async () => {
    const c = await rawConnection(port);
    c.sendSigned(MALLORY_KEY, helloFor('mallory', c.nonce));
    await until('mallory welcomed', () => collector.agents.get('mallory'));
    return c;
  };

  type Case = [name: string, reason: string, act: () => Promise<{ closed: Promise<{ code: number; reason: string }> }>, code?: number];
  const captured = await rawConnection(port);
  const capturedHello = signFrame(GOOD_KEY, captured.nonce, JSON.stringify(helloFor('good', captured.nonce)));
  captured.ws.close();

  const cases: Case[] = [
    ['unsigned hello', 'unsigned', async () => { const c = await rawConnection(port); c.send(JSON.stringify(helloFor('good', c.nonce))); return c; }],
    ['binary junk as text', 'unsigned', async () => { const c = await rawConnection(port); c.send('\u0000\u0001garbage'); return c; }],
    ['empty frame', 'unsigned', async () => { const c = await rawConnection(port); c.send(''); return c; }],
    ['hello signed with a wrong key', 'bad-signature', async () => { const c = await rawConnection(port); c.sendSigned('c'.repeat(64), helloFor('good', c.nonce)); return c; }],
    ['hello of an unknown agent', 'unknown-agent', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, helloFor('eve', c.nonce)); return c; }],
    ['mallory forging a hello as good', 'bad-signature', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, helloFor('good', c.nonce)); return c; }],
    ['a captured hello replayed on a new connection', 'bad-signature', async () => { const c = await rawConnection(port); c.send(capturedHello); return c; }],
    ['a hello naming another connection\'s nonce', 'bad-signature', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, helloFor('mallory', 'f'.repeat(32))); return c; }],
    ['an observation before hello', 'no-hello', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, observation(1)); return c; }],
    ['a binary frame', 'binary', async () => { const c = await rawConnection(port); c.send(Buffer.from([0xde, 0xad, 0xbe, 0xef])); return c; }],
    ['an oversized frame', 'oversize', async () => { const c = await rawConnection(port); c.send('x'.repeat(1100 * 1024)); return c; }, 1009],
    ['invalid UTF-8 in a text frame', 'malformed', async () => { const c = await rawConnection(port); (c.ws as unknown as { send: (d: Buffer, o: object) => void }).send(Buffer.from([0xff, 0xfe, 0xfd]), { binary: false }); return c; }, 1007],
    ['silence: no hello', 'hello-timeout', async () => rawConnection(port)],
    ['a hello of a future protocol', 'protocol', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, helloFor('mallory', c.nonce, { protocol: 99 })); return c; }],
    ['a hello missing machineId', 'schema', async () => { const c = await rawConnection(port); const h = helloFor('mallory', c.nonce); delete h.machineId; c.sendSigned(MALLORY_KEY, h); return c; }],
    ['a hello with an extra field', 'schema', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, helloFor('mallory', c.nonce, { admin: true })); return c; }],
    ['a hello with a malformed MAC address', 'schema', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, helloFor('mallory', c.nonce, { macs: ['not-a-mac'] })); return c; }],
    ['a JSON array', 'malformed', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, '[1,2,3]'); return c; }],
    ['JSON null', 'malformed', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, 'null'); return c; }],
    ['malformed JSON', 'malformed', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, '{"type": "hello", '); return c; }],
    // After the hello: before it, a frame this size is refused as oversize (16 KiB) without being read.
    ['deeply nested JSON', 'malformed', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, '['.repeat(500_000)); return c; }],
    ['a frame over 16 KiB before the hello', 'oversize', async () => { const c = await rawConnection(port); c.sendSigned(MALLORY_KEY, '['.repeat(20_000)); return c; }, 1009],
    ['a second hello on one connection', 'protocol', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, helloFor('mallory', c.nonce)); return c; }],
    ['an unknown message type', 'schema', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, { type: 'flush-firewall' }); return c; }],
    ['a type that is not a string', 'schema', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, { type: 42 }); return c; }],
    ['seq 0', 'schema', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, observation(0)); return c; }],
    ['a fractional seq', 'schema', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, observation(1.5)); return c; }],
    ['an observation without stamps', 'schema', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, { type: 'observation', seq: 1, observation: { kind: 'clock' } }); return c; }],
    ['a report that breaks flinch.report/v1', 'schema', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, { type: 'report', seq: 1, report: { ...sampleReport('mallory', 1), verdict: 'fine' } }); return c; }],
    ['a report with an oversized field', 'schema', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, { type: 'report', seq: 1, report: { ...sampleReport('mallory', 1), hostname: 'h'.repeat(5000) } }); return c; }],
    ['a time reply with an absurd stamp', 'schema', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, { type: 'time-reply', id: 1, t1: 1e300, t2: 0, t3: 0 }); return c; }],
    ['a seq replayed on one connection', 'seq-replay', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, observation(1_000_001)); c.sendSigned(MALLORY_KEY, observation(1_000_001)); return c; }],
    ['a seq going backwards', 'seq-replay', async () => { const c = await asMallory(); c.sendSigned(MALLORY_KEY, observation(2_000_006)); c.sendSigned(MALLORY_KEY, observation(2_000_003)); return c; }],
    ['a frame tampered with after signing', 'bad-signature', async () => {
      const c = await asMallory();
      const json = JSON.stringify(observation(3_000_001));
      const signed = signFrame(MALLORY_KEY, c.nonce, json);
      c.send(signed.replace('"clock"', '"kmsg"'));
      return c;
    }],
    ['a frame signed for an earlier connection', 'bad-signature', async () => {
      const c = await asMallory();
      c.sendSigned(MALLORY_KEY, observation(4_000_001), 'e'.repeat(32));
      return c;
    }],
    ['a flood', 'rate-limit', async () => {
      const c = await asMallory();
      for (let i = 1; i <= 2000 && c.ws.readyState === WebSocket.OPEN; i += 1) c.sendSigned(MALLORY_KEY, observation(5_000_000 + i));
      return c;
    }],
  ];

  for (const [name, reason, act, code = 1008] of cases) {
    const before = collector.rejected;
    const { closed } = await act();
    const result = await Promise.race([closed, sleep(8000).then(() => ({ code: -1, reason: 'still open after 8 s' }))]);
    t.equal(result.code, code, `${name}: closed with ${code}`);
    if (code === 1008) t.match(result.reason, new RegExp(`^${reason}: `), `${name}: the close says "${reason}"`);
    await until(`${name} counted`, () => collector.rejected > before);
    const counted = (await collector.metrics.rejected.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
    t.ok(counted >= 1, `${name}: flinch_rejected_total{reason="${reason}"} counts it`);
  }

  t.test('slow-loris: a connection that never finishes its HTTP upgrade is cut by the server', async (t) => {
    for (const partial of ['', 'GET / HTTP/1.1\r\nHost: x\r\n']) {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => undefined);
      await new Promise((resolve) => socket.once('connect', resolve));
      if (partial) socket.write(partial);
      const started = Date.now();
      const trickle = setInterval(() => socket.writable && socket.write('X-Slow: 1\r\n'), 1000);
      await Promise.race([new Promise((resolve) => socket.once('close', resolve)), sleep(20_000)]);
      clearInterval(trickle);
      t.ok(socket.destroyed, `${partial ? 'trickled headers' : 'silent connection'} closed by the server after ${Date.now() - started} ms`);
    }
  });

  t.test('too many connections waiting for their hello: the next is told to come back later', async (t) => {
    const held = await Promise.all(Array.from({ length: 20 }, () => rawConnection(port).catch(() => null)));
    const next = new WebSocket(`ws://127.0.0.1:${port}`);
    next.on('error', () => undefined);
    const result = await new Promise<{ code: number; reason: string }>((resolve) => next.once('close', (code, reason) => resolve({ code, reason: reason.toString() })));
    t.equal(result.code, 1013);
    t.match(result.reason, /^busy: /);
    for (const c of held) c?.ws.terminate();
  });

  t.test('plain HTTP gets 426 and no WebSocket', async (t) => {
    const response = await fetch(`http://127.0.0.1:${port}/`);
    t.equal(response.status, 426);
  });

  t.test('the good agent was never disconnected, and every report it sent is stored exactly once', async (t) => {
    clearInterval(feeder);
    const record = collector.agents.get('good')!;
    t.equal(record.connections, 1, 'one connection all along');
    await until('all reports acknowledged', () => good.spool.unacked.length === 0 && sent > 0);
    t.equal(store.reportCount('good'), sent, `${sent} reports sent, ${sent} stored`);
    t.same(store.reports('good').map((r) => r.seq), Array.from({ length: sent }, (_, i) => i + 1), 'seq 1..N, no gap, no duplicate');
    t.equal(store.reportCount('mallory'), 0, "nothing of mallory's invalid reports was stored");
    t.ok(lines.length < 150, `the log stayed bounded (${lines.length} lines for ${collector.rejected} rejections)`);
  });
  t.ok(cases.length >= 30, `${cases.length} hostile frame cases, plus slow-loris, busy and plain HTTP`);
});

t.test('a collector that cannot listen, or is given no way to authenticate, says so', async (t) => {
  const { runCollector } = await import('../../../harness/collector/run-collector.js');
  const port = await freePort();
  await t.rejects(runCollector({ listen: `127.0.0.1:${port}`, store: ':memory:', noAuth: false, timeProbeIntervalMs: 1000 }, () => undefined), /agents must authenticate/);
  await t.rejects(runCollector({ listen: 'nonsense', store: ':memory:', noAuth: true, timeProbeIntervalMs: 1000 }, () => undefined), /--listen: "nonsense" is not HOST:PORT/);
});
