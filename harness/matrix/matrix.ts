import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { CampaignOutcome } from '../campaign/campaign-runner.js';
import { compareCampaigns, type Comparison, type CompareSettings } from '../compare/compare-results.js';
import { renderComparison } from '../compare/compare-outputs.js';
import { readLabResults } from '../report/lab-results.js';

/**
 * `flinch matrix`: the product of QEMU pairs and guest kernels, one QEMU lab campaign per cell in a folder of its own
 * (each resumable from its journal, as any campaign), then one comparison of every cell against the first. A cell
 * that fails (a guest that does not boot on that kernel) is recorded with its error, and the others still run;
 * migrations a QEMU refuses are recorded inside their campaign, with QEMU's own words.
 */
export const MATRIX_SCHEMA = 'flinch.matrix/v1';

export interface MatrixCell {
  /** The folder name of the cell inside the matrix's --out. */
  name: string;
  qemu: string;
  /** Every destination's QEMU; null: the source's. */
  destQemu: string | null;
  /** A release name or a kernel file; null: bookworm's. */
  guestKernel: string | null;
}

export interface MatrixCellOutcome extends MatrixCell {
  dir: string;
  /** Migrations worse than --expect; null where the cell produced no results. */
  worseThanExpected: number | null;
  error: string | null;
}

/** `SRC` or `SRC:DEST`: a QEMU (a path or a release name, as --qemu) and the one every destination runs. */
export function parseQemuPair(item: string): { qemu: string; destQemu: string | null } {
  const [qemu, destQemu, extra] = item.split(':');
  if (!qemu || extra !== undefined || destQemu === '') throw new UserError(`--qemu ${item}: give SRC or SRC:DEST (a path or a Debian release, e.g. bookworm:bookworm-backports)`, EXIT.usage);
  return { qemu, destQemu: destQemu ?? null };
}

/** A folder name made of what varies: safe on any filesystem, and the same for the same cell on every run. */
function cellName(parts: Array<string | null>): string {
  return parts.map((p) => (p === null ? 'default' : path.basename(p).replace(/[^\w.+-]+/g, '_'))).join('__');
}

export function planMatrix(qemuItems: readonly string[], guestKernels: ReadonlyArray<string | null>): MatrixCell[] {
  if (qemuItems.length === 0) throw new UserError('--qemu: name at least one QEMU (or SRC:DEST pair)', EXIT.usage);
  const kernels = guestKernels.length === 0 ? [null] : guestKernels;
  const cells: MatrixCell[] = [];
  for (const item of qemuItems) {
    const { qemu, destQemu } = parseQemuPair(item);
    for (const guestKernel of kernels) {
      cells.push({ name: cellName([qemu, destQemu ?? qemu, guestKernel]), qemu, destQemu, guestKernel });
    }
  }
  const names = cells.map((c) => c.name);
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  if (twice) throw new UserError(`the matrix names one cell twice (${twice}): each QEMU pair and kernel once`, EXIT.usage);
  return cells;
}

/**
 * Runs every cell (a campaign each; one already complete is only read back) and compares them. `runCell` is the QEMU
 * lab; it resolves with the campaign's outcome, or with the exit status of the namespace child that showed its own.
 */
export async function runMatrix(
  base: CampaignOptions,
  cells: readonly MatrixCell[],
  settings: CompareSettings,
  runCell: (options: CampaignOptions) => Promise<CampaignOutcome | number>,
  log: (line: string) => void,
): Promise<{ cells: MatrixCellOutcome[]; comparison: Comparison | null; written: string[] }> {
  mkdirSync(base.outDir, { recursive: true });
  const outcomes: MatrixCellOutcome[] = [];
  for (const [i, cell] of cells.entries()) {
    const dir = path.join(base.outDir, cell.name);
    log(`matrix cell ${i + 1} of ${cells.length}: ${describeCell(cell)}`);
    const options: CampaignOptions = { ...base, outDir: dir, qemuBinary: cell.qemu, destQemuBinary: cell.destQemu ?? undefined, guestKernel: cell.guestKernel };
    let error: string | null = null;
    try {
      const result = await runCell(options);
      if (typeof result === 'number' && result !== EXIT.ok && result !== EXIT.worseThanExpected) error = `the campaign exited ${result} (its own line above says why)`;
      if (typeof result !== 'number' && result.alreadyComplete) log(`campaign already complete in ${dir}: read back, nothing run`);
    } catch (e) {
      error = (e as Error).message.split('\n')[0]!;
      log(`matrix cell ${cell.name} failed: ${error}`);
    }
    const hasResults = existsSync(path.join(dir, 'results.json'));
    const worse = hasResults ? readLabResults(dir).migrations.filter((m) => !m.passed).length : null;
    outcomes.push({ ...cell, dir, worseThanExpected: worse, error: error ?? (hasResults ? null : 'no results were written') });
  }
  const measured = outcomes.filter((o) => existsSync(path.join(o.dir, 'results.json')));
  const comparison = measured.length >= 2 ? compareCampaigns(measured.map((o) => ({ dir: o.dir, results: readLabResults(o.dir) })), settings) : null;
  const written = writeMatrixOutputs(base.outDir, outcomes, comparison);
  return { cells: outcomes, comparison, written };
}

export function describeCell(cell: MatrixCell): string {
  return `QEMU ${cell.qemu}${cell.destQemu ? ` → ${cell.destQemu}` : ''}, guest kernel ${cell.guestKernel ?? 'bookworm'}`;
}

/** matrix.json (the cells and the comparison), and the comparison as a table, HTML and JUnit; each file atomically. */
function writeMatrixOutputs(dir: string, cells: readonly MatrixCellOutcome[], comparison: Comparison | null): string[] {
  const files: Array<[string, string]> = [['matrix.json', `${JSON.stringify({ schema: MATRIX_SCHEMA, cells, comparison }, null, 2)}\n`]];
  if (comparison) {
    files.push(['comparison.txt', renderComparison(comparison, 'table')], ['comparison.html', renderComparison(comparison, 'html')], ['comparison.xml', renderComparison(comparison, 'junit')]);
  }
  return files.map(([name, text]) => {
    const file = path.join(dir, name);
    writeFileSync(`${file}.tmp`, text);
    renameSync(`${file}.tmp`, file);
    return file;
  });
}

/** A matrix.json written by an earlier run, for tests and tools. */
export function readMatrix(dir: string): { schema: string; cells: MatrixCellOutcome[]; comparison: Comparison | null } {
  return JSON.parse(readFileSync(path.join(dir, 'matrix.json'), 'utf8'));
}
