import type { MigrationResult } from './lab-results.js';

export function faultsLabelOf(m: Pick<MigrationResult, 'faults'>): string {
  return m.faults.length === 0 ? 'none' : m.faults.join('+');
}
