import os from 'node:os';
import path from 'node:path';
import { Type } from '@sinclair/typebox';
import type { ErrorObject } from 'ajv';
import { compiledValidator, type CompiledValidator } from '../../contract/compiled-validator.js';
import * as compiled from './compiled-config-validator.js';
import { InvalidArgumentError, Option } from 'commander';
import { CollectorUrlSchema, parseCollectorUrl } from '../../contract/agent-files.js';
import { IdentifierSchema } from '../../contract/report-schema.js';
import { PROBE_SETTINGS, PROBES } from '../../probes/registry.js';
import { MillisecondsSchema, numberFromText, type SettingDeclaration } from '../../contract/setting.js';
import { DEFAULT_EPISODE_OPTIONS } from '../episodes/episode-engine.js';
import { DEFAULT_SAFETY_NET_OPTIONS } from '../remediation/safety-net.js';
import { DEFAULT_SPOOL_MAX_BYTES } from '../transport/spool.js';
import { DEFAULT_STATE_DIR } from '../state/state-dir.js';

/**
 * Every setting of the agent, declared once: its flag, its help, what it accepts (one TypeBox schema, bounds
 * included) and its default. The command-line options and agent.yaml's schema are both made from this list, so a
 * flag and its config key can never accept different values; agent.yaml's keys are the flags' long names.
 */
export interface AgentSetting extends SettingDeclaration {
  /** The commands that take it: watch and run share the observing settings, run alone has the service's. */
  readonly commands: readonly AgentCommand[];
}

export type AgentCommand = 'watch' | 'run';

const AbsolutePath = Type.String({ pattern: '^/', maxLength: 4096 });
const BOTH: readonly AgentCommand[] = ['watch', 'run'];
const RUN: readonly AgentCommand[] = ['run'];

/** A path on the command line is taken from where the command runs; in agent.yaml it must be absolute already. */
const absolute = (text: string) => (text === '' ? text : path.resolve(text));

function collectorUrlArgument(value: string): string {
  try {
    return parseCollectorUrl(value);
  } catch (error) {
    throw new InvalidArgumentError((error as Error).message);
  }
}

/** A comma-separated list of probe names, checked here so that the message can name the known ones. */
export function parseProbeList(value: string): string[] {
  const names = value.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = names.filter((name) => !(name in PROBES));
  if (unknown.length > 0) throw new InvalidArgumentError(`unknown probe "${unknown[0]}" (known: ${Object.keys(PROBES).join(', ')})`);
  return names;
}

const ms = (key: string, flags: string, description: string, defaultValue: number, commands = BOTH): AgentSetting => ({
  key, flags, description, schema: MillisecondsSchema, fromText: numberFromText, defaultValue, commands,
});

