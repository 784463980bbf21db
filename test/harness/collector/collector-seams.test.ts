// The parts the collector server is made of, each without a socket: the frame check (signature, order, schema), the
// admission of connections waiting for their hello, and the batch that commits before it acknowledges.
import t from 'tap';
import { authenticateFrame, type ConnectionCredentials } from '../../../harness/collector/frame-authenticator.js';
import { HelloAdmission } from '../../../harness/collector/hello-admission.js';
import { IngestBatch, type BatchedItem } from '../../../harness/collector/ingest-batch.js';
import { CollectorMetrics } from '../../../harness/collector/collector-metrics.js';
import { RateLimitedLog } from '../../../harness/collector/rate-limited-log.js';
import type { AgentRecord } from '../../../harness/collector/agent-record.js';
import { ClockOffsetTracker } from '../../../contract/clock-offset.js';
import { agentKeyFor, signFrame } from '../../../contract/frame-signing.js';
import { ProtocolError, type HelloMessage } from '../../../contract/messages.js';
import { helloFor } from '../../helpers/collector-fixtures.js';

const NONCE = '0123456789abcdef0123456789abcdef';
const KEY = agentKeyFor('fleet secret', 'agent-a');
const keyring = { keyFor: (id: string) => (id === 'agent-a' ? KEY : null) };
const fresh = (): ConnectionCredentials => ({ nonce: NONCE, key: null, helloAccepted: false });
const ack = { type: 'time-reply', id: 1, t1: 1, t2: 2, t3: 3 };
const reason = (r: string) => (error: unknown) => error instanceof ProtocolError && error.reason === r;

t.test('a frame check: a signed hello first, then frames signed with its key; each refusal with its reason', async (t) => {
  const credentials = fresh();
  t.throws(() => authenticateFrame(keyring, credentials, signFrame(KEY, NONCE, JSON.stringify(ack))), new ProtocolError('time-reply before hello', 'no-hello'));
  const unknown = JSON.stringify(helloFor('agent-b', NONCE));
  t.ok(throwsWith(() => authenticateFrame(keyring, fresh(), signFrame(KEY, NONCE, unknown)), 'unknown-agent'), 'an agent the keyring does not know');
  const hello = JSON.stringify(helloFor('agent-a', NONCE));
  t.ok(throwsWith(() => authenticateFrame(keyring, fresh(), signFrame(agentKeyFor('other secret', 'agent-a'), NONCE, hello)), 'bad-signature'), 'signed with another key');
  t.ok(throwsWith(() => authenticateFrame(keyring, fresh(), signFrame(KEY, 'f'.repeat(32), hello)), 'bad-signature'), "signed over another connection's challenge");
  const otherNonce = JSON.stringify(helloFor('agent-a', 'f'.repeat(32)));
  t.ok(throwsWith(() => authenticateFrame(keyring, fresh(), signFrame(KEY, NONCE, otherNonce)), 'bad-signature'), "naming another connection's challenge");
  t.equal(credentials.helloAccepted, false, 'no refusal leaves a connection authenticated');

  const accepted = authenticateFrame(keyring, credentials, signFrame(KEY, NONCE, hello)) as HelloMessage;
  t.equal(accepted.agentId, 'agent-a');
  t.same(credentials, { nonce: NONCE, key: KEY, helloAccepted: true }, 'the key is learnt on the hello');
  t.match(authenticateFrame(keyring, credentials, signFrame(KEY, NONCE, JSON.stringify(ack))), ack);
  t.ok(throwsWith(() => authenticateFrame(keyring, credentials, JSON.stringify(ack)), 'unsigned'), 'an unsigned frame after the hello');
  t.ok(throwsWith(() => authenticateFrame(keyring, credentials, signFrame(agentKeyFor('other secret', 'agent-a'), NONCE, JSON.stringify(ack))), 'bad-signature'), 'a frame signed with another key after the hello');
  t.ok(throwsWith(() => authenticateFrame(keyring, credentials, signFrame(KEY, NONCE, hello)), 'protocol'), 'a second hello');
  t.ok(throwsWith(() => authenticateFrame(keyring, credentials, signFrame(KEY, NONCE, JSON.stringify({ ...ack, t1: 'x' }))), 'schema'), 'a frame off the schema');
});

t.test('without a keyring frames are plain JSON, checked against the schema all the same', async (t) => {
  const credentials = fresh();
  t.match(authenticateFrame(null, credentials, JSON.stringify(helloFor('anyone', NONCE))), { type: 'hello', agentId: 'anyone' });
  t.same(credentials, { nonce: NONCE, key: null, helloAccepted: true });
  t.match(authenticateFrame(null, credentials, JSON.stringify(ack)), ack);
  t.ok(throwsWith(() => authenticateFrame(null, credentials, '{"type":"report"'), 'malformed'), 'not JSON');
});

