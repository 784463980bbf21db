// `flinch-agent status`: the last episodes from reports.jsonl, as lines a person reads or as typed JSON lines.
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import { sampleReport } from '../helpers/collector-fixtures.js';
import { FLINCH_AGENT, runCli } from '../helpers/run-cli.js';

t.test('status reads the tail of reports.jsonl, skips a torn line, and escapes what it prints', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-status-'));
  const reports = [1, 2, 3].map((n) => sampleReport('vm-1', n, n === 3 ? 'healed' : 'noticed'));
  // A file is input too: a control character in it reaches the terminal escaped.
  reports[2]!.episode.migrationId = 'mig\u001b[2J-3';
  writeFileSync(path.join(dir, 'reports.jsonl'), `${reports.map((r) => JSON.stringify(r)).join('\n')}\n{"torn":\n`);
  const human = await runCli([FLINCH_AGENT, 'status', '--state-dir', dir, '--last', '2']);
  t.equal(human.code, 0, human.stderr);
  const lines = human.stdout.trimEnd().split('\n');
  t.equal(lines.length, 2, 'the last two episodes');
  t.match(lines[1], /healed .* migration mig\\x1b\[2J-3$/);
  t.match(human.stderr, /1 unreadable line\(s\) in reports\.jsonl skipped/);
  const json = await runCli([FLINCH_AGENT, 'status', '--state-dir', dir, '--json']);
  t.equal(json.code, 0, json.stderr);
  const parsed = json.stdout.trimEnd().split('\n').map((line) => JSON.parse(line));
  t.same(parsed.map((l) => [l.type, l.schema, l.report.episode.id]), reports.map((r) => ['report', 'flinch.report/v1', r.episode.id]));
  const empty = await runCli([FLINCH_AGENT, 'status', '--state-dir', mkdtempSync(path.join(os.tmpdir(), 'flinch-status-'))]);
  t.match(empty.stdout, /^no episodes recorded in /);
});
