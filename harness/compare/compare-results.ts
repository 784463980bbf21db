import { median, permutationTest } from 'simple-statistics';
import type { LabResults, MigrationResult } from '../report/lab-results.js';
import { driverLabelOf, faultsLabelOf } from '../report/result-labels.js';

/**
 * `flinch compare`: campaigns side by side, one row per kind of migration (driver and faults), each candidate against
 * the first folder (the baseline). Per row and metric a rank-based test, Mann–Whitney's: the pooled values are ranked
 * (ties share their mean rank) and the rank-sum difference is compared with its permutation distribution
 * (simple-statistics' permutationTest over the ranks, seeded, so the same folders always give the same answer).
 * A metric counts as changed only when the test says so (p below alpha) and its median moved by more than the
 * practical threshold: on a CI gate a significant 1 ms move of a 70 ms pause is noise nobody wants to be paged for.
 */
export const COMPARE_SCHEMA = 'flinch.compare/v1';

/** Verdicts in the order of how bad they are; no verdict at all (the agent never reported) is the worst. */
const VERDICT_RANK: Record<MigrationResult['verdict'], number> = { transparent: 0, noticed: 1, healed: 2, disrupted: 3, unknown: 4 };
const VERDICTS = Object.keys(VERDICT_RANK) as Array<MigrationResult['verdict']>;

interface MetricDefinition {
  name: MetricName;
  label: string;
  unit: 'ms' | 'count' | 'rank';
  /** The value of one migration; null where it was not measured. Larger is worse for every metric. */
  value: (m: MigrationResult) => number | null;
}

export type MetricName = 'verdict' | 'pauseMs' | 'clockLagMs' | 'blackoutMs' | 'linkEvents';

const METRICS: readonly MetricDefinition[] = [
  { name: 'verdict', label: 'verdict', unit: 'rank', value: (m) => VERDICT_RANK[m.verdict] },
  { name: 'pauseMs', label: 'pause', unit: 'ms', value: (m) => m.pauseMs ?? null },
  // A heal steps the clock back, so the lag is signed; how far the clock ended up from the host's is what hurts.
  { name: 'clockLagMs', label: 'guest clock lag', unit: 'ms', value: (m) => (m.clockLagMs === null ? null : Math.abs(m.clockLagMs)) },
  { name: 'blackoutMs', label: 'blackout', unit: 'ms', value: (m) => m.blackout?.longestGapMs ?? m.outside?.longestGapMs ?? null },
  { name: 'linkEvents', label: 'link events', unit: 'count', value: (m) => m.linkEvents.length },
];

export interface CompareSettings {
  /** The test's significance level. */
  alpha: number;
  /** How far (percent of the baseline's median) a median must move to count, beside the test. */
  minChangePercent: number;
}

export const DEFAULT_COMPARE_SETTINGS: CompareSettings = { alpha: 0.05, minChangePercent: 10 };

export type Change = 'same' | 'better' | 'worse' | 'too-few';

export interface MetricComparison {
  metric: MetricName;
  label: string;
  unit: MetricDefinition['unit'];
  baseline: { n: number; median: number | null };
  candidate: { n: number; median: number | null };
  /** Mann–Whitney's U for the candidate (the number of pairs in which it is larger), null without values. */
  u: number | null;
  /** Two-sided; null where there are too few values for any p below alpha (see smallestP). */
  p: number | null;
  /** The smallest p these sample sizes can give at all: 2 / C(n1 + n2, n1). */
  smallestP: number | null;
  change: Change;
}

export interface SideSummary {
  n: number;
  verdicts: Record<MigrationResult['verdict'], number>;
  medians: Record<MetricName, number | null>;
}

export interface RowComparison {
  key: string;
  driver: string;
  faults: string;
  /** One per folder, in the order given; null where that folder has no such row. */
  sides: Array<SideSummary | null>;
  /** One per candidate (folders 2…), against the baseline. */
  against: Array<{ candidate: number; change: Change | 'only-baseline' | 'only-candidate'; metrics: MetricComparison[] }>;
}

