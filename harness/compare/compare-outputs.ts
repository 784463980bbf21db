import os from 'node:os';
import path from 'node:path';
import { printable } from '../../contract/command-line.js';
import { escapeHtml, escapeXml } from '../report/markup-escape.js';
import type { CampaignLabel, Comparison, MetricComparison, RowComparison, SideSummary } from './compare-results.js';

export const COMPARE_FORMATS = ['table', 'json', 'html', 'junit'] as const;
export type CompareFormat = (typeof COMPARE_FORMATS)[number];

export function renderComparison(comparison: Comparison, format: CompareFormat): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(comparison, null, 2)}\n`;
    case 'table':
      return renderCompareTable(comparison);
    case 'html':
      return renderCompareHtml(comparison);
    case 'junit':
      return renderCompareJunit(comparison);
  }
}

/** "A: qemu 7.2 → 7.2, guest 6.1.0-56, 14 migrations (results-7.2)" */
export function describeCampaign(label: CampaignLabel, index: number): string {
  const version = (v: string) => v.replace(/ \(.*\)$/, '');
  const hypervisor = label.xen
    ? `xen ${label.xen}`
    : label.qemu
      ? `qemu ${version(label.qemu)}${label.destQemu && version(label.destQemu) !== version(label.qemu) ? ` → ${version(label.destQemu)}` : ''}${label.machine ? ` (${label.machine})` : ''}`
      : label.driver;
  return `${letter(index)}: ${hypervisor}, guest ${label.guestKernel}, ${label.migrations} migration${label.migrations === 1 ? '' : 's'} (${path.basename(label.dir)})`;
}

export function letter(index: number): string {
  return index < 26 ? String.fromCharCode(65 + index) : `#${index + 1}`;
}

function verdictCounts(side: SideSummary | null): string {
  if (!side) return '-';
  const parts = Object.entries(side.verdicts).filter(([, n]) => n > 0).map(([verdict, n]) => `${verdict}×${n}`);
  return parts.join(' ') || '-';
}

function formatValue(value: number | null, unit: MetricComparison['unit']): string {
  if (value === null) return '-';
  return unit === 'count' ? String(Math.round(value * 10) / 10) : value.toFixed(1);
}

/** "73.5 → 91.2 (p 0.008)": the medians, and the test's p where there were enough values for one. */
function metricCell(metric: MetricComparison): string {
  const p = metric.p === null ? (metric.change === 'too-few' ? ' (too few)' : '') : ` (p ${metric.p < 0.001 ? '<0.001' : metric.p.toFixed(3)})`;
  return `${formatValue(metric.baseline.median, metric.unit)} → ${formatValue(metric.candidate.median, metric.unit)}${p}`;
}

const CHANGE_WORDS: Record<RowComparison['against'][number]['change'], string> = {
  same: 'same',
  better: 'better',
  worse: 'WORSE',
  'too-few': 'too few to tell',
  'only-baseline': 'only in the baseline',
  'only-candidate': 'only in the candidate',
};

/** Which metrics moved, e.g. "pause worse, link events better". */
function movedMetrics(metrics: readonly MetricComparison[]): string {
  return metrics.filter((m) => m.change === 'worse' || m.change === 'better').map((m) => `${m.label} ${m.change}`).join(', ');
}

export function renderCompareTable(comparison: Comparison): string {
  const blocks: string[] = [comparison.campaigns.map((c, i) => describeCampaign(c, i)).map(printable).join('\n')];
  for (const totals of comparison.totals) {
    const i = totals.candidate;
    const header = ['row', `n ${letter(0)}/${letter(i)}`, `verdicts (${letter(0)} | ${letter(i)})`, 'pause ms', 'guest clock lag ms', 'blackout ms', 'link events', `${letter(i)} against ${letter(0)}`];
    const body = comparison.rows.map((row) => {
      const against = row.against[i - 1]!;
      const metric = (name: string) => {
        const m = against.metrics.find((x) => x.metric === name);
        return m ? metricCell(m) : '-';
      };
      const moved = movedMetrics(against.metrics);
      return [
        printable(row.key),
        `${row.sides[0]?.n ?? 0}/${row.sides[i]?.n ?? 0}`,
        `${verdictCounts(row.sides[0] ?? null)} | ${verdictCounts(row.sides[i] ?? null)}`,
        metric('pauseMs'),
        metric('clockLagMs'),
        metric('blackoutMs'),
        metric('linkEvents'),
        `${CHANGE_WORDS[against.change]}${moved ? ` (${moved})` : ''}`,
      ];
    });
    const widths = header.map((h, c) => Math.max(h.length, ...body.map((cells) => cells[c]!.length)));
    const line = (cells: string[]) => cells.map((cell, c) => cell.padEnd(widths[c]!)).join('  ').trimEnd();
    blocks.push(
      [
        '',
        line(header),
        widths.map((w) => '─'.repeat(w)).join('  '),
        ...body.map(line),
        `${letter(i)} against ${letter(0)}: ${totals.worse} worse, ${totals.better} better, ${totals.same} same, ${totals.tooFew} too few to tell`,
      ].join('\n'),
    );
  }
  blocks.push(`Mann–Whitney (permutation p), alpha ${comparison.settings.alpha}; a median must also move ${comparison.settings.minChangePercent}% and 1 unit`);
  return `${blocks.join('\n')}\n`;
}

