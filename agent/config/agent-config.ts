import { readFileSync } from 'node:fs';
import { Type } from '@sinclair/typebox';
import type { ErrorObject } from 'ajv';
import { LineCounter, parseDocument, isMap, isScalar, type Document } from 'yaml';
import { AGENT_SETTINGS, configValidator, optionAttribute, settingMismatch, tellingError } from './agent-settings.js';

/** A config file larger than this is not a config file. */
const MAX_CONFIG_BYTES = 64 * 1024;

/**
 * agent.yaml's schema, made from the settings the command line is made from (agent-settings.ts): the same keys (the
 * flags' long names) and the same bounds. A flag given on the command line wins over the file.
 */
export const AgentConfigSchema = Type.Object(
  Object.fromEntries(AGENT_SETTINGS.map((setting) => [setting.key, Type.Optional(setting.schema)])),
  { additionalProperties: false },
);

export type AgentConfig = Record<string, unknown>;

export const CONFIG_KEYS = AGENT_SETTINGS.map((setting) => setting.key);

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

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
  const validate = configValidator();
  if (!validate(value)) throw new ConfigError(describe(tellingError(validate.errors), document, lines, file));
  return value;
}

function describe(error: ErrorObject | undefined, document: Document, lines: LineCounter, file: string): string {
  if (!error) return `${file}: invalid`;
  const key = error.instancePath.split('/')[1] ?? (error.params as { additionalProperty?: string }).additionalProperty ?? '';
  const where = `${file}:${lineOfKey(document, lines, key) ?? 1}`;
  if (error.keyword === 'additionalProperties') {
    return `${where}: unknown key "${key}" (known keys: ${CONFIG_KEYS.join(', ')})`;
  }
  const setting = AGENT_SETTINGS.find((s) => s.key === key);
  return `${where}: "${key}" ${setting ? settingMismatch(setting, error) : (error.message ?? 'is invalid')}`;
}

function lineOfKey(document: Document, lines: LineCounter, key: string): number | undefined {
  if (!isMap(document.contents)) return undefined;
  for (const pair of document.contents.items) {
    if (isScalar(pair.key) && pair.key.value === key && pair.key.range) return lines.linePos(pair.key.range[0]).line;
  }
  return undefined;
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