export const AGENT_SETTINGS: readonly AgentSetting[] = [
  {
    key: 'collector', flags: '--collector <url>', commands: RUN,
    description: 'collector WebSocket URL, e.g. wss://10.0.3.1:7431; repeat it to shard a fleet across collectors by agent id, or with --collector-failover for collectors that share a store (without one, reports stay in the state directory)',
    schema: Type.Union([CollectorUrlSchema, Type.Array(CollectorUrlSchema, { minItems: 1, maxItems: 64, uniqueItems: true })]),
    fromText: (text, previous) => [...((previous as string[] | undefined) ?? []), collectorUrlArgument(text)],
    hint: 'must be a ws:// or wss:// URL, or a list of them (one collector per shard)',
  },
  {
    key: 'collector-failover', flags: '--collector-failover', commands: RUN, schema: Type.Boolean(),
    description: 'the collectors share one store (flinch collect --store postgres://...): use them in rendezvous order, move to the next when one is gone and back when it returns (without it, each agent keeps to its one shard)',
  },
  { key: 'agent-id', flags: '--agent-id <id>', commands: RUN, description: 'stable identity of this agent', schema: IdentifierSchema, fromText: (text) => text, defaultValue: os.hostname(), hint: 'may hold only letters, digits and . _ : @ -' },
  { key: 'token-file', flags: '--token-file <file>', commands: RUN, description: "this agent's signing key (mode 0600), from `flinch token`; without it frames are unsigned", schema: AbsolutePath, fromText: absolute, hint: 'must be an absolute path' },
  { key: 'ca-file', flags: '--ca-file <file>', commands: RUN, description: 'PEM certificates to trust for a wss:// collector, beside the system ones', schema: AbsolutePath, fromText: absolute, hint: 'must be an absolute path' },
  {
    key: 'spool-max-bytes', flags: '--spool-max-bytes <n>', commands: RUN,
    description: 'on-disk bound of what waits for the collector; when full the oldest is dropped and counted',
    schema: Type.Integer({ minimum: 65_536, maximum: 68_719_476_736 }), fromText: numberFromText, defaultValue: DEFAULT_SPOOL_MAX_BYTES,
  },
  {
    key: 'metrics', flags: '--metrics <host:port>', commands: RUN, description: 'serve Prometheus metrics (GET /metrics) here, e.g. 127.0.0.1:9431',
    schema: Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):[0-9]{1,5}$', maxLength: 300 }), fromText: (text) => text, hint: 'must be HOST:PORT, e.g. 127.0.0.1:9431',
  },
  {
    key: 'accept-announce', flags: '--accept-announce', commands: RUN, schema: Type.Boolean(),
    description: "take what the collector says, its signed migration announcements and the guest's offset to it, as migration evidence for the safety net (a harness's lab or campaign); off, only the guest's own kernel and clocks are",
  },
  {
    key: 'probes', flags: '--probes <list>', commands: BOTH, description: 'comma-separated probes to run (default: all)',
    schema: Type.Array(Type.Union(Object.keys(PROBES).map((name) => Type.Literal(name))), { minItems: 1, uniqueItems: true }), fromText: parseProbeList,
    hint: `entries must be probe names (${Object.keys(PROBES).join(', ')})`,
  },
  { key: 'canaries', flags: '--no-canaries', commands: BOTH, description: 'with --remediate on, do not install the canary table/chains that show a wholesale flush', schema: Type.Boolean() },
  {
    key: 'remediate', flags: '--remediate <mode>', commands: BOTH, description: 'the safety net: off, dry-run (say what it would do) or on',
    schema: Type.Union([Type.Literal('off'), Type.Literal('dry-run'), Type.Literal('on')]), fromText: (text) => text, defaultValue: DEFAULT_SAFETY_NET_OPTIONS.mode,
    hint: 'must be one of off, dry-run, on',
  },
  { key: 'udp-echo', flags: '--udp-echo <port>', commands: BOTH, description: "answer a harness's blackout probes on this UDP port (off by default)", schema: Type.Integer({ minimum: 1, maximum: 65535 }), fromText: numberFromText },
  { key: 'state-dir', flags: '--state-dir <dir>', commands: BOTH, description: 'baseline and reports.jsonl', schema: AbsolutePath, fromText: absolute, defaultValue: DEFAULT_STATE_DIR, hint: 'must be an absolute path' },
  ms('settle', '--settle <ms>', 'an episode closes after this long without a new observation', DEFAULT_EPISODE_OPTIONS.settleMs),
  {
    key: 'timing-noise', flags: '--timing-noise <ms>', commands: BOTH, schema: Type.Integer({ minimum: 0, maximum: 60_000 }), fromText: numberFromText, defaultValue: 0,
    description: "late wake-ups and moves of the offset to the host below this are the machine's own jitter, whatever the agent learns of it (nested or emulated guests)",
  },
  ms('adopt-after', '--adopt-after <ms>', 'a change no migration explains is left alone, and becomes the baseline after lasting this long', DEFAULT_SAFETY_NET_OPTIONS.adoptAfterMs),
  ms('clock-heal-ms', '--clock-heal-ms <ms>', "after a migration, a guest clock this far from the host's is brought back (a time daemon asked to step, or CLOCK_REALTIME stepped)", DEFAULT_SAFETY_NET_OPTIONS.clockHealMs),
  ms('repair-window', '--repair-window <ms>', "damage first seen up to this long after migration evidence is the migration's, and is repaired", DEFAULT_SAFETY_NET_OPTIONS.repairWindowMs),
  { key: 'max-actions', flags: '--max-actions <n>', commands: BOTH, description: 'at most this many repair actions a minute', schema: Type.Integer({ minimum: 1, maximum: 10_000 }), fromText: numberFromText, defaultValue: DEFAULT_SAFETY_NET_OPTIONS.maxActionsPerMinute },
  // Each probe's own settings, declared with the probe (probes/registry.ts): watch and run both run probes.
  ...PROBE_SETTINGS.map((setting) => ({ ...setting, commands: BOTH })),
  ms('conflict-window', '--conflict-window <ms>', `a repair undone again within this long counts toward conflict (${DEFAULT_SAFETY_NET_OPTIONS.maxAttempts} strikes)`, DEFAULT_SAFETY_NET_OPTIONS.conflictWindowMs),
];

