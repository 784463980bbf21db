// Reads a lab campaign's results.json and prints, for its real migrations, how the guest clock lag the time probes
// measured and QEMU's downtime compare with the true pause (STOP to RESUME), and for its controls the verdicts; where
// the lab watched its bridge and sent ICMP timestamps, the outside view and the blackout around the resume, split.
// Usage: node --import ./bench/register-ts.mjs bench/pause-vs-lag.ts DIR
import { readLabResults } from '../harness/report/lab-results.js';
import { controlLine } from '../harness/report/result-labels.js';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: pause-vs-lag.ts DIR (a campaign --out with results.json)\n');
  process.exit(2);
}
const results = readLabResults(dir);
const real = results.migrations.filter((m) => !m.control && typeof m.pauseMs === 'number' && m.clockLagMs !== null);
const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
};
const describe = (name: string, values: number[]) =>
  `${name}: median ${quantile(values, 0.5).toFixed(2)} ms, min ${Math.min(...values).toFixed(2)}, max ${Math.max(...values).toFixed(2)}, ` +
  `median |error| ${quantile(values.map(Math.abs), 0.5).toFixed(2)} ms, 90th percentile |error| ${quantile(values.map(Math.abs), 0.9).toFixed(2)} ms`;
process.stdout.write(`${real.length} migrations with a true pause and a clock lag\n`);
process.stdout.write(`true pause: median ${quantile(real.map((m) => m.pauseMs!), 0.5).toFixed(2)} ms\n`);
process.stdout.write(`${describe('guest clock lag - true pause', real.map((m) => m.clockLagMs! - m.pauseMs!))}\n`);
process.stdout.write(`${describe("QEMU's downtime - true pause", real.map((m) => m.downtimeMs! - m.pauseMs!))}\n`);
process.stdout.write(`probes' own uncertainty: median ±${quantile(real.map((m) => m.clockLagUncertaintyMs ?? 0), 0.5).toFixed(2)} ms\n`);
const controls = results.migrations.filter((m) => m.control);
const verdicts = new Map<string, number>();
for (const c of controls) verdicts.set(c.verdict, (verdicts.get(c.verdict) ?? 0) + 1);
process.stdout.write(`${controlLine(results.migrations) ?? 'no controls'}${controls.length ? ` (${[...verdicts].map(([v, n]) => `${v} ${n}`).join(', ')})` : ''}\n`);
const realVerdicts = new Map<string, number>();
for (const m of results.migrations.filter((x) => !x.control)) realVerdicts.set(m.verdict, (realVerdicts.get(m.verdict) ?? 0) + 1);
process.stdout.write(`real migrations' verdicts: ${[...realVerdicts].map(([v, n]) => `${v} ${n}`).join(', ')}\n`);

// The outside view (ICMP timestamps answered by the guest kernel), where the lab sent them.
const outside = real.filter((m) => m.outside?.clockLagMs != null);
if (outside.length > 0) {
  process.stdout.write(`${describe('outside (ICMP) clock lag - true pause', outside.map((m) => m.outside!.clockLagMs! - m.pauseMs!))}\n`);
  process.stdout.write(`outside uncertainty: median ±${quantile(outside.map((m) => m.outside!.clockLagUncertaintyMs ?? 0), 0.5).toFixed(2)} ms\n`);
  const outsideControls = controls.filter((c) => c.outside);
  const falsePositives = outsideControls.filter((c) => c.outside!.verdict !== 'transparent').length;
  process.stdout.write(`outside verdict on controls: ${falsePositives} of ${outsideControls.length} worse than transparent\n`);
  const outsideVerdicts = new Map<string, number>();
  for (const m of results.migrations.filter((x) => !x.control && x.outside)) outsideVerdicts.set(m.outside!.verdict, (outsideVerdicts.get(m.outside!.verdict) ?? 0) + 1);
  process.stdout.write(`outside verdicts on real migrations: ${[...outsideVerdicts].map(([v, n]) => `${v} ${n}`).join(', ')}\n`);
}

// The blackout around the resume, split, per fault row: medians of each stretch.
const byFault = new Map<string, typeof results.migrations>();
for (const m of results.migrations.filter((x) => !x.control && x.network?.blackoutSplit)) {
  const key = m.faults.length ? m.faults.join('+') : 'plain';
  byFault.set(key, [...(byFault.get(key) ?? []), m]);
}
for (const [fault, ms] of byFault) {
  const part = (k: 'beforePauseMs' | 'pauseMs' | 'untilAnnouncementMs' | 'untilBridgeMs' | 'restMs') => quantile(ms.map((m) => m.network!.blackoutSplit![k]), 0.5).toFixed(1);
  const gaps = ms.map((m) => m.network!.resumeGap!.toMs - m.network!.resumeGap!.fromMs);
  const udp = ms.map((m) => m.blackout?.longestGapMs ?? 0);
  const firstRarp = ms.map((m) => m.network!.announcements.find((a) => a.kind === 'rarp')?.afterResumeMs ?? NaN).filter(Number.isFinite);
  const firstGarp = ms.map((m) => m.network!.announcements.find((a) => a.kind === 'gratuitous-arp')?.afterResumeMs ?? NaN).filter(Number.isFinite);
  process.stdout.write(
    `${fault} (${ms.length}): gap around RESUME median ${quantile(gaps, 0.5).toFixed(1)} ms (min ${Math.min(...gaps).toFixed(1)}, max ${Math.max(...gaps).toFixed(1)}) = ` +
      `before pause ${part('beforePauseMs')} + pause ${part('pauseMs')} + until announced ${part('untilAnnouncementMs')} + until bridge ${part('untilBridgeMs')} + rest ${part('restMs')} (medians); ` +
      `UDP-echo blackout median ${quantile(udp, 0.5).toFixed(1)} ms; first RARP +${firstRarp.length ? quantile(firstRarp, 0.5).toFixed(1) : '-'} ms, first gratuitous ARP +${firstGarp.length ? quantile(firstGarp, 0.5).toFixed(1) : '-'} ms; ` +
      `announcements per migration: ${quantile(ms.map((m) => m.network!.counts.rarp), 0.5)} RARP, ${quantile(ms.map((m) => m.network!.counts.gratuitousArp), 0.5)} GARP, ${quantile(ms.map((m) => m.network!.counts.unsolicitedNa), 0.5)} NA\n`,
  );
}
