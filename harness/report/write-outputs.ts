import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderHtml } from './html-report.js';
import { renderJunit } from './junit.js';
import { renderTap } from './tap.js';
import { renderTable } from './terminal-table.js';
import { writeLabResults, type LabResults } from './lab-results.js';
import { traceEvents } from './migration-timeline.js';

export const OUTPUT_FORMATS = ['json', 'junit', 'tap', 'html', 'table', 'trace'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Where each format is written inside a results folder. */
export const OUTPUT_FILES: Record<Exclude<OutputFormat, 'table' | 'trace'>, string> = {
  json: 'results.json',
  junit: 'junit.xml',
  tap: 'results.tap',
  html: 'report.html',
};

export function render(results: LabResults, format: OutputFormat): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(results, null, 2)}\n`;
    case 'junit':
      return renderJunit(results);
    case 'tap':
      return renderTap(results);
    case 'html':
      return renderHtml(results);
    case 'table':
      return `${renderTable(results.migrations)}\n`;
    case 'trace':
      // Every migration in one trace, each its own process: one file to open for the whole campaign.
      return `${JSON.stringify({ traceEvents: results.migrations.flatMap((m) => traceEvents(m).traceEvents), displayTimeUnit: 'ms' })}\n`;
  }
}

/** The folder the per-migration traces go in: traces/migration-N.json, Chrome trace-event JSON. */
export const TRACES_DIR = 'traces';

/** Writes every file output, each atomically; results.json first, since the others are made from it. */
export function writeAllOutputs(dir: string, results: LabResults): Record<string, string> {
  const written: Record<string, string> = { json: writeLabResults(dir, results) };
  for (const format of ['junit', 'tap', 'html'] as const) {
    const file = path.join(dir, OUTPUT_FILES[format]);
    writeFileSync(`${file}.tmp`, render(results, format));
    renameSync(`${file}.tmp`, file);
    written[format] = file;
  }
  const traces = path.join(dir, TRACES_DIR);
  mkdirSync(traces, { recursive: true });
  for (const m of results.migrations) {
    const file = path.join(traces, `migration-${m.index}.json`);
    writeFileSync(`${file}.tmp`, `${JSON.stringify(traceEvents(m))}\n`);
    renameSync(`${file}.tmp`, file);
  }
  written.traces = traces;
  return written;
}
