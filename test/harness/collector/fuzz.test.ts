// The collector under generated hostile input. Frames are generated with fast-check (a property-based testing
// library) from the protocol's own message shapes and then mutated: truncated, bit-flipped, given long and non-ASCII
// strings, nested deep, given wrong types, huge numbers and unknown fields, and sent out of order (data before the
// hello, two hellos). Under each auth mode a real collector takes at least 10 000 such frames over many connections
// while a good agent (the real CollectorClient) keeps reporting. Pass: the collector never stops serving, the good
// agent is never disconnected, and every one of its reports is stored exactly once.
import t from 'tap';
import fc from 'fast-check';
import { FleetKeyring, ListedKeyring } from '../../../harness/collector/keyring.js';
import { agentKeyFor, signFrame } from '../../../contract/frame-signing.js';
import type { AgentKeyring } from '../../../harness/collector/frame-authenticator.js';
import { helloFor, inProcessAgent, rawConnection, sampleReport, startCollector, until } from '../../helpers/collector-fixtures.js';
import { SAMPLE_OBSERVATIONS } from '../../helpers/observation-samples.js';
import { busyMachine } from '../../helpers/exclusive.js';

await busyMachine(t);

const SEED = 20261201;
const FRAMES_PER_MODE = 10_000;

type Shape = Record<string, unknown>;

/** The protocol's messages as an attacker would start from them. */
const messageShape = (nonce: string): fc.Arbitrary<Shape> => fc.oneof(
  fc.record({ agentId: fc.string({ maxLength: 140 }), hostname: fc.string({ unit: 'grapheme', maxLength: 300 }) }).map((o) => helloFor('fuzzer', nonce, o)),
  fc.constant(helloFor('fuzzer', nonce)),
  fc.tuple(fc.nat({ max: 1000 }), fc.constantFrom(...Object.values(SAMPLE_OBSERVATIONS))).map(([seq, observation]) => ({ type: 'observation', seq, observation })),
  fc.nat({ max: 1000 }).map((seq) => ({ type: 'report', seq, report: sampleReport('fuzzer', seq) })),
  fc.record({ id: fc.integer(), t1: fc.double(), t2: fc.double(), t3: fc.double() }).map((o) => ({ type: 'time-reply', ...o })),
  fc.string({ unit: 'binary', maxLength: 300 }).map((type) => ({ type, seq: 1 })),
);

/** What an attacker does to a message's structure before it is written out. */
const structuralMutation = fc.oneof(
  fc.constant((m: Shape) => m),
  fc.tuple(fc.string({ maxLength: 20 }), fc.anything({ maxDepth: 3 })).map(([key, value]) => (m: Shape) => ({ ...m, [key]: value })),
  fc.tuple(fc.constantFrom('seq', 'agentId', 'protocol', 'nonce', 'report', 'observation', 'type'), fc.anything({ maxDepth: 2 })).map(([key, value]) => (m: Shape) => ({ ...m, [key]: value })),
  fc.constantFrom('seq', 'agentId', 'report', 'type').map((key) => (m: Shape) => {
    const copy = { ...m };
    delete copy[key];
    return copy;
  }),
  fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER * 4, 2 ** 53 + 1).map((n) => (m: Shape) => ({ ...m, seq: n })),
  fc.integer({ min: 60, max: 5000 }).map((depth) => (m: Shape) => ({ ...m, extra: JSON.parse(`${'['.repeat(depth)}${']'.repeat(depth)}`) as unknown })),
  fc.string({ unit: 'grapheme', minLength: 100, maxLength: 2000 }).map((s) => (m: Shape) => ({ ...m, agentId: s, migrationId: s })),
);

/** What an attacker does to the bytes of the frame. */
const textMutation = fc.oneof(
  { weight: 3, arbitrary: fc.constant((s: string) => s) },
  { weight: 1, arbitrary: fc.nat().map((n) => (s: string) => s.slice(0, n % (s.length + 1))) },
  {
    weight: 1,
    arbitrary: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 15 })), { minLength: 1, maxLength: 8 }).map((flips) => (s: string) => {
      const chars = [...s];
      for (const [at, bit] of flips) if (chars.length > 0) chars[at % chars.length] = String.fromCodePoint((chars[at % chars.length]!.codePointAt(0)! ^ (1 << bit)) & 0x10ffff);
      return chars.join('');
    }),
  },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4000 }).map((junk) => () => junk) },
);

