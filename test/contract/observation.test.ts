// The observation union is the contract both halves check against: every kind is checked in full, by its own branch.
// The mutations are generated with fast-check from the samples; each is one a well-formed observation cannot survive.
import t from 'tap';
import fc from 'fast-check';
import { OBSERVATION_KINDS, ObservationSchema, observationError } from '../../contract/observation.js';
import { ProtocolError, validateAgentMessage } from '../../contract/messages.js';
import { assertValidReport } from '../../contract/report-schema.js';
import { SAMPLE_OBSERVATIONS } from '../helpers/observation-samples.js';
import { sampleReport } from '../helpers/collector-fixtures.js';

type Json = Record<string, unknown>;
const samples = Object.values(SAMPLE_OBSERVATIONS) as unknown as Json[];
const branches = (ObservationSchema as unknown as { oneOf: Array<{ properties: Record<string, unknown>; required: string[] }> }).oneOf;
const branchOf = (kind: unknown) => branches.find((b) => (b.properties.kind as { const: string }).const === kind)!;

t.test('the samples cover every kind the contract defines, and each is accepted', async (t) => {
  t.same(Object.keys(SAMPLE_OBSERVATIONS).sort(), [...OBSERVATION_KINDS].sort());
  for (const sample of samples) t.equal(observationError(sample), null, String(sample.kind));
  // The optional fields may be left out, as older agents and quieter probes do.
  for (const sample of samples) {
    const required = branchOf(sample.kind).required;
    const minimal = Object.fromEntries(Object.entries(sample).filter(([key]) => required.includes(key)));
    t.equal(observationError(minimal), null, `${String(sample.kind)} with its required fields only`);
  }
});

/** Changes that no observation of any kind survives, each naming what it broke. */
const breaking = (sample: Json): fc.Arbitrary<{ what: string; value: Json }> => {
  const required = branchOf(sample.kind).required.filter((key) => key !== 'kind');
  return fc.oneof(
    fc.constantFrom(...required).map((key) => {
      const value = { ...sample };
      delete value[key];
      return { what: `without ${key}`, value };
    }),
    fc.tuple(fc.constantFrom(...required), fc.oneof(fc.constant({ 'x-unknown': 1 }), fc.constant([[]]))).map(([key, wrong]) => ({ what: `${key} of a wrong type`, value: { ...sample, [key]: wrong } })),
    fc.string({ minLength: 1, maxLength: 20 }).filter((key) => !(key in branchOf(sample.kind).properties)).map((key) => ({ what: `an unknown field ${JSON.stringify(key)}`, value: { ...sample, [key]: 1 } })),
    fc.string({ maxLength: 40 }).filter((kind) => !(OBSERVATION_KINDS as readonly string[]).includes(kind)).map((kind) => ({ what: `kind ${JSON.stringify(kind)}`, value: { ...sample, kind } })),
    fc.constantFrom('realtimeMs', 'monotonicMs').map((key) => ({ what: `at.${key} as text`, value: { ...sample, at: { ...(sample.at as Json), [key]: '1' } } })),
  );
};

t.test('a generated breakage of any sample is refused, and the error names the broken branch', async (t) => {
  let checked = 0;
  fc.assert(
    fc.property(fc.constantFrom(...samples).chain((sample) => breaking(sample).map((broken) => ({ sample, broken }))), ({ sample, broken }) => {
      const error = observationError(broken.value);
      checked += 1;
      if (error === null) throw new Error(`${String(sample.kind)} ${broken.what} was accepted`);
      return true;
    }),
    { seed: 20261201, numRuns: 3000 },
  );
  t.equal(checked, 3000);
  t.match(observationError({ ...SAMPLE_OBSERVATIONS.link, link: { ...SAMPLE_OBSERVATIONS.link.link, mtu: 'big' } }), /^"link" observation\/link\/mtu /);
  t.match(observationError(null), /^an observation/);
});

t.test('on the wire and in a report, an observation is checked in full', async (t) => {
  t.equal(validateAgentMessage({ type: 'observation', seq: 1, observation: SAMPLE_OBSERVATIONS.route }).type, 'observation');
  const envelopeOnly = { type: 'observation', seq: 1, observation: { kind: 'clock', at: { realtimeMs: 1, monotonicMs: 1 } } };
  t.throws(() => validateAgentMessage(envelopeOnly), ProtocolError, 'an envelope alone is no longer an observation');
  t.doesNotThrow(() => assertValidReport({ ...sampleReport('a', 1), observations: samples }));
  t.throws(() => assertValidReport({ ...sampleReport('a', 1), observations: [{ ...SAMPLE_OBSERVATIONS.pause, stealMs: null }] }), /\/observations\/0\/stealMs/);
});
