import t from 'tap';
import { appendFileSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { CampaignJournal, JOURNAL_FILE, planCampaign } from '../../../harness/campaign/campaign-journal.js';
import { parseFaultMatrix } from '../../../harness/drivers/migration-driver.js';
import { tempDir } from '../../helpers/collector-fixtures.js';
import type { MigrationResult } from '../../../harness/report/lab-results.js';

const identity = { driver: 'qmp', faults: ['none', 'carrier-flap'], migrationsPerFault: 2 };
const result = (index: number) => ({ index, verdict: 'noticed' }) as unknown as MigrationResult;

t.test('the fault matrix: rows, composition with +, none, and clear errors', async (t) => {
  t.same(parseFaultMatrix('none,carrier-flap,link-down+guest-firewall-flush'), [[], ['carrier-flap'], ['link-down', 'guest-firewall-flush']]);
  t.throws(() => parseFaultMatrix('none,meteor-strike'), { message: /unknown fault "meteor-strike" \(known: none, carrier-flap, / });
  t.throws(() => parseFaultMatrix(' , '), { message: /no faults given/ });
  t.same(planCampaign(parseFaultMatrix('none,carrier-flap'), 2).map((p) => [p.index, p.faults.join('+') || 'none']), [[1, 'none'], [2, 'none'], [3, 'carrier-flap'], [4, 'carrier-flap']]);
});

t.test('controls are spread evenly among the real migrations, numbered with them', async (t) => {
  const label = (p: ReturnType<typeof planCampaign>[number]) => (p.control ? 'control' : p.faults.join('+') || 'none');
  const matrix = parseFaultMatrix('none,carrier-flap,link-down');
  t.same(planCampaign(matrix, 2, [], 2).map(label), ['none', 'none', 'control', 'carrier-flap', 'carrier-flap', 'control', 'link-down', 'link-down']);
  t.same(planCampaign(matrix, 2, [], 2).map((p) => p.index), [1, 2, 3, 4, 5, 6, 7, 8]);
  t.same(planCampaign(matrix, 1, [], 1).map(label), ['none', 'control', 'carrier-flap', 'link-down']);
  t.same(planCampaign(matrix, 1, [], 0).map(label), ['none', 'carrier-flap', 'link-down'], 'none asked, none planned');
  const many = planCampaign(matrix, 2, [], 20);
  t.equal(many.filter((p) => p.control).length, 20, 'more controls than migrations: all of them, still spread');
  t.same(many.slice(0, 4).map(label), ['control', 'control', 'control', 'none']);
  t.same(planCampaign(parseFaultMatrix('none'), 1, ['save-restore', 'migrate'], 1).map((p) => p.control ? 'control' : p.method), ['save-restore', 'control', 'migrate'], 'across methods too');
});

t.test('an interrupted campaign resumes where it stopped; a torn last line is run again', async (t) => {
  const dir = tempDir('flinch-journal-');
  const first = CampaignJournal.open(dir, identity, () => undefined);
  first.record(result(1));
  first.record(result(2));
  appendFileSync(path.join(dir, JOURNAL_FILE), '{"index":3,"verd');
  const lines: string[] = [];
  const resumed = CampaignJournal.open(dir, identity, (l) => lines.push(l));
  t.same([...resumed.done.keys()], [1, 2]);
  t.match(lines[0], /resuming: 2 migration\(s\) already in/);
  t.equal(readFileSync(path.join(dir, JOURNAL_FILE), 'utf8').split('\n')[0]!.includes('flinch.campaign-journal/v1'), true);
  // The migration run again is recorded on a line of its own, not glued onto the torn one: a third start has it.
  resumed.record(result(3));
  t.same([...CampaignJournal.open(dir, identity, () => undefined).done.keys()], [1, 2, 3], 'the re-run migration is kept');
});

t.test('a journal of another campaign is refused, not mixed in', async (t) => {
  const dir = tempDir('flinch-journal-');
  CampaignJournal.open(dir, identity, () => undefined).record(result(1));
  t.throws(() => CampaignJournal.open(dir, { ...identity, migrationsPerFault: 3 }, () => undefined), { message: /belongs to a different campaign/ });
});
