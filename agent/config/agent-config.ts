import { readFileSync } from 'node:fs';
import { IdentifierSchema } from '../../contract/report-schema.js';
import { Type, type Static } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isScalar, type Document } from 'yaml';
import { PROBES } from '../../probes/registry.js';

/** Where the Debian package puts the config, and what its unit passes to --config. */
export const DEFAULT_CONFIG_PATH = '/etc/flinch/agent.yaml';


/** A config file larger than this is not a config file. */
const MAX_CONFIG_BYTES = 64 * 1024;

const CollectorUrl = Type.String({ pattern: '^wss?://[^\\s]+$', maxLength: 2048 });
const Milliseconds = Type.Integer({ minimum: 1, maximum: 86_400_000 });

/**
 * The keys of agent.yaml are the long option names of `flinch-agent run`, so that one vocabulary serves the command
 * line, the file and the documentation. A flag given on the command line wins over the file.
 */
export const AgentConfigSchema = Type.Object(
  {
    collector: Type.Optional(Type.Union([CollectorUrl, Type.Array(CollectorUrl, { minItems: 1, maxItems: 64, uniqueItems: true })])),
    'agent-id': Type.Optional(IdentifierSchema),
    'token-file': Type.Optional(Type.String({ pattern: '^/', maxLength: 4096 })),
    'ca-file': Type.Optional(Type.String({ pattern: '^/', maxLength: 4096 })),
    'spool-max-bytes': Type.Optional(Type.Integer({ minimum: 65_536, maximum: 68_719_476_736 })),
    metrics: Type.Optional(Type.String({ pattern: '^(\\[[0-9a-fA-F:.]+\\]|[^:\\s]+):[0-9]{1,5}$', maxLength: 300 })),
    probes: Type.Optional(Type.Array(Type.Union(Object.keys(PROBES).map((name) => Type.Literal(name))), { minItems: 1, uniqueItems: true })),
    canaries: Type.Optional(Type.Boolean()),
    'udp-echo': Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    'legacy-poll': Type.Optional(Milliseconds),
    remediate: Type.Optional(Type.Union([Type.Literal('off'), Type.Literal('dry-run'), Type.Literal('on')])),
    'state-dir': Type.Optional(Type.String({ pattern: '^/', maxLength: 4096 })),
    settle: Type.Optional(Milliseconds),
    'timing-noise': Type.Optional(Type.Integer({ minimum: 0, maximum: 60_000 })),
    'adopt-after': Type.Optional(Milliseconds),
    'max-actions': Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000 })),
    'conflict-window': Type.Optional(Milliseconds),
    'repair-window': Type.Optional(Milliseconds),
    'clock-heal-ms': Type.Optional(Milliseconds),
    'accept-announce': Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export type AgentConfig = Static<typeof AgentConfigSchema>;
export type AgentConfigKey = keyof AgentConfig;

export const CONFIG_KEYS = Object.keys(AgentConfigSchema.properties) as AgentConfigKey[];

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

const validate = new Ajv({ allErrors: false, strict: true }).compile<AgentConfig>(AgentConfigSchema);

/**
 * Reads and validates a whole config file, or throws a ConfigError naming the file, the line and the key. Nothing is
 * used from a file with any error in it: a half-read config could start the safety net in a mode nobody chose.
 */
export function loadAgentConfig(file: string): AgentConfig {
  let text: string;
  try {
    const buffer = readFileSync(file);
    if (buffer.length > MAX_CONFIG_BYTES) throw new ConfigError(`${file}: ${buffer.length} bytes; a config file is at most ${MAX_CONFIG_BYTES}`);
    text = buffer.toString('utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new ConfigError(`${file}: no such config file (create it, or drop --config to run on defaults)`);
    throw new ConfigError(`${file}: cannot read: ${(error as Error).message}`);
  }
  return parseAgentConfig(text, file);
}

export function parseAgentConfig(text: string, file = 'agent.yaml'): AgentConfig {
  const lines = new LineCounter();
  const document = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const syntax = document.errors[0];
  if (syntax) {
    const at = syntax.linePos?.[0]?.line ?? lines.linePos(syntax.pos[0]).line;
    throw new ConfigError(`${file}:${at}: ${syntax.message.split('\n')[0]}`);
  }
  const value: unknown = document.toJS() ?? {};
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`${file}: expected a mapping of keys to values at the top level`);
  // With a union, Ajv lists each branch's failure before the union's own; the last error is the one to tell.
  if (!validate(value)) throw new ConfigError(describe(validate.errors?.at(-1), document, lines, file));
  return value;
}

function describe(error: ErrorObject | undefined, document: Document, lines: LineCounter, file: string): string {
  if (!error) return `${file}: invalid`;
  const key = error.instancePath.split('/')[1] ?? (error.params as { additionalProperty?: string }).additionalProperty ?? '';
  const where = `${file}:${lineOfKey(document, lines, key) ?? 1}`;
  if (error.keyword === 'additionalProperties') {
    return `${where}: unknown key "${key}" (known keys: ${CONFIG_KEYS.join(', ')})`;
  }
  const expectation: Record<string, string> = {
    type: `must be ${String((error.params as { type?: string }).type)}`,
    pattern: patternHint(key),
    anyOf: UNION_HINTS[key] ?? 'has the wrong type',
    minimum: `must be at least ${String((error.params as { limit?: number }).limit)}`,
    maximum: `must be at most ${String((error.params as { limit?: number }).limit)}`,
    uniqueItems: 'lists a probe twice',
  };
  return `${where}: "${key}" ${expectation[error.keyword] ?? error.message ?? 'is invalid'}`;
}

const UNION_HINTS: Record<string, string> = {
  probes: `entries must be probe names (${Object.keys(PROBES).join(', ')})`,
  remediate: 'must be one of off, dry-run, on',
  collector: 'must be a ws:// or wss:// URL, or a list of them (one collector per shard)',
};

function patternHint(key: string): string {
  if (key === 'collector') return 'must be a ws:// or wss:// URL';
  if (key === 'state-dir' || key === 'token-file' || key === 'ca-file') return 'must be an absolute path';
  if (key === 'metrics') return 'must be HOST:PORT, e.g. 127.0.0.1:9431';
  return 'may hold only letters, digits and . _ : @ -';
}

function lineOfKey(document: Document, lines: LineCounter, key: string): number | undefined {
  if (!isMap(document.contents)) return undefined;
  for (const pair of document.contents.items) {
    if (isScalar(pair.key) && pair.key.value === key && pair.key.range) return lines.linePos(pair.key.range[0]).line;
  }
  return undefined;
}

/** The commander attribute for a config key: `adopt-after` → `adoptAfter`. */
export function optionAttribute(key: AgentConfigKey): string {
  return key.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/**
 * Fills every option the command line did not set from the config file. Commander records where each value came from;
 * only 'cli' beats the file, defaults do not.
 */
export function applyAgentConfig<T extends object>(options: T, config: AgentConfig, sourceOf: (attribute: string) => string | undefined): T {
  const merged = { ...options } as Record<string, unknown>;
  for (const key of CONFIG_KEYS) {
    const attribute = optionAttribute(key);
    const value = key === 'collector' && typeof config.collector === 'string' ? [config.collector] : config[key];
    if (value !== undefined && sourceOf(attribute) !== 'cli') merged[attribute] = value;
  }
  return merged as T;
}