export interface CampaignLabel {
  dir: string;
  startedAt: string;
  driver: string;
  qemu: string | null;
  destQemu: string | null;
  machine: string | null;
  xen: string | null;
  guestKernel: string;
  migrations: number;
}

export interface Comparison {
  schema: typeof COMPARE_SCHEMA;
  settings: CompareSettings;
  campaigns: CampaignLabel[];
  rows: RowComparison[];
  /** Per candidate: rows worse, better, same, too few to tell. */
  totals: Array<{ candidate: number; worse: number; better: number; same: number; tooFew: number }>;
}

/** Compares every folder after the first with the first. Controls are left out: nothing moved in them. */
export function compareCampaigns(campaigns: ReadonlyArray<{ dir: string; results: LabResults }>, settings: CompareSettings = DEFAULT_COMPARE_SETTINGS): Comparison {
  if (campaigns.length < 2) throw new Error('compare needs two results folders at least: a baseline and a candidate');
  const grouped = campaigns.map(({ results }) => groupRows(results.migrations));
  const keys = [...new Set(grouped.flatMap((g) => [...g.keys()]))];
  const rows: RowComparison[] = keys.map((key) => {
    const members = grouped.map((g) => g.get(key) ?? null);
    const sample = members.find((m) => m !== null)![0]!;
    const baseline = members[0] ?? null;
    return {
      key,
      driver: driverLabelOf(sample),
      faults: faultsLabelOf(sample),
      sides: members.map((m) => (m ? summarise(m) : null)),
      against: members.slice(1).map((candidate, i) => {
        if (!baseline || !candidate) return { candidate: i + 1, change: baseline ? 'only-baseline' : 'only-candidate', metrics: [] };
        const metrics = METRICS.map((metric) => compareMetric(metric, baseline, candidate, settings));
        return { candidate: i + 1, change: rowChange(metrics), metrics };
      }),
    };
  });
  return {
    schema: COMPARE_SCHEMA,
    settings,
    campaigns: campaigns.map(({ dir, results }) => ({
      dir,
      startedAt: results.startedAt,
      driver: results.hypervisor.driver,
      qemu: results.hypervisor.qemu,
      destQemu: results.hypervisor.destQemuVersion ?? results.hypervisor.destQemu ?? null,
      machine: results.hypervisor.machine ?? null,
      xen: results.hypervisor.xen ?? null,
      guestKernel: results.guest.kernel,
      migrations: results.migrations.filter((m) => !m.control).length,
    })),
    rows,
    totals: campaigns.slice(1).map((_, i) => {
      const changes = rows.map((r) => r.against[i]!.change);
      const count = (c: string) => changes.filter((x) => x === c).length;
      return { candidate: i + 1, worse: count('worse'), better: count('better'), same: count('same'), tooFew: count('too-few') };
    }),
  };
}

/** Whether any candidate got worse in any row: what a CI gate fails on. */
export function anyWorse(comparison: Comparison): boolean {
  return comparison.totals.some((t) => t.worse > 0);
}

function groupRows(migrations: readonly MigrationResult[]): Map<string, MigrationResult[]> {
  const rows = new Map<string, MigrationResult[]>();
  for (const m of migrations) {
    if (m.control) continue;
    const key = `${driverLabelOf(m)} · ${faultsLabelOf(m)}`;
    rows.set(key, [...(rows.get(key) ?? []), m]);
  }
  return rows;
}

function summarise(migrations: readonly MigrationResult[]): SideSummary {
  const verdicts = Object.fromEntries(VERDICTS.map((v) => [v, 0])) as SideSummary['verdicts'];
  for (const m of migrations) verdicts[m.verdict] += 1;
  const medians = Object.fromEntries(METRICS.map((metric) => [metric.name, medianOrNull(valuesOf(metric, migrations))])) as SideSummary['medians'];
  return { n: migrations.length, verdicts, medians };
}

function valuesOf(metric: MetricDefinition, migrations: readonly MigrationResult[]): number[] {
  return migrations.map(metric.value).filter((v): v is number => v !== null && Number.isFinite(v));
}

function medianOrNull(values: number[]): number | null {
  return values.length === 0 ? null : median(values);
}