const CHANGE_COLOURS: Record<string, string> = { worse: '#c62828', better: '#2e7d32', same: '#555', 'too-few': '#757575' };

export function renderCompareHtml(comparison: Comparison): string {
  const sections = comparison.totals.map((totals) => {
    const i = totals.candidate;
    const rows = comparison.rows.map((row) => {
      const against = row.against[i - 1]!;
      const cells = ['verdict', 'pauseMs', 'clockLagMs', 'blackoutMs', 'linkEvents'].map((name) => {
        const m = against.metrics.find((x) => x.metric === name);
        if (!m) return '<td>-</td>';
        const text = name === 'verdict' ? `${verdictCounts(row.sides[0] ?? null)} → ${verdictCounts(row.sides[i] ?? null)}` : metricCell(m);
        return `<td style="color:${CHANGE_COLOURS[m.change] ?? '#555'}" title="U ${m.u ?? '-'}, p ${m.p ?? '-'}, smallest possible p ${m.smallestP?.toFixed(4) ?? '-'}">${escapeHtml(text)}</td>`;
      });
      return `<tr><th scope="row">${escapeHtml(row.key)}</th><td>${row.sides[0]?.n ?? 0}/${row.sides[i]?.n ?? 0}</td>${cells.join('')}<td style="font-weight:bold;color:${CHANGE_COLOURS[against.change] ?? '#555'}">${escapeHtml(CHANGE_WORDS[against.change])}</td></tr>`;
    });
    return [
      `<h2>${letter(i)} against ${letter(0)}: ${totals.worse} worse, ${totals.better} better, ${totals.same} same, ${totals.tooFew} too few to tell</h2>`,
      '<table><thead><tr><th>row</th><th>n</th><th>verdicts</th><th>pause ms</th><th>guest clock lag ms</th><th>blackout ms</th><th>link events</th><th>change</th></tr></thead>',
      `<tbody>${rows.join('\n')}</tbody></table>`,
    ].join('\n');
  });
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8"><title>flinch compare</title>',
    '<style>body{font-family:system-ui,sans-serif;margin:2em}table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left}thead th{background:#eee}</style>',
    '</head><body>',
    '<h1>flinch compare</h1>',
    `<ul>${comparison.campaigns.map((c, i) => `<li>${escapeHtml(describeCampaign(c, i))}</li>`).join('')}</ul>`,
    ...sections,
    `<p>Medians, baseline → candidate. Mann–Whitney's test (permutation p-value); a change counts at p &lt; ${comparison.settings.alpha} when the median also moved ${comparison.settings.minChangePercent}% and one unit. Hover a cell for U and p.</p>`,
    '</body></html>',
    '',
  ].join('\n');
}

/** One testsuite per candidate, one testcase per row: a row that got worse is a failure, one with too few runs skipped. */
export function renderCompareJunit(comparison: Comparison): string {
  const suites = comparison.totals.map((totals) => {
    const i = totals.candidate;
    const name = `flinch compare ${letter(i)} against ${letter(0)}`;
    const cases = comparison.rows.map((row) => {
      const against = row.against[i - 1]!;
      const lines = [`    <testcase classname="flinch.compare.${escapeXml(row.driver)}" name="${escapeXml(row.faults)}" time="0">`];
      const detail = against.metrics.map((m) => `${m.label}: ${metricCell(m)} ${m.change}`).join('\n');
      if (against.change === 'worse') {
        const message = `worse than the baseline: ${movedMetrics(against.metrics)}`;
        lines.push(`      <failure type="regression" message="${escapeXml(message)}">${escapeXml(detail)}</failure>`);
      } else if (against.change !== 'same' && against.change !== 'better') {
        lines.push(`      <skipped message="${escapeXml(CHANGE_WORDS[against.change])}"/>`);
      }
      lines.push(`      <system-out>${escapeXml(detail)}</system-out>`, '    </testcase>');
      return lines.join('\n');
    });
    const skipped = comparison.rows.filter((r) => !['worse', 'same', 'better'].includes(r.against[i - 1]!.change)).length;
    return [
      `  <testsuite name="${escapeXml(name)}" tests="${comparison.rows.length}" failures="${totals.worse}" errors="0" skipped="${skipped}" time="0" hostname="${escapeXml(os.hostname())}">`,
      '    <properties>',
      `      <property name="baseline" value="${escapeXml(describeCampaign(comparison.campaigns[0]!, 0))}"/>`,
      `      <property name="candidate" value="${escapeXml(describeCampaign(comparison.campaigns[i]!, i))}"/>`,
      `      <property name="alpha" value="${comparison.settings.alpha}"/>`,
      '    </properties>',
      ...cases,
      '  </testsuite>',
    ].join('\n');
  });
  const failures = comparison.totals.reduce((s, t) => s + t.worse, 0);
  return ['<?xml version="1.0" encoding="UTF-8"?>', `<testsuites name="flinch compare" tests="${comparison.rows.length * comparison.totals.length}" failures="${failures}" errors="0">`, ...suites, '</testsuites>', ''].join('\n');
}
