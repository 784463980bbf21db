import { Type, type Static } from '@sinclair/typebox';
import { compiledValidator } from './compiled-validator.js';
import * as compiled from './compiled-validators.js';
import { ObservationRef } from './observation.js';

/**
 * `flinch.report/v1`: what the agent concludes about one episode. TypeBox gives the JSON Schema and the TypeScript
 * type from one definition; Ajv checks it on the agent before it is stored or sent, and on the collector before it is
 * trusted, the observations inside it in full (contract/observation.ts).
 */
export const REPORT_SCHEMA_ID = 'flinch.report/v1';

/**
 * Agent and migration ids: what `flinch token` and the agent's --agent-id accept. Checked at every edge, so no id that
 * reaches a log, a terminal or the store can carry a control character, a newline or an escape sequence.
 */
export const IDENTIFIER_PATTERN = '^[A-Za-z0-9._:@-]{1,128}$';
/** The control characters (C0, DEL, C1) that free text may not carry. */
const CONTROL_RANGES = '\\u0000-\\u001f\\u007f-\\u009f';
/** Free text such as a hostname: no control characters. */
export const PRINTABLE_PATTERN = `^[^${CONTROL_RANGES}]*$`;
/** Every control character PRINTABLE_PATTERN refuses, for text that is made to fit it rather than refused. */
export const CONTROL_CHARACTERS = new RegExp(`[${CONTROL_RANGES}]`, 'g');
export const IdentifierSchema = Type.String({ minLength: 1, maxLength: 128, pattern: IDENTIFIER_PATTERN });
export const printableText = (maxLength: number) => Type.String({ maxLength, pattern: PRINTABLE_PATTERN });

const Stamp = Type.Object({ realtimeMs: Type.Number(), monotonicMs: Type.Number() });
const ShortText = Type.String({ maxLength: 2000 });

export const VerdictSchema = Type.Union([
  Type.Literal('transparent'),
  Type.Literal('noticed'),
  Type.Literal('disrupted'),
  Type.Literal('healed'),
]);

export const EvidenceSchema = Type.Object({
  severity: Type.Union([Type.Literal('noticed'), Type.Literal('disrupted')]),
  kind: Type.String({ maxLength: 64 }),
  detail: ShortText,
  at: Stamp,
});

export const TriggerSchema = Type.Object({ kind: Type.String({ maxLength: 64 }), detail: ShortText, at: Stamp });

/** left-alone: damage the safety net saw and, with no migration to explain it, did not touch (changed-outside-migration). */
export const REMEDIATION_RESULTS = ['ok', 'failed', 'dry-run', 'conflict', 'skipped', 'left-alone'] as const;

export const RemediationActionSchema = Type.Object({
  what: Type.String({ maxLength: 64 }),
  target: Type.String({ maxLength: 256 }),
  why: ShortText,
  beforeHash: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
  afterHash: Type.Union([Type.String({ maxLength: 64 }), Type.Null()]),
  durationMs: Type.Number({ minimum: 0 }),
  result: Type.Union(REMEDIATION_RESULTS.map((r) => Type.Literal(r))),
  error: Type.Optional(ShortText),
  command: Type.Optional(Type.String({ maxLength: 65536 })),
  at: Stamp,
});

export const ReportSchema = Type.Object(
  {
    schema: Type.Literal(REPORT_SCHEMA_ID),
    agentId: IdentifierSchema,
    hostname: printableText(255),
    agentVersion: Type.String({ maxLength: 64 }),
    episode: Type.Object({
      id: Type.String({ minLength: 1, maxLength: 64 }),
      migrationId: Type.Union([IdentifierSchema, Type.Null()]),
      openedAt: Stamp,
      closedAt: Stamp,
      durationMs: Type.Number({ minimum: 0 }),
      triggers: Type.Array(TriggerSchema, { maxItems: 1000 }),
    }),
    verdict: VerdictSchema,
    evidence: Type.Array(EvidenceSchema, { maxItems: 1000 }),
    thresholds: Type.Object({ clockStepMs: Type.Number(), settleMs: Type.Number() }),
    remediation: Type.Object({
      mode: Type.Union([Type.Literal('off'), Type.Literal('dry-run'), Type.Literal('on')]),
      outcome: Type.Union([
        Type.Literal('not-needed'), Type.Literal('healed'), Type.Literal('partial'), Type.Literal('failed'),
        Type.Literal('conflict'), Type.Literal('dry-run'), Type.Literal('off'),
      ]),
      timeToHealMs: Type.Union([Type.Number({ minimum: 0 }), Type.Null()]),
      actions: Type.Array(RemediationActionSchema, { maxItems: 1000 }),
    }),
    observations: Type.Array(ObservationRef, { maxItems: 2000 }),
    observationsDropped: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false, $id: REPORT_SCHEMA_ID },
);

export type Report = Static<typeof ReportSchema>;
export type Verdict = Static<typeof VerdictSchema>;
export type Evidence = Static<typeof EvidenceSchema>;
export type RemediationAction = Static<typeof RemediationActionSchema>;

export class ReportValidationError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReportValidationError';
  }
}

/** Checks a report against flinch.report/v1; throws with the first violation, named by its JSON pointer. */
export function assertValidReport(value: unknown): asserts value is Report {
  const validate = compiledValidator<Report>(compiled.validateReport);
  if (validate(value)) return;
  const error = validate.errors?.[0];
  throw new ReportValidationError(`invalid ${REPORT_SCHEMA_ID}: ${error?.instancePath || '/'} ${error?.message ?? 'is invalid'}`);
}
