import type { MigrationResult, SeenLinkEvent } from './lab-results.js';
import { driverLabelOf, faultsLabelOf } from './result-labels.js';

function formatMs(value: number | null, digits = 0): string {
  return value === null ? '-' : value.toFixed(digits);
}

/** "10 (notify-peers×5, igmp-resend×5)": the count, then what kinds they were. */
export function summariseLinkEvents(events: readonly SeenLinkEvent[]): string {
  if (events.length === 0) return '0';
  const counts = new Map<string, number>();
  for (const e of events) {
    const label = e.action === 'del' ? `del ${e.ifname}` : (e.event ?? 'change');
    counts.set(label, (counts.get(label) ?? 0) + 1);
  }
  return `${events.length} (${[...counts].map(([label, n]) => `${label}×${n}`).join(', ')})`;
}

export function renderTable(rows: readonly MigrationResult[]): string {
  const header = ['#', 'driver', 'faults', 'total ms', 'downtime ms', 'pause ms', 'guest clock lag ms', 'blackout ms', 'link events', 'verdict'];
  const body = rows.map((r) => [
    String(r.index),
    driverLabelOf(r),
    faultsLabelOf(r),
    formatMs(r.totalMs),
    formatMs(r.downtimeMs),
    formatMs(r.pauseMs ?? null, 1),
    formatMs(r.clockLagMs, 1),
    r.blackout ? formatMs(r.blackout.longestGapMs, 1) : '-',
    summariseLinkEvents(r.linkEvents),
    `${r.verdictSource === 'agent' ? r.verdict : `${r.verdict} (${r.verdictSource})`}${r.error ? ' (migration failed)' : r.passed ? '' : ' ✗'}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const numeric = new Set([0, 3, 4, 5, 6, 7]);
  const line = (cells: string[]) =>
    cells.map((c, i) => (numeric.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}
