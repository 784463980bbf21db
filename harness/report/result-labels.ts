import type { MigrationResult } from './lab-results.js';

/** The driver, and its method where it has more than one (xl save-restore, xl migrate). */
export function driverLabelOf(m: Pick<MigrationResult, 'driver' | 'method'>): string {
  return m.method ? `${m.driver} ${m.method}` : m.driver;
}

export function faultsLabelOf(m: Pick<MigrationResult, 'faults' | 'control'>): string {
  if (m.control) return 'control (nothing moved)';
  return m.faults.length === 0 ? 'none' : m.faults.join('+');
}

/**
 * The controls' verdicts: how many there were, how many were judged something happened (false positives), and how
 * many were not judged at all (no report came: neither).
 */
export function controlSummary(migrations: readonly Pick<MigrationResult, 'control' | 'verdict'>[]): { controls: number; falsePositives: number; unjudged: number } | null {
  const controls = migrations.filter((m) => m.control);
  if (controls.length === 0) return null;
  return {
    controls: controls.length,
    falsePositives: controls.filter((m) => m.verdict !== 'transparent' && m.verdict !== 'unknown').length,
    unjudged: controls.filter((m) => m.verdict === 'unknown').length,
  };
}

/** "false positives: 1 of 5 controls (20%)", or null without controls. */
export function controlLine(migrations: readonly Pick<MigrationResult, 'control' | 'verdict'>[]): string | null {
  const summary = controlSummary(migrations);
  if (!summary) return null;
  const { controls, falsePositives, unjudged } = summary;
  return `false positives: ${falsePositives} of ${controls} control${controls === 1 ? '' : 's'} (${Math.round((100 * falsePositives) / controls)}%)${unjudged ? `, ${unjudged} not judged (no report)` : ''}`;
}