/**
 * Which of Ajv's errors to tell. With a union, Ajv lists each branch's failure before the union's own, and the last
 * (the union's) is the one to tell, with the setting's hint; but a list that repeats an entry did pick its branch,
 * and failed there on that alone: saying so says more than the hint.
 */
export function tellingError(errors: readonly ErrorObject[] | null | undefined): ErrorObject | undefined {
  return errors?.find((error) => error.keyword === 'uniqueItems') ?? errors?.at(-1);
}

/** What a value that does not fit `setting` is told: the bound it missed, or the setting's hint. */
export function settingMismatch(setting: AgentSetting, error: ErrorObject | undefined): string {
  const params = error?.params as { type?: string; limit?: number; i?: number; j?: number } | undefined;
  switch (error?.keyword) {
    case 'type': return `must be ${String(params?.type)}`;
    case 'minimum': return `must be at least ${String(params?.limit)}`;
    case 'maximum': return `must be at most ${String(params?.limit)}`;
    case 'uniqueItems': {
      // Ajv's i and j are 0-based and in either order (it walks a list of strings from its end); people count from 1.
      const [first, second] = [params?.i ?? 0, params?.j ?? 0].sort((x, y) => x - y);
      return `lists the same entry twice (entries ${first! + 1} and ${second! + 1})`;
    }
    case 'pattern': case 'anyOf': case 'const': return setting.hint ?? 'is not allowed';
    default: return error?.message ?? 'is invalid';
  }
}

/** agent.yaml's schema (agent-config.ts), compiled ahead of time (packaging/validators/generate-validators.ts). */
export function configValidator(): CompiledValidator<Record<string, unknown>> {
  return compiledValidator<Record<string, unknown>>(compiled.validateAgentConfig);
}

/**
 * Why a setting's value does not fit it, or null when it does: checked by agent.yaml's own compiled schema, as a
 * config of that one key, so that a flag and its key accept the same values.
 */
export function settingValueError(setting: AgentSetting, value: unknown): ErrorObject | undefined | null {
  const validate = configValidator();
  if (validate({ [setting.key]: value })) return null;
  return tellingError(validate.errors);
}

/** The commander attribute for a config key: `adopt-after` → `adoptAfter`. */
export function optionAttribute(key: string): string {
  return key.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/** The commander option for a setting: its text parsed, then checked against the same schema agent.yaml is. */
export function settingOption(setting: AgentSetting): Option {
  const option = new Option(setting.flags, setting.description);
  if (setting.defaultValue !== undefined) option.default(setting.defaultValue);
  const { fromText } = setting;
  if (fromText) {
    option.argParser((text: string, previous: unknown) => {
      const value = fromText(text, previous === setting.defaultValue ? undefined : previous);
      const error = settingValueError(setting, value);
      if (error !== null) throw new InvalidArgumentError(settingMismatch(setting, error));
      return value;
    });
  }
  return option;
}
