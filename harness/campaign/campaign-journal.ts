import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { FaultName } from '../drivers/migration-driver.js';
import type { MigrationResult } from '../report/lab-results.js';

/** One migration of a campaign: its place in the run, how the guest is moved, and the faults composed into it. */
export interface PlannedMigration {
  index: number;
  /** A sham migration: announced and measured like the others, but nothing moves (its verdict is a false positive or not). */
  control?: true;
  /** For a driver with more than one way of moving a guest (xl: save-restore or migrate); absent otherwise. */
  method?: string;
  faults: FaultName[];
}

/**
 * The matrix: every fault row, `migrationsPerFault` times, rows in the order given; with methods, the whole matrix once
 * per method, in the order given.
 */
export function planCampaign(matrix: readonly FaultName[][], migrationsPerFault: number, methods: readonly string[] = [], controls = 0): PlannedMigration[] {
  const real: Array<Omit<PlannedMigration, 'index'>> = [];
  for (const method of methods.length ? methods : [undefined]) {
    for (const faults of matrix) {
      for (let i = 0; i < migrationsPerFault; i += 1) real.push({ ...(method ? { method } : {}), faults: [...faults] });
    }
  }
  // Controls are spread evenly among the real migrations (control k before real migration ⌊k·R/(C+1)⌋, counted from 0), so that they
  // see the same guest at the same age as its migrations do, not a fresh one at the start or a tired one at the end.
  const plan: PlannedMigration[] = [];
  for (let r = 0; r <= real.length; r += 1) {
    for (let c = 1; c <= controls; c += 1) if (Math.floor((c * real.length) / (controls + 1)) === r) plan.push({ index: plan.length + 1, control: true, faults: [] });
    if (r < real.length) plan.push({ index: plan.length + 1, ...real[r]! });
  }
  return plan;
}

export const JOURNAL_FILE = 'journal.jsonl';

/** What a journal is of: its file, the format named in its header, and the word its messages use for a run. */
export interface JournalKind {
  file: string;
  format: string;
  run: string;
  /** What one line records, counted: `migration(s)`, `guest(s)`. */
  unit: string;
}

export const CAMPAIGN_JOURNAL: JournalKind = { file: JOURNAL_FILE, format: 'flinch.campaign-journal/v1', run: 'campaign', unit: 'migration(s)' };

/**
 * The campaign's journal (and a rollout's): a header naming the plan, then one finished step a line (a migration, a
 * guest), appended as each finishes. A run started again with the same --out and the same plan skips what the journal
 * holds and goes on from there; a different plan in the same folder is refused rather than mixed in.
 */
export class CampaignJournal<T extends { index: number } = MigrationResult> {
  readonly done = new Map<number, T>();

  private constructor(private readonly file: string) {}

  static open<T extends { index: number } = MigrationResult>(dir: string, identity: Record<string, unknown>, log: (line: string) => void, kind: JournalKind = CAMPAIGN_JOURNAL): CampaignJournal<T> {
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, kind.file);
    const planHash = createHash('sha256').update(JSON.stringify(identity)).digest('hex').slice(0, 16);
    const journal = new CampaignJournal<T>(file);
    if (!existsSync(file)) {
      writeFileSync(file, `${JSON.stringify({ journal: kind.format, planHash, identity })}\n`);
      return journal;
    }
    const text = readFileSync(file, 'utf8');
    // An interrupted run may have left half a line. Appending after it would glue the next record onto it, and the
    // step run again would be lost too: the torn tail goes before anything is appended.
    const end = text.lastIndexOf('\n') + 1;
    if (end < text.length) truncateSync(file, Buffer.byteLength(text.slice(0, end)));
    const [header, ...lines] = text.slice(0, end).split('\n');
    let recorded: { planHash?: string } = {};
    try {
      recorded = JSON.parse(header ?? '') as { planHash?: string };
    } catch {
      throw new Error(`${file}: not a flinch ${kind.run} journal; use another --out`);
    }
    if (recorded.planHash !== planHash) {
      throw new Error(`${file} belongs to a different ${kind.run} (${kind === CAMPAIGN_JOURNAL ? 'other driver, faults, migrations or expectation' : 'other guests'}); use another --out, or remove the folder to start over`);
    }
    for (const line of lines) {
      if (!line.trim()) continue;
      try {
        const result = JSON.parse(line) as T;
        journal.done.set(result.index, result);
      } catch {
        // A line that does not parse is no record: that step runs again.
      }
    }
    if (journal.done.size > 0) log(`resuming: ${journal.done.size} ${kind.unit} already in ${file}`);
    return journal;
  }

  record(result: T): void {
    appendFileSync(this.file, `${JSON.stringify(result)}\n`);
    this.done.set(result.index, result);
  }
}
