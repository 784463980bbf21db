import { renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { renderHtml } from './html-report.js';
import { renderJunit } from './junit.js';
import { renderTap } from './tap.js';
import { renderTable } from './terminal-table.js';
import { writeLabResults, type LabResults } from './lab-results.js';

export const OUTPUT_FORMATS = ['json', 'junit', 'tap', 'html', 'table'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** Where each format is written inside a results folder. */
export const OUTPUT_FILES: Record<Exclude<OutputFormat, 'table'>, string> = {
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
  }
}

/** Writes every file output, each atomically; results.json first, since the others are made from it. */
export function writeAllOutputs(dir: string, results: LabResults): Record<string, string> {
  const written: Record<string, string> = { json: writeLabResults(dir, results) };
  for (const format of ['junit', 'tap', 'html'] as const) {
    const file = path.join(dir, OUTPUT_FILES[format]);
    writeFileSync(`${file}.tmp`, render(results, format));
    renameSync(`${file}.tmp`, file);
    written[format] = file;
  }
  return written;
}
