import t from 'tap';
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StateDir } from '../../../agent/state/state-dir.js';
import { assertValidReport, REPORT_SCHEMA_ID } from '../../../contract/report-schema.js';
import { SAMPLE_OBSERVATIONS } from '../../helpers/observation-samples.js';

const isNumbers = (v: unknown): v is number[] => Array.isArray(v) && v.every((x) => typeof x === 'number');

t.test('state files: atomic, versioned, and corrupt ones moved aside', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-statedir-'));
  const lines: string[] = [];
  const state = new StateDir(dir, (l) => lines.push(l));
  state.writeJson('a.json', 2, [1, 2, 3]);
  t.same(state.readJson('a.json', 2, isNumbers), [1, 2, 3]);
  t.same(readdirSync(dir), ['a.json'], 'no temp file left behind');
  t.equal(state.readJson('a.json', 3, isNumbers), null, 'another version is not read as this one');
  t.match(lines[0], /version 2, expected 3.*moved to/);
  writeFileSync(path.join(dir, 'b.json'), '{"version":1,"data":["x"]}');
  t.equal(state.readJson('b.json', 1, isNumbers), null, 'wrong shape');
  t.equal(state.readJson('missing.json', 1, isNumbers), null, 'absent is simply absent');
  state.appendLine('r.jsonl', { n: 1 });
  writeFileSync(path.join(dir, 'r.jsonl'), '{"torn', { flag: 'a' }); // a crash in the middle of a line
  state.appendLine('r.jsonl', { n: 2 });
  t.same(state.readLines('r.jsonl', 10), { values: [{ n: 1 }, { n: 2 }], skipped: 1 });
});

t.test('flinch.report/v1 refuses what does not fit', async (t) => {
  const stamp = { realtimeMs: 1, monotonicMs: 1 };
  const report = {
    schema: REPORT_SCHEMA_ID, agentId: 'a', hostname: 'h', agentVersion: '0.1.0',
    episode: { id: 'e', migrationId: null, openedAt: stamp, closedAt: stamp, durationMs: 0, triggers: [] },
    verdict: 'noticed', evidence: [], thresholds: { clockStepMs: 1000, settleMs: 3000 },
    remediation: { mode: 'on', outcome: 'not-needed', timeToHealMs: null, actions: [] },
    observations: [SAMPLE_OBSERVATIONS.link], observationsDropped: 0,
  };
  t.doesNotThrow(() => assertValidReport(report));
  t.throws(() => assertValidReport({ ...report, verdict: 'fine' }), /invalid flinch\.report\/v1: \/verdict/);
  t.throws(() => assertValidReport({ ...report, extra: 1 }), /must NOT have additional properties/);
  t.throws(() => assertValidReport({ ...report, agentId: '' }), /\/agentId/);
  t.throws(() => assertValidReport({ ...report, observations: [{ at: stamp }] }), /\/observations\/0/);
  t.throws(() => assertValidReport({ ...report, observations: [{ ...SAMPLE_OBSERVATIONS.link, anything: 'else' }] }), /\/observations\/0 must NOT have additional properties/);
});

t.test('reports.jsonl is bounded: rotated to .1 past its limit, and read back from its end only', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-statedir-'));
  const state = new StateDir(dir, () => undefined);
  for (let n = 1; n <= 30; n += 1) state.appendLine('r.jsonl', { n, pad: 'x'.repeat(90) }, 1000);
  const sizes = readdirSync(dir).sort().map((f) => [f, statSync(path.join(dir, f)).size]);
  t.same(sizes.map(([f]) => f), ['r.jsonl', 'r.jsonl.1'], 'one rotation kept, no more');
  t.ok(sizes.every(([, size]) => (size as number) < 1000 + 120), `each under the limit plus a line: ${JSON.stringify(sizes)}`);
  const { values } = state.readLines<{ n: number }>('r.jsonl', 100);
  t.equal(values.at(-1)!.n, 30, 'the newest is in the live file');
  // Read from the last 250 bytes: the line that start cuts is not taken for a corrupt one.
  const tail = state.readLines<{ n: number }>('r.jsonl', 100, 250);
  t.same(tail.values.map((v) => v.n), [29, 30]);
  t.equal(tail.skipped, 0);
});
