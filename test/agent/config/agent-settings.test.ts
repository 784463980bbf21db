// One declaration per setting: the flag and the agent.yaml key accept the same values, because both are made from
// the same schema. Checked on generated values (fast-check), in and out of every bound.
import t from 'tap';
import fc from 'fast-check';
import { AGENT_SETTINGS, settingOption } from '../../../agent/config/agent-settings.js';
import { CONFIG_KEYS, parseAgentConfig } from '../../../agent/config/agent-config.js';

const acceptedByFlag = (key: string, text: string) => {
  const option = settingOption(AGENT_SETTINGS.find((s) => s.key === key)!);
  try {
    option.parseArg!(text, undefined);
    return true;
  } catch {
    return false;
  }
};
const acceptedByFile = (key: string, value: unknown) => {
  try {
    parseAgentConfig(`${JSON.stringify({ [key]: value })}\n`); // JSON is YAML 1.2
    return true;
  } catch {
    return false;
  }
};

t.test('every config key is a setting, and every setting a config key', async (t) => {
  t.same(CONFIG_KEYS, AGENT_SETTINGS.map((s) => s.key));
  t.ok(CONFIG_KEYS.includes('spool-max-bytes') && CONFIG_KEYS.includes('udp-echo') && CONFIG_KEYS.includes('agent-id'));
});

const numeric = AGENT_SETTINGS.filter((s) => (s.schema as { type?: string }).type === 'integer').map((s) => s.key);

t.test('numbers: the flag takes exactly what the file takes', async (t) => {
  t.ok(numeric.length >= 10, `${numeric.length} numeric settings`);
  fc.assert(
    fc.property(fc.constantFrom(...numeric), fc.oneof(fc.integer({ min: -10, max: 100_000 }), fc.integer(), fc.maxSafeInteger(), fc.double({ noNaN: true })), (key, value) =>
      acceptedByFlag(key, String(value)) === acceptedByFile(key, value)),
    { seed: 20261201, numRuns: 4000 },
  );
  // The bounds the issue found apart, each at its edge.
  for (const [key, below, at] of [['spool-max-bytes', 65_535, 65_536], ['udp-echo', 0, 1], ['settle', 0, 1], ['timing-noise', -1, 0]] as const) {
    t.same([acceptedByFlag(key, String(below)), acceptedByFile(key, below)], [false, false], `${key} ${below}`);
    t.same([acceptedByFlag(key, String(at)), acceptedByFile(key, at)], [true, true], `${key} ${at}`);
  }
  t.same([acceptedByFlag('udp-echo', '65536'), acceptedByFile('udp-echo', 65_536)], [false, false]);
});

t.test('identifiers, addresses and modes: the same on both sides', async (t) => {
  fc.assert(
    fc.property(fc.constantFrom('agent-id', 'metrics', 'remediate'), fc.oneof(fc.string({ maxLength: 140 }), fc.constantFrom('web-042', '127.0.0.1:9431', '[::1]:9', 'on', 'dry-run', 'x'.repeat(129))), (key, text) =>
      text === '' || acceptedByFlag(key, text) === acceptedByFile(key, text)),
    { seed: 20261201, numRuns: 3000 },
  );
  t.same([acceptedByFlag('agent-id', 'web 42'), acceptedByFile('agent-id', 'web 42')], [false, false]);
});
