// flinch compare on two real campaigns (the sim driver: the real agent in a namespace "guest", frozen by a cgroup):
// the same migrations, once with a 0.3 s and once with a 1.5 s freeze on top. The longer freeze must read as a worse
// blackout in that row and nowhere else it cannot be told.
import t from 'tap';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Comparison } from '../../harness/compare/compare-results.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';

t.test('two sim campaigns, one freezing the guest longer: its row is worse in its blackout, and the gate exits 5', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'flinch-compare-e2e-'));
  const campaign = async (name: string, longPauseMs: number) => {
    const out = path.join(root, name);
    const run = await runCli([FLINCH, 'campaign', '--driver', 'sim', '--faults', 'long-pause', '--migrations', '4', '--expect', 'disrupted', '--long-pause', String(longPauseMs), '--out', out], { timeoutMs: 400_000 });
    t.equal(run.code, 0, `${name}: ${run.stderr.split('\n').slice(-4).join('\n')}`);
    return out;
  };
  const short = await campaign('short-freeze', 300);
  const long = await campaign('long-freeze', 1500);
  const run = await runCli([FLINCH, 'compare', short, long, '--format', 'json']);
  t.equal(run.code, 5, `a worse row fails the gate: ${run.stderr}`);
  const comparison = JSON.parse(run.stdout) as Comparison;
  const row = comparison.rows.find((r) => r.key === 'sim · long-pause')!;
  t.ok(row, 'the long-pause row is compared');
  t.equal(row.sides[0]!.n, 4);
  t.equal(row.sides[1]!.n, 4);
  const blackout = row.against[0]!.metrics.find((m) => m.metric === 'blackoutMs')!;
  t.equal(blackout.change, 'worse', `blackout ${blackout.baseline.median} → ${blackout.candidate.median} ms, p ${blackout.p}`);
  t.ok(blackout.candidate.median! - blackout.baseline.median! > 900, 'by about the 1.2 s of freeze added');
  t.equal(row.against[0]!.change, 'worse');
  const table = await runCli([FLINCH, 'compare', short, long]);
  t.match(table.stdout, /sim · long-pause .* WORSE \(.*blackout worse/);
});
