import { OBSERVATION_SCHEMA_ID, type Observation } from './observation.js';
import { REPORT_SCHEMA_ID, type Report } from './report-schema.js';

/**
 * What the agent prints with --json: one JSON object a line, each with a `type` saying what it is and a `schema`
 * naming the version of its shape, so a consumer can tell an observation from a report without guessing from fields,
 * and can refuse a version it does not know. The payload sits under its type's name, as in the wire protocol's data
 * messages, so it is exactly the object the contract defines.
 */
export const SNAPSHOT_SCHEMA_ID = 'flinch.snapshot/v1';

export type OutputLine =
  | { type: 'observation'; schema: typeof OBSERVATION_SCHEMA_ID; observation: Observation }
  | { type: 'report'; schema: typeof REPORT_SCHEMA_ID; report: Report }
  | { type: 'snapshot'; schema: typeof SNAPSHOT_SCHEMA_ID; agentVersion: string; hostname: string; probes: Record<string, unknown> };

export const observationLine = (observation: Observation): OutputLine => ({ type: 'observation', schema: OBSERVATION_SCHEMA_ID, observation });
export const reportLine = (report: Report): OutputLine => ({ type: 'report', schema: REPORT_SCHEMA_ID, report });

export function formatOutputLine(line: OutputLine): string {
  return `${JSON.stringify(line)}\n`;
}