t.test("hellos of protocols 2, 3 and 4 are accepted, 3's guest checked in full, 4's instance by its form; any other protocol is refused by number first", async (t) => {
  const guest = { distro: 'Debian GNU/Linux', release: '12 (bookworm)', kernel: '6.1.0-28-cloud-amd64', arch: 'x64', virtual: true, hypervisor: 'KVM' };
  const check = (extra: Record<string, unknown>) => () => authenticateFrame(null, fresh(), JSON.stringify(helloFor('anyone', NONCE, extra)));
  t.match(check({ protocol: 3, guest })(), { protocol: 3, guest });
  t.match(check({ protocol: 3 })(), { protocol: 3 }, 'an agent that could not read its guest says nothing of it');
  t.match(check({ protocol: 2 })(), { protocol: 2 });
  t.match(check({ protocol: 4, guest, instance: '0123456789abcdef' })(), { protocol: 4, instance: '0123456789abcdef' });
  t.ok(throwsWith(check({ protocol: 4, guest, instance: 'x\u001b[2J' }), 'schema'), 'an instance is 16 hex digits, nothing else');
  t.throws(check({ protocol: 5, guest: { ...guest, gpu: 'x' }, newField: 1 }), new ProtocolError('unsupported protocol 5 (this collector speaks 2, 3, 4)', 'protocol'), 'a newer agent learns what is spoken here, not which field is unknown');
  t.ok(throwsWith(check({ protocol: 1 }), 'protocol'));
  t.ok(throwsWith(check({ protocol: 3, guest: { ...guest, kernel: 'x\u001b[2J' } }), 'schema'), 'a control character in what the guest says');
  t.ok(throwsWith(check({ protocol: 3, guest: { ...guest, distro: 'D'.repeat(129) } }), 'schema'), 'longer than its bound');
  t.ok(throwsWith(check({ protocol: 3, guest: { ...guest, serial: 'X' } }), 'schema'), 'a field the guest has no business sending');
  t.ok(throwsWith(check({ protocol: 3, guest: { distro: 'Debian' } }), 'schema'), 'a guest with fields missing');
});

t.test('admission: so many waiting in all, so many from one address; a freed slot can be taken again', async (t) => {
  const seen: number[] = [];
  const admission = new HelloAdmission(3, 2, (n) => seen.push(n));
  t.equal(admission.admit('10.0.0.1'), null);
  t.equal(admission.admit('10.0.0.1'), null);
  t.equal(admission.admit('10.0.0.1'), 'more than 2 connections from 10.0.0.1 waiting for their hello');
  t.equal(admission.admit('10.0.0.2'), null, 'another address still gets in');
  t.equal(admission.admit('10.0.0.3'), 'more than 3 connections waiting for their hello');
  admission.release('10.0.0.1');
  t.equal(admission.pending, 2);
  t.equal(admission.admit('10.0.0.3'), null);
  t.same(seen, [1, 2, 3, 2, 3], 'every change is reported (the pending gauge)');
});

function agent(agentId: string): AgentRecord {
  return { agentId, hello: helloFor(agentId, NONCE) as unknown as HelloMessage, connections: 1, observations: [], reports: [], offsets: new ClockOffsetTracker(), appliedSeq: 0, storedSeq: 0 };
}

t.test('a batch commits once a turn, then acknowledges; a failed commit acknowledges nothing and disconnects its agents', async (t) => {
  const a = agent('a');
  const b = agent('b');
  const applied: number[] = [];
  let failNext = false;
  const events: string[] = [];
  const store = {
    apply: (items: readonly BatchedItem[]) => {
      if (failNext) throw new Error('disk full');
      applied.push(items.length);
      return items.length;
    },
    lastSeq: (id: string) => (id === 'a' ? 1 : 0),
  };
  const logged: string[] = [];
  const batch = new IngestBatch(store, new CollectorMetrics(), new RateLimitedLog((line) => logged.push(line)), {
    acknowledge: (x) => events.push(`ack ${x.agentId} ${x.storedSeq}`),
    disconnect: (x) => events.push(`disconnect ${x.agentId}`),
    committed: (items) => events.push(`committed ${items.length}`),
  });
  const item = (x: AgentRecord, seq: number): BatchedItem => ({ agentId: x.agentId, seq, receivedAtMs: 0, report: null, body: null, agent: x });
  a.appliedSeq = 2;
  batch.add(item(a, 1));
  batch.add(item(a, 2));
  b.appliedSeq = 1;
  batch.add(item(b, 1));
  t.same(applied, [], 'nothing before the turn ends');
  await new Promise((resolve) => setImmediate(resolve));
  t.same(applied, [3], 'one transaction for the turn');
  t.same(events, ['committed 3', 'ack a 2', 'ack b 1'], 'acknowledged after the commit, once an agent');

  events.length = 0;
  batch.acknowledgeLater(b);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(events, ['ack b 1'], 'a duplicate is acknowledged again without a commit');

  events.length = 0;
  failNext = true;
  a.appliedSeq = 3;
  batch.add(item(a, 3));
  batch.acknowledgeLater(b);
  await batch.flush();
  t.same(events, ['disconnect a'], 'nothing acknowledged, the agent whose data was lost is let go');
  t.equal(a.appliedSeq, 1, 'and falls back to what the store holds');
  t.equal(a.storedSeq, 1, 'which is all a later ack may cover');
  t.match(logged, [/store write failed, 1 messages not acknowledged: disk full/]);
});

function throwsWith(fn: () => unknown, expected: string): boolean {
  try {
    fn();
    return false;
  } catch (error) {
    return reason(expected)(error);
  }
}
