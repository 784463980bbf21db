// Reads a lab campaign's results.json and prints, for its real migrations, how the guest clock lag the time probes
// measured and QEMU's downtime compare with the true pause (STOP to RESUME), and for its controls the verdicts.
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
