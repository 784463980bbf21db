// A 1 GiB guest moved between two QEMUs on this host, RAM copied (pre-copy) against RAM shared (a /dev/shm file both
// processes map, x-ignore-shared), 7.2 → 7.2 and 7.2 → 10.0: the true pause, QEMU's downtime, the whole migration, the
// bytes sent and the blackout, each the median of N migrations of the QEMU lab (flinch campaign --driver qmp).
// Usage, as root: npm run build && node --import ./bench/register-ts.mjs bench/shared-memory.ts [migrations=5] [outDir]
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { projectRoot } from '../harness/project-paths.js';
import { readLabResults } from '../harness/report/lab-results.js';
import { median } from '../contract/clock-offset.js';

const migrations = Number(process.argv[2] ?? 5);
const out = process.argv[3] ?? mkdtempSync(path.join(os.tmpdir(), 'flinch-bench-shared-'));
const cli = path.join(projectRoot(), 'dist', 'harness', 'cli.js');

const cells = [
  { name: '7.2 → 7.2, pre-copy', args: [] },
  { name: '7.2 → 7.2, shared memory', args: ['--shared-memory'] },
  { name: '7.2 → 10.0, pre-copy', args: ['--dest-qemu', 'bookworm-backports'] },
  { name: '7.2 → 10.0, shared memory', args: ['--dest-qemu', 'bookworm-backports', '--shared-memory'] },
];

/** The median of the figures a cell has (a migration without one, such as no blackout, is left out); NaN for none. */
const medianOf = (values: number[]) => {
  const finite = values.filter((v) => Number.isFinite(v));
  return finite.length === 0 ? NaN : median(finite);
};

const rows: string[] = [];
for (const [i, cell] of cells.entries()) {
  const dir = path.join(out, `cell-${i + 1}`);
  const run = spawnSync(process.execPath, [cli, 'campaign', '--driver', 'qmp', '--memory', '1024', '--faults', 'none', '--migrations', String(migrations), '--expect', 'disrupted', '--out', dir, ...cell.args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (run.status !== 0) {
    rows.push(`| ${cell.name} | failed (exit ${run.status}): ${run.stderr.trim().split('\n').slice(-1)[0]} |`);
    continue;
  }
  const results = readLabResults(dir).migrations.filter((m) => !m.error);
  const m = (f: (x: (typeof results)[number]) => number | null | undefined) => medianOf(results.map((x) => f(x) ?? NaN));
  rows.push(`| ${cell.name} | ${results.length} | ${m((x) => x.pauseMs).toFixed(1)} | ${m((x) => x.downtimeMs).toFixed(0)} | ${m((x) => x.totalMs).toFixed(0)} | ${(m((x) => x.transferredBytes) / 1024 ** 2).toFixed(1)} | ${m((x) => x.blackout?.longestGapMs).toFixed(1)} |`);
  process.stderr.write(`${rows.at(-1)}\n`);
}
process.stdout.write(['| 1 GiB guest | migrations | pause ms (median) | QEMU downtime ms | total ms | sent MiB | blackout ms |', '|---|---|---|---|---|---|---|', ...rows, '', `(results in ${out})`, ''].join('\n'));
