// Benchmark: how closely the agent's clock lag (guest realtime vs host, NTP-style) tracks QEMU's own downtime figure.
// Usage: node --import ./bench/register-ts.mjs bench/lab-clock-lag.ts [migrations]   (runs flinch lab, as root)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LabResults } from '../harness/report/lab-results.js';
import { median } from '../contract/clock-offset.js';
import { projectRoot } from '../harness/project-paths.js';

const migrations = process.argv[2] ?? '10';
const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-bench-lag-'));
const run = spawnSync(process.execPath, [path.join(projectRoot(), 'dist/harness/cli.js'), 'lab', '--faults', 'none', '--migrations', migrations, '--out', out], {
  stdio: ['ignore', 'inherit', 'inherit'],
});
if (run.status !== 0) process.exit(run.status ?? 1);
const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
const pairs = results.migrations
  .filter((m) => m.clockLagMs !== null && m.downtimeMs !== null)
  .map((m) => ({ lag: m.clockLagMs!, downtime: m.downtimeMs!, excess: m.clockLagMs! - m.downtimeMs! }));
const excess = pairs.map((p) => p.excess);
const sorted = [...excess].sort((a, b) => a - b);
console.log(`\nlab wall time: ${(results.wallTimeMs / 1000).toFixed(1)} s, boot to agent ${(results.guest.bootToAgentMs / 1000).toFixed(1)} s`);
console.log(`lag/downtime pairs (ms): ${pairs.map((p) => `${p.lag.toFixed(1)}/${p.downtime}`).join(', ')}`);
console.log(
  `lag − downtime: median ${median(excess).toFixed(1)} ms, min ${sorted[0]!.toFixed(1)}, max ${sorted[sorted.length - 1]!.toFixed(1)}, ` +
    `n=${excess.length}`,
);
