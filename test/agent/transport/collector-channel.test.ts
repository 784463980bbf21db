// The agent (the real bundle, a real process) and the collector (the real server) over loopback.
import t from 'tap';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WebSocketServer } from 'ws';
import { runCommand } from '../../../system/run-command.js';
import { agentKeyFor } from '../../../contract/frame-signing.js';
import { FleetKeyring } from '../../../harness/collector/keyring.js';
import { startAgent } from '../../helpers/agent-process.js';
import { collectorOrder } from '../../../agent/transport/shard.js';
import { freePort, startCollector, tempDir, until } from '../../helpers/collector-fixtures.js';

const SECRET = 'fleet-secret-for-tests-0123456789abcdef';
const keyring = new FleetKeyring(SECRET);

function tokenFile(agentId: string): string {
  const file = path.join(tempDir('flinch-token-'), 'token');
  writeFileSync(file, `${agentKeyFor(SECRET, agentId)}\n`, { mode: 0o600 });
  return file;
}

t.test('an unreachable collector: the agent keeps retrying, then delivers everything it spooled, in order, signed', async (t) => {
  const port = await freePort();
  const agent = startAgent(t, ['run', '--collector', `ws://127.0.0.1:${port}`, '--agent-id', 'vm-1', '--token-file', tokenFile('vm-1'), '--probes', 'clock']);
  await until('a retry line', () => agent.stderr.join('').includes('retrying in'));
  t.match(agent.stderr.join(''), /collector ws:\/\/127\.0\.0\.1:\d+\/: .*ECONNREFUSED.*; retrying in [\d.]+ s \(\d+ unacknowledged\)/);
  t.equal(agent.child.exitCode, null, 'the agent is still running');

  const { collector } = await startCollector(t, { keyring, port, timeProbeIntervalMs: 50 });
  const record = await until('the hello', () => collector.agents.get('vm-1'));
  t.equal(record.hello.hostname, os.hostname());
  t.match(record.hello.machineId, /^([0-9a-f]{32})?$/, 'machine-id, when the host has one');
  t.ok(record.hello.macs.every((m) => /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(m)), 'MACs');
  t.equal(record.hello.xenDomid, null, 'not a Xen guest');
  // systeminformation read this very machine: the kernel is the one running the test, the distribution its os-release.
  t.equal(record.hello.protocol, 4);
  t.match(record.hello.instance, /^[0-9a-f]{16}$/, 'the agent process, named');
  t.equal(record.hello.guest?.kernel, os.release(), "the guest's kernel");
  const osRelease = readFileSync('/etc/os-release', 'utf8');
  t.equal(record.hello.guest?.distro, /^NAME="?([^"\n]*)"?$/m.exec(osRelease)?.[1], "os-release's NAME");
  t.match(record.hello.guest?.release, new RegExp(`^${/^VERSION_ID="?([^"\n]*)"?$/m.exec(osRelease)?.[1]}`), "os-release's VERSION_ID first");
  await until('spooled observations', () => record.observations.length >= 2 && record);
  const seqs = record.observations.map((o) => o.seq);
  t.same(seqs, seqs.map((_, i) => i + 1), 'sequence numbers start at 1 with no gap');
  const kinds = record.observations.map((o) => o.observation.kind);
  t.ok(kinds.includes('clock') && kinds.includes('probe-status'), 'what was seen while disconnected arrived');
  await until('time replies', () => record.offsets.samples.length >= 3);
  const offset = record.offsets.offsetBetween(0, Number.MAX_SAFE_INTEGER)!;
  t.ok(Math.abs(offset.offsetMs) < 5, `same host, same clock: offset ${offset.offsetMs.toFixed(2)} ms is near zero`);
  t.equal(collector.rejected, 0);
});