/** Worse wins over better: a gate must not let one metric's gain hide another's loss. */
function rowChange(metrics: readonly MetricComparison[]): Change {
  if (metrics.some((m) => m.change === 'worse')) return 'worse';
  if (metrics.some((m) => m.change === 'better')) return 'better';
  return metrics.every((m) => m.change === 'too-few') ? 'too-few' : 'same';
}

export function compareMetric(metric: MetricDefinition, baseline: readonly MigrationResult[], candidate: readonly MigrationResult[], settings: CompareSettings): MetricComparison {
  const a = valuesOf(metric, baseline);
  const b = valuesOf(metric, candidate);
  const base = { metric: metric.name, label: metric.label, unit: metric.unit, baseline: { n: a.length, median: medianOrNull(a) }, candidate: { n: b.length, median: medianOrNull(b) } };
  if (a.length === 0 || b.length === 0) return { ...base, u: null, p: null, smallestP: null, change: 'too-few' };
  const test = mannWhitney(a, b);
  if (test.smallestP >= settings.alpha) return { ...base, ...test, p: null, change: 'too-few' };
  if (test.p >= settings.alpha || !movedEnough(metric, a, b, settings)) return { ...base, ...test, change: 'same' };
  // U counts the pairs in which the candidate is larger (ties half): above half of all pairs, it tends larger.
  return { ...base, ...test, change: test.u > (a.length * b.length) / 2 ? 'worse' : 'better' };
}

/**
 * The practical threshold beside the test: the medians moved by more than the share of the baseline's median, and by
 * at least one unit (a millisecond, an event, a verdict's rank). Verdicts compare their mean ranks, since a median
 * verdict hides a shift of a few migrations from noticed to disrupted.
 */
function movedEnough(metric: MetricDefinition, a: number[], b: number[], settings: CompareSettings): boolean {
  if (metric.unit === 'rank') return Math.abs(mean(b) - mean(a)) >= 0.25;
  const moved = Math.abs(median(b) - median(a));
  return moved >= 1 && moved > (Math.abs(median(a)) * settings.minChangePercent) / 100;
}

function mean(values: number[]): number {
  return values.reduce((s, v) => s + v, 0) / values.length;
}

/** Ranks 1…n of the pooled values, ties sharing the mean of the ranks they span. */
export function midranks(values: readonly number[]): number[] {
  const order = values.map((value, index) => ({ value, index })).sort((x, y) => x.value - y.value);
  const ranks = new Array<number>(values.length);
  for (let start = 0; start < order.length; ) {
    let end = start;
    while (end + 1 < order.length && order[end + 1]!.value === order[start]!.value) end += 1;
    for (let k = start; k <= end; k += 1) ranks[order[k]!.index] = (start + end) / 2 + 1;
    start = end + 1;
  }
  return ranks;
}

/** Permutations drawn for the p-value: its Monte Carlo error at p = 0.05 is about ±0.0015. */
const PERMUTATIONS = 20_000;

/**
 * Mann–Whitney's test of two samples: U for `b`, and the two-sided p of the rank-sum difference against its
 * permutation distribution. All values equal: p = 1.
 */
export function mannWhitney(a: readonly number[], b: readonly number[]): { u: number; p: number; smallestP: number } {
  const ranks = midranks([...a, ...b]);
  const ranksA = ranks.slice(0, a.length);
  const ranksB = ranks.slice(a.length);
  const rankSumB = ranksB.reduce((s, r) => s + r, 0);
  const u = rankSumB - (b.length * (b.length + 1)) / 2;
  const smallestP = Math.min(1, 2 / binomial(a.length + b.length, a.length));
  const p = ranks.every((r) => r === ranks[0]) ? 1 : permutationTest(ranksB, ranksA, 'two_side', PERMUTATIONS, seededRandom(0x5eed));
  return { u, p, smallestP };
}

function binomial(n: number, k: number): number {
  let result = 1;
  for (let i = 1; i <= Math.min(k, n - k); i += 1) result = (result * (n - Math.min(k, n - k) + i)) / i;
  return result;
}

/** mulberry32: the permutations are drawn the same way on every run, so a gate's answer does not flicker. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
