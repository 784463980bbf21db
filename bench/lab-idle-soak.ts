// Benchmark (issue 13): the QEMU lab guest left idle, its agent on with every probe and --remediate on: `flinch lab
// --settle` waits MINUTES before its one plain migration and as long after it. Every report the collector stored
// that is not the migration's is an episode the agent opened on its own (the goal is none).
// Usage, as root: npm run build && node --import ./bench/register-ts.mjs bench/lab-idle-soak.ts MINUTES
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { projectRoot } from '../harness/project-paths.js';

const minutes = Number(process.argv[2] ?? 30);
const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-lab-soak-'));
const started = Date.now();
const run = spawnSync(process.execPath, [path.join(projectRoot(), 'dist', 'harness', 'cli.js'), 'lab', '--faults', 'none', '--migrations', '1',
  '--settle', String(minutes * 60_000), '--out', out], { stdio: ['ignore', 'inherit', 'inherit'], timeout: (minutes + 15) * 60_000 });
const db = new Database(path.join(out, 'collector.sqlite'), { readonly: true });
const rows = db.prepare('SELECT migration_id AS migrationId, verdict, body FROM reports ORDER BY received_ms').all() as Array<{ migrationId: string | null; verdict: string; body: string }>;
const unprompted = rows.filter((r) => r.migrationId === null);
console.log(JSON.stringify({
  minutesIdleAfterTheMigration: minutes,
  wallMinutes: +((Date.now() - started) / 60_000).toFixed(1),
  exitCode: run.status,
  reports: rows.length,
  migrationReports: rows.filter((r) => r.migrationId !== null).map((r) => r.verdict),
  episodesOpenedIdle: unprompted.length,
  idleTriggers: unprompted.map((r) => (JSON.parse(r.body) as { episode: { triggers: Array<{ kind: string; detail: string }> } }).episode.triggers.map((t) => `${t.kind}: ${t.detail}`)),
  out,
}, null, 2));