t.test('kill -9 of the agent: the restarted agent continues its sequence from the spool, and nothing is stored twice', async (t) => {
  const { collector, store, port } = await startCollector(t, { keyring });
  const stateDir = tempDir('flinch-state-');
  const args = ['run', '--collector', `ws://127.0.0.1:${port}`, '--agent-id', 'vm-2', '--token-file', tokenFile('vm-2'), '--probes', 'clock', '--state-dir', stateDir];
  const first = startAgent(t, args);
  const record = await until('first hello', () => collector.agents.get('vm-2'));
  await until('some observations', () => record.observations.length >= 3);
  first.child.kill('SIGKILL');
  await new Promise((resolve) => first.child.once('exit', resolve));
  const before = record.appliedSeq;
  startAgent(t, args);
  await until('second hello', () => record.connections === 2);
  await until('new observations', () => record.appliedSeq > before + 2);
  const seqs = record.observations.map((o) => o.seq);
  t.same(seqs, [...new Set(seqs)].sort((a, b) => a - b), 'strictly increasing: no sequence number stored twice');
  t.equal(seqs[0], 1);
  t.ok(seqs.every((seq, i) => i === 0 || seq === seqs[i - 1]! + 1), 'and no gap: what the killed agent had not delivered came from its spool');
  t.equal(store.lastSeq('vm-2'), record.appliedSeq);
});

t.test('--collector-failover: the first collector of its order gone, the agent streams to the next', async (t) => {
  const { collector, port } = await startCollector(t, { keyring });
  const gone = `ws://127.0.0.1:${await freePort()}`;
  const alive = `ws://127.0.0.1:${port}`;
  // An id whose order puts the unreachable collector first (the agent orders the URLs as it normalised them).
  const normalised = [gone, alive].map((url) => new URL(url).href);
  const id = Array.from({ length: 64 }, (_, n) => `vm-f${n}`).find((candidate) => collectorOrder(candidate, normalised)[0] === normalised[0])!;
  const agent = startAgent(t, ['run', '--collector', gone, '--collector', alive, '--collector-failover', '--agent-id', id, '--token-file', tokenFile(id), '--probes', 'clock']);
  const record = await until('the hello at the second collector', () => collector.agents.get(id));
  await until('observations', () => record.observations.length >= 1);
  const log = agent.stderr.join('');
  t.match(log, new RegExp(`streaming to ${gone}/? \\(then ${alive}/? if it is gone\\)`), 'the agent names its order');
  t.match(log, /collector ws:\/\/127\.0\.0\.1:\d+\/?: .*ECONNREFUSED.*; moving to ws:\/\/127\.0\.0\.1/, 'and where it moved');
});

t.test('the agent ignores anything from the collector but its protocol, and says so', async (t) => {
  const port = await freePort();
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const replies: unknown[] = [];
  server.on('connection', (ws) => {
    ws.send(JSON.stringify({ type: 'challenge', protocol: 2, nonce: '0'.repeat(32) }));
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'hello') {
        ws.send(JSON.stringify({ type: 'flush-firewall' }));
        ws.send(JSON.stringify({ type: 'exec', command: 'reboot' }));
        ws.send('garbage');
        ws.send(JSON.stringify({ type: 'time-probe', id: 7, t1: 123 }));
      }
      if (message.type === 'time-reply') replies.push(message);
    });
  });
  const agent = startAgent(t, ['run', '--collector', `ws://127.0.0.1:${port}`, '--probes', 'clock']);
  await until('the time reply', () => replies.length > 0);
  t.match(replies[0], { type: 'time-reply', id: 7, t1: 123 });
  await until('the log lines', () => (agent.stderr.join('').match(/ignored a message/g) ?? []).length >= 3);
  t.match(agent.stderr.join(''), /unexpected message type "flush-firewall"/);
  t.match(agent.stderr.join(''), /unexpected message type "exec"/);
  t.equal(agent.child.exitCode, null, 'still running');
});

