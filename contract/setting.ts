import { Type, type TSchema } from '@sinclair/typebox';

/**
 * A setting, declared once where it belongs (the agent core, or a probe for its own, as node_exporter's collectors
 * declare their flags): its flag, its help, what it accepts and its default. The agent makes both the command-line
 * option and agent.yaml's key from it, so the two accept the same values; the key is the flag's long name.
 */
export interface SettingDeclaration {
  readonly key: string;
  /** commander's flags: `--settle <ms>`, `--no-canaries`, `--accept-announce`. */
  readonly flags: string;
  readonly description: string;
  readonly schema: TSchema;
  /** How a flag's text becomes the value the schema checks (a number, a list); booleans take none. */
  readonly fromText?: (text: string, previous: unknown) => unknown;
  readonly defaultValue?: unknown;
  /** What to say when a value does not fit the schema's pattern or union. */
  readonly hint?: string;
}

/** A number from a flag's text; the schema then bounds it. */
export const numberFromText = (text: string) => (text.trim() === '' ? Number.NaN : Number(text));

/** A duration setting: at least 1 ms, at most a day. */
export const MillisecondsSchema = Type.Integer({ minimum: 1, maximum: 86_400_000 });
