import { printable } from '../../contract/command-line.js';
import type { Observation } from '../../contract/observation.js';
import { formatOutputLine, observationLine, reportLine, type OutputLine } from '../../contract/output-lines.js';
import type { Report } from '../../contract/report-schema.js';
import type { Publisher } from './publisher.js';

/** `watch --json`: one typed JSON line per observation and report (contract/output-lines.ts). */
export function jsonLinesPublisher(write: (text: string) => void = (text) => process.stdout.write(text)): Publisher {
  return {
    name: 'stdout-json',
    observation: (o) => write(formatOutputLine(observationLine(o))),
    report: (r) => write(formatOutputLine(reportLine(r))),
  };
}

/** `watch`: a line a person reads, time and kind first; every value escaped, as it may come from the network or a log. */
export function humanLinesPublisher(write: (text: string) => void = (text) => process.stdout.write(text)): Publisher {
  return {
    name: 'stdout-human',
    observation: (o) => write(`${printable(humanObservation(o))}\n`),
    report: (r) => write(`${printable(`${clockTime(r.episode.closedAt.realtimeMs)}  report       ${reportSummary(r)}`)}\n`),
  };
}

/** The log's one line for a finished episode. */
export function reportSummary(report: Report): string {
  const triggers = [...new Set(report.episode.triggers.map((t) => t.kind))].join(',');
  return `episode ${report.episode.id}: ${report.verdict} after ${(report.episode.durationMs / 1000).toFixed(1)} s (triggers ${triggers}; remediation ${report.remediation.outcome})`;
}

/** `status`: one recorded episode a line, oldest first. */
export function statusLine(r: Report): string {
  const when = new Date(r.episode.openedAt.realtimeMs).toISOString();
  const triggers = [...new Set(r.episode.triggers.map((x) => x.kind))].join(',');
  const heal = r.remediation.timeToHealMs !== null ? ` in ${r.remediation.timeToHealMs.toFixed(0)} ms` : '';
  return `${when}  ${r.verdict.padEnd(11)} ${(r.episode.durationMs / 1000).toFixed(1).padStart(6)} s  ` +
    `remediation ${r.remediation.outcome}${heal}  triggers ${triggers}${r.episode.migrationId ? `  migration ${r.episode.migrationId}` : ''}`;
}

function clockTime(realtimeMs: number): string {
  return new Date(realtimeMs).toISOString().slice(11, 23);
}

/** Scalars as key=value, lists and objects shortened: enough to follow along, `--json` for the whole of it. */
function humanObservation(o: Observation): string {
  const { kind, at, ...rest } = o;
  const fields = Object.entries(kind === 'link' ? { ...o.link, action: o.action, event: o.event } : rest)
    .filter(([, value]) => value !== null && value !== undefined)
    .map(([key, value]) => `${key}=${Array.isArray(value) ? `[${value.length}]` : typeof value === 'object' ? '{…}' : String(value)}`);
  return `${clockTime(at.realtimeMs)}  ${kind.padEnd(12)} ${fields.join(' ')}`;
}

/** `snapshot` without --json: each probe and what it holds, counted; `--json` for the state itself. */
export function humanSnapshot(snapshot: Extract<OutputLine, { type: 'snapshot' }>): string {
  const lines = [`flinch-agent ${snapshot.agentVersion} on ${snapshot.hostname}`];
  for (const [probe, state] of Object.entries(snapshot.probes)) {
    const entries = typeof state === 'object' && state !== null ? Object.entries(state) : [['value', state]];
    const fields = entries.map(([key, value]) => `${key}: ${Array.isArray(value) ? `${value.length}` : typeof value === 'object' && value !== null ? `${Object.keys(value).length} entries` : String(value)}`);
    lines.push(`${probe.padEnd(11)} ${fields.join(', ')}`);
  }
  return lines.map((line) => `${printable(line)}\n`).join('');
}