t.test("an older collector's protocol is answered in it: protocol 2 gets a hello without the guest, 3 without the instance; an unknown one is refused", async (t) => {
  const port = await freePort();
  const server = new WebSocketServer({ host: '127.0.0.1', port });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const hellos: Array<Record<string, unknown>> = [];
  let speaks = 2;
  server.on('connection', (ws) => {
    ws.send(JSON.stringify({ type: 'challenge', protocol: speaks, nonce: '0'.repeat(32) }));
    ws.on('message', (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === 'hello') {
        hellos.push(message);
        ws.close();
      }
    });
  });
  const agent = startAgent(t, ['run', '--collector', `ws://127.0.0.1:${port}`, '--probes', 'clock']);
  await until('a hello', () => hellos[0]);
  t.equal(hellos[0]!.protocol, 2);
  t.notOk('guest' in hellos[0]!, "protocol 2's hello has no guest: an older collector's schema refuses fields it does not know");
  t.notOk('instance' in hellos[0]!, 'nor an instance');
  speaks = 3;
  const at3 = await until('a hello in protocol 3', () => hellos.find((h) => h.protocol === 3), 20_000);
  t.ok('guest' in at3 && !('instance' in at3), "protocol 3's hello has the guest, not the instance");
  speaks = 4;
  await until('two hellos in protocol 4', () => hellos.filter((h) => h.protocol === 4).length >= 2, 20_000);
  const instances = hellos.filter((h) => h.protocol === 4).map((h) => h.instance);
  t.match(instances[0], /^[0-9a-f]{16}$/, "protocol 4's hello names the agent process");
  t.equal(new Set(instances).size, 1, 'the same process reconnecting: the same instance');
  speaks = 9;
  const before = hellos.length;
  await until('the refusal', () => /the collector speaks protocol 9, this agent 2, 3, 4/.test(agent.stderr.join('')), 20_000);
  t.ok(hellos.length - before <= 1, 'no hello to a collector of an unknown protocol (one may have been on its way)');
});

t.test('wss:// with a CA file: the agent trusts the collector it was told to, and no other', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-tls-'));
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  await runCommand('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1']);
  chmodSync(key, 0o600);
  const { collector, port } = await startCollector(t, { keyring, tls: { cert: readFileSync(cert), key: readFileSync(key) } });
  const trusting = startAgent(t, ['run', '--collector', `wss://127.0.0.1:${port}`, '--ca-file', cert, '--agent-id', 'tls-1', '--token-file', tokenFile('tls-1'), '--probes', 'clock']);
  const record = await until('hello over TLS', () => collector.agents.get('tls-1'));
  await until('data over TLS', () => record.observations.length > 0);
  t.equal(trusting.child.exitCode, null);

  const untrusting = startAgent(t, ['run', '--collector', `wss://127.0.0.1:${port}`, '--agent-id', 'tls-2', '--token-file', tokenFile('tls-2'), '--probes', 'clock']);
  await until('a certificate complaint', () => /self[- ]signed certificate/i.test(untrusting.stderr.join('')));
  t.notOk(collector.agents.get('tls-2'), 'an agent without the CA never connects');
});

t.test('the agent serves its own metrics on request, read-only', async (t) => {
  const { collector, port } = await startCollector(t, { keyring });
  const metricsPort = await freePort();
  const agent = startAgent(t, ['run', '--collector', `ws://127.0.0.1:${port}`, '--agent-id', 'm-1', '--token-file', tokenFile('m-1'), '--probes', 'clock,link', '--metrics', `127.0.0.1:${metricsPort}`]);
  await until('hello', () => collector.agents.get('m-1'));
  let body = '';
  await until('metrics with probe gauges', () => {
    void fetch(`http://127.0.0.1:${metricsPort}/metrics`).then((r) => r.text()).then((b) => (body = b), () => undefined);
    return /flinch_probe_up\{probe="clock"\} 1/.test(body) && /flinch_probe_up\{probe="link"\} 1/.test(body);
  });
  t.match(body, /# TYPE flinch_episodes_total counter/);
  t.match(body, /# TYPE flinch_remediations_total counter/);
  const post = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { method: 'POST', body: 'x' });
  t.equal(post.status, 404, 'nothing but GET /metrics');
  t.equal(agent.child.exitCode, null);
});

t.test('bad token or CA files stop the agent with the reason', async (t) => {
  const dir = tempDir('flinch-bad-');
  const loose = path.join(dir, 'token');
  writeFileSync(loose, `${'k'.repeat(64)}\n`, { mode: 0o644 });
  chmodSync(loose, 0o644);
  for (const [extra, message] of [
    [['--token-file', loose], /must not be readable by group or others/],
    [['--token-file', path.join(dir, 'absent')], /no such agent token file/],
    [['--ca-file', path.join(dir, 'absent.pem')], /cannot read the CA bundle/],
  ] as const) {
    const agent = startAgent(t, ['run', '--collector', 'ws://127.0.0.1:9', '--probes', 'clock', ...extra]);
    const code = await new Promise<number | null>((resolve) => agent.child.once('exit', resolve));
    t.equal(code, 78, `${extra.join(' ')}: exit 78`);
    t.match(agent.stderr.join(''), message);
  }
});
