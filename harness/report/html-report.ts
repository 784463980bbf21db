import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { LabResults } from './lab-results.js';
import { controlLine, faultsLabelOf } from './result-labels.js';
import { migrationTimeline, type TimelineItem } from './migration-timeline.js';
import { escapeHtml } from './markup-escape.js';


/** Chart.js's UMD build, inlined so that the page works offline and from a CI artifact. */
function chartJsSource(): string {
  const require = createRequire(import.meta.url);
  // The package exports only its module entry points; the UMD build sits beside them in dist/.
  return readFileSync(path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.min.js'), 'utf8');
}

const VERDICT_COLOURS: Record<string, string> = { transparent: '#2e7d32', noticed: '#f9a825', healed: '#1565c0', disrupted: '#c62828', unknown: '#757575' };

/** The stretches of the blackout around the resume, bottom to top of each stacked bar. */
const SPLIT_PARTS = [
  { key: 'beforePauseMs', label: 'before the pause', colour: '#90a4ae' },
  { key: 'pauseMs', label: 'pause (STOP to RESUME)', colour: '#8e24aa' },
  { key: 'untilAnnouncementMs', label: 'resumed, not yet announced', colour: '#f9a825' },
  { key: 'untilBridgeMs', label: 'announced, bridge not yet moved', colour: '#1565c0' },
  { key: 'restMs', label: 'the rest (guest recovering)', colour: '#c62828' },
] as const;

type Migration = LabResults['migrations'][number];

/** The evidence, collapsed: a count one can open. */
function evidenceCell(m: Migration): string {
  if (m.error) return escapeHtml(m.error);
  if (m.reasons.length === 0) return '';
  return `<details><summary>${m.reasons.length} evidence item${m.reasons.length === 1 ? '' : 's'}</summary><ul>${m.reasons.map((r) => `<li>${escapeHtml(r)}</li>`).join('')}</ul></details>`;
}

function announcementsCell(m: Migration): string {
  const n = m.network;
  if (!n) return '-';
  const counts = `${n.counts.rarp} RARP, ${n.counts.gratuitousArp} GARP, ${n.counts.unsolicitedNa} NA`;
  const first = n.firstAnnouncementMs === null ? 'none' : `first +${n.firstAnnouncementMs} ms`;
  const bridge = n.bridgeLearntMs === null ? 'bridge did not move' : `bridge → ${n.bridgeLearntPort} +${n.bridgeLearntMs} ms`;
  return escapeHtml(`${counts}; ${first}; ${bridge}`);
}

function outsideCell(m: Migration): string {
  const o = m.outside;
  if (!o) return '-';
  const lag = o.clockLagMs === null ? 'lag -' : `lag ${o.clockLagMs} ±${o.clockLagUncertaintyMs} ms`;
  return `<span class="verdict" style="background:${VERDICT_COLOURS[o.verdict] ?? '#757575'}">${escapeHtml(o.verdict)}</span> ` +
    escapeHtml(`${lag}, gap ${o.resumeGapMs ?? '-'} ms`);
}

/**
 * One self-contained HTML page: summary, Chart.js charts (hypervisor downtime vs true pause vs guest clock lag vs blackout
 * per migration; verdicts; guest-visible events per fault; the blackout around the resume split, stacked), and the
 * table of migrations with, where the lab watched its bridge, the announcements and the outside view.
 */
export function renderHtml(results: LabResults): string {
  const labels = results.migrations.map((m) => `#${m.index} ${m.method ? `${m.method} ` : ""}${faultsLabelOf(m)}`);
  const verdictCounts: Record<string, number> = {};
  for (const m of results.migrations) verdictCounts[m.verdict] = (verdictCounts[m.verdict] ?? 0) + 1;
  const perFault = new Map<string, { linkEvents: number; evidence: number; migrations: number }>();
  for (const m of results.migrations) {
    const key = faultsLabelOf(m);
    const entry = perFault.get(key) ?? { linkEvents: 0, evidence: 0, migrations: 0 };
    entry.linkEvents += m.linkEvents.length;
    entry.evidence += m.reasons.length;
    entry.migrations += 1;
    perFault.set(key, entry);
  }
  const data = {
    labels,
    downtime: results.migrations.map((m) => m.downtimeMs),
    pause: results.migrations.map((m) => m.pauseMs ?? null),
    clockLag: results.migrations.map((m) => m.clockLagMs),
    blackout: results.migrations.map((m) => m.blackout?.longestGapMs ?? null),
    outsideLag: results.migrations.map((m) => m.outside?.clockLagMs ?? null),
    timelines: [] as Array<{ index: number; items: TimelineItem[] }>,
    split: SPLIT_PARTS.map(({ key, label, colour }) => ({ label, colour, data: results.migrations.map((m) => m.network?.blackoutSplit?.[key] ?? null) })),
    verdicts: Object.keys(verdictCounts),
    verdictCounts: Object.values(verdictCounts),
    verdictColours: Object.keys(verdictCounts).map((v) => VERDICT_COLOURS[v] ?? '#757575'),
    faults: [...perFault.keys()],
    faultLinkEvents: [...perFault.values()].map((v) => +(v.linkEvents / v.migrations).toFixed(1)),
    faultEvidence: [...perFault.values()].map((v) => +(v.evidence / v.migrations).toFixed(1)),
  };
  const hasSplit = results.migrations.some((m) => m.network?.blackoutSplit);
  const hasOutside = results.migrations.some((m) => m.outside);
  const failed = results.migrations.filter((m) => !m.passed).length;
  const controls = controlLine(results.migrations);
  const rows = results.migrations
    .map(
      (m) => `<tr class="${m.passed ? 'pass' : 'fail'}"><td>${m.index}</td><td>${escapeHtml(faultsLabelOf(m))}</td><td>${m.totalMs ?? '-'}</td><td>${m.downtimeMs ?? '-'}</td><td>${m.pauseMs ?? '-'}</td>` +
        `<td>${m.clockLagMs ?? '-'}</td><td>${m.blackout ? `${m.blackout.longestGapMs} (${m.blackout.lost} lost)` : '-'}</td><td>${m.linkEvents.length}</td>` +
        (hasOutside ? `<td>${announcementsCell(m)}</td><td>${outsideCell(m)}</td>` : '') +
        `<td><span class="verdict" style="background:${VERDICT_COLOURS[m.verdict] ?? '#757575'}">${escapeHtml(m.verdict)}</span></td>` +
        `<td>${evidenceCell(m)}</td></tr>`,
    )
    .join('\n');
  data.timelines = results.migrations.map((m) => ({ index: m.index, items: migrationTimeline(m) }));
  const timelineSections = results.migrations
    .map((m) => `<section class="migration"><h3>#${m.index} ${escapeHtml(faultsLabelOf(m))}: <span class="verdict" style="background:${VERDICT_COLOURS[m.verdict] ?? '#757575'}">${escapeHtml(m.verdict)}</span></h3>` +
      `<div class="timeline"><canvas id="timeline-${m.index}"></canvas></div>${evidenceCell(m)}</section>`)
    .join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>flinch: ${escapeHtml(results.hypervisor.driver)} campaign, ${escapeHtml(results.startedAt)}</title>
<style>
 body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
 .charts { display: grid; grid-template-columns: 2fr 1fr; gap: 2em; }
 .chart { position: relative; height: 320px; }
 table { border-collapse: collapse; margin-top: 2em; width: 100%; }
 th, td { border-bottom: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
 tr.fail td:first-child { border-left: 4px solid #c62828; }
 .verdict { color: white; border-radius: 3px; padding: 1px 6px; }
 .timeline { position: relative; height: 170px; }
 section.migration { margin-top: 1.5em; }
 details summary { cursor: pointer; color: #555; }
</style>
</head>
<body>
<h1>Did the guest notice its migrations?</h1>
<p id="summary">${results.migrations.length} migrations with <b>${escapeHtml(results.hypervisor.driver)}</b> (${escapeHtml(results.hypervisor.xen ? `Xen ${results.hypervisor.xen} nested in QEMU ${results.hypervisor.qemu ?? ''}` : results.hypervisor.qemu ?? '')}),
guest ${escapeHtml(results.guest.kernel)}; expected <b>${results.campaign.expect}</b> or better: ${results.migrations.length - failed} passed, ${failed} failed.
Started ${escapeHtml(results.startedAt)}, ${(results.wallTimeMs / 1000).toFixed(0)} s.${controls ? `<br><span id="controls">Controls (sham migrations, nothing moved): ${escapeHtml(controls)}.</span>` : ''}</p>
<div class="charts">
 <div><h2>Hypervisor downtime, true pause, guest clock lag and blackout per migration (ms)</h2><div class="chart"><canvas id="timings"></canvas></div></div>
 <div><h2>Verdicts</h2><div class="chart"><canvas id="verdicts"></canvas></div></div>
 <div><h2>Guest-visible events per fault (mean per migration)</h2><div class="chart"><canvas id="faults"></canvas></div></div>
${hasSplit ? ' <div><h2>Where the blackout around the resume comes from (ms)</h2><div class="chart"><canvas id="split"></canvas></div></div>\n' : ''}</div>
<table>
<thead><tr><th>#</th><th>faults</th><th>total ms</th><th>downtime ms</th><th>pause ms</th><th>clock lag ms</th><th>blackout ms</th><th>link events</th>${hasOutside ? '<th>announcements</th><th>outside view (ICMP)</th>' : ''}<th>verdict</th><th>evidence</th></tr></thead>
<tbody>
${rows}
</tbody>
</table>
<h2>Timeline per migration</h2>
<p>ms after the migration's start; hover a mark for its details. Phases and the pause are QEMU's, announcements and the
bridge's move the lab bridge's, guest events as the collector received them from the agent.</p>
${timelineSections}
<script>${chartJsSource()}</script>
<script>
const data = ${JSON.stringify(data).replace(/</g, '\\u003c')};
new Chart(document.getElementById('timings'), {
  type: 'bar',
  data: { labels: data.labels, datasets: [
    { label: 'hypervisor downtime', data: data.downtime, backgroundColor: '#546e7a' },
    { label: 'true pause (STOP to RESUME)', data: data.pause, backgroundColor: '#8e24aa' },
    { label: 'guest clock lag', data: data.clockLag, backgroundColor: '#f9a825' },
    { label: 'blackout (UDP echo)', data: data.blackout, backgroundColor: '#c62828' },
    ...(data.outsideLag.some((x) => x !== null) ? [{ label: 'guest clock lag, outside (ICMP)', data: data.outsideLag, backgroundColor: '#6d4c41' }] : []),
  ] },
  options: { maintainAspectRatio: false, animation: false, scales: { y: { title: { display: true, text: 'ms' } } } },
});
if (document.getElementById('split')) new Chart(document.getElementById('split'), {
  type: 'bar',
  data: { labels: data.labels, datasets: data.split.map((p) => ({ label: p.label, data: p.data, backgroundColor: p.colour })) },
  options: { maintainAspectRatio: false, animation: false, scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: 'ms' } } } },
});
const TRACK_COLOURS = { migration: '#546e7a', network: '#1565c0', faults: '#c62828', guest: '#f9a825' };
const NAME_COLOURS = { 'stop-and-copy (paused)': '#8e24aa', 'no reply (icmp)': '#e57373', 'no reply (udp-echo)': '#e57373', rarp: '#00897b', 'gratuitous-arp': '#43a047', 'unsolicited-na': '#7cb342', 'bridge moved': '#283593' };
for (const { index, items } of data.timelines) {
  const ends = items.map((i) => i.endMs ?? i.startMs);
  const from = Math.min(0, ...items.map((i) => i.startMs));
  const to = Math.max(...ends, from + 1);
  const mark = (to - from) / 250;
  const points = items.map((i) => ({ x: [i.startMs, i.endMs ?? i.startMs + mark], y: i.track, name: i.name, detail: i.detail }));
  new Chart(document.getElementById('timeline-' + index), {
    type: 'bar',
    data: { labels: ['migration', 'network', 'faults', 'guest'].filter((t) => items.some((i) => i.track === t)), datasets: [{
      data: points, backgroundColor: items.map((i) => NAME_COLOURS[i.name] ?? TRACK_COLOURS[i.track]), barPercentage: 0.9, categoryPercentage: 0.9,
    }] },
    options: {
      indexAxis: 'y', maintainAspectRatio: false, animation: false, plugins: { legend: { display: false },
        tooltip: { callbacks: { title: (c) => c[0].raw.name, label: (c) => c.raw.detail + ' (' + c.raw.x[0].toFixed(1) + ' ms)' } } },
      scales: { x: { type: 'linear', min: from, max: to, title: { display: true, text: "ms after the migration's start" } } },
    },
  });
}
new Chart(document.getElementById('verdicts'), {
  type: 'doughnut',
  data: { labels: data.verdicts, datasets: [{ data: data.verdictCounts, backgroundColor: data.verdictColours }] },
  options: { maintainAspectRatio: false, animation: false },
});
new Chart(document.getElementById('faults'), {
  type: 'bar',
  data: { labels: data.faults, datasets: [
    { label: 'link events', data: data.faultLinkEvents, backgroundColor: '#1565c0' },
    { label: 'evidence items', data: data.faultEvidence, backgroundColor: '#8e24aa' },
  ] },
  options: { maintainAspectRatio: false, animation: false },
});
</script>
</body>
</html>
`;
}