/** How the frame is signed: properly, with another key, not at all, or with the MAC of another text. */
type Signing = 'right' | 'wrong-key' | 'unsigned' | 'other-text';
const signing = fc.constantFrom<Signing>('right', 'right', 'wrong-key', 'unsigned', 'other-text');

interface Mode {
  name: string;
  keyring: AgentKeyring | null;
  keyOf: (agentId: string) => string | null;
}

const LISTED = new Map([['good', 'a'.repeat(64)], ['fuzzer', 'f'.repeat(64)]]);
const SECRET = 'z'.repeat(48);
const MODES: Mode[] = [
  { name: '--agent-keys', keyring: new ListedKeyring(LISTED), keyOf: (id) => LISTED.get(id) ?? null },
  { name: '--fleet-secret', keyring: new FleetKeyring(SECRET), keyOf: (id) => agentKeyFor(SECRET, id) },
  { name: '--no-auth', keyring: null, keyOf: () => null },
];

for (const mode of MODES) {
  t.test(`${mode.name}: ${FRAMES_PER_MODE} generated hostile frames, and the good agent is served throughout`, async (t) => {
    const { collector, store, port } = await startCollector(t, { keyring: mode.keyring, helloTimeoutMs: 1000, maxFramesPerSecond: 5000 });
    const good = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'good', mode.keyOf('good'));
    await until('the good agent', () => collector.agents.get('good'));
    const connectionsAtStart = collector.agents.get('good')!.connections;
    let sent = 0;
    const feeder = setInterval(() => good.client.sendReport(sampleReport('good', ++sent)), 25);
    t.teardown(() => clearInterval(feeder));

    // One connection per generated frame (after a valid hello or not, sometimes with a second frame): a rejected
    // connection ignores whatever follows, so each frame gets a connection of its own to reach the handlers.
    const plans = fc.sample(
      fc.record({ helloFirst: fc.boolean(), frames: fc.array(fc.tuple(structuralMutation, textMutation, signing), { minLength: 1, maxLength: 2 }) }),
      { numRuns: FRAMES_PER_MODE, seed: SEED },
    );
    let framesSent = 0;
    const fuzzerKey = mode.keyOf('fuzzer') ?? 'f'.repeat(64);
    const BATCH = 40;
    for (let batch = 0; batch < plans.length; batch += BATCH) {
      await Promise.all(plans.slice(batch, batch + BATCH).map(async (plan, k) => {
        const c = await rawConnection(port);
        const shapes = fc.sample(messageShape(c.nonce), { numRuns: plan.frames.length, seed: SEED + batch + k });
        const write = (json: string, how: Signing): boolean => {
          if (c.ws.readyState !== c.ws.OPEN) return false;
          if (how === 'unsigned' || mode.keyring === null) c.send(json);
          else if (how === 'wrong-key') c.send(signFrame('e'.repeat(64), c.nonce, json));
          else if (how === 'other-text') c.send(`${signFrame(fuzzerKey, c.nonce, `${json} `).slice(0, 64)} ${json}`);
          else c.send(signFrame(fuzzerKey, c.nonce, json));
          return true;
        };
        if (plan.helloFirst) write(JSON.stringify(helloFor('fuzzer', c.nonce)), 'right');
        plan.frames.forEach(([structure, text, how], i) => {
          let json: string;
          try {
            json = JSON.stringify(structure(shapes[i]!));
          } catch {
            json = '{';
          }
          if (write(text(json), how)) framesSent += 1;
        });
        c.ws.close();
        await Promise.race([c.closed, new Promise((resolve) => setTimeout(resolve, 2000))]);
        c.ws.terminate();
      }));
    }
    t.ok(framesSent >= FRAMES_PER_MODE, `${framesSent} mutated frames sent on ${plans.length} connections`);
    const last = sent;
    await until(`all ${last} good reports stored`, () => store.lastSeq('good') >= last, 20_000);
    clearInterval(feeder);
    const stored = store.reports('good');
    t.equal(stored.length, new Set(stored.map((r) => r.seq)).size, 'no report stored twice');
    t.ok(stored.length >= last, `every good report stored (${stored.length} of ${last})`);
    t.equal(collector.agents.get('good')!.connections, connectionsAtStart, 'the good agent was never disconnected');
    t.ok(collector.rejected > 0, `${collector.rejected} hostile connections refused`);
    // The collector still takes a new agent.
    const late = inProcessAgent(t, `ws://127.0.0.1:${port}`, 'good', mode.keyOf('good'));
    t.ok(late, 'a fresh connection after the storm');
  });
}
