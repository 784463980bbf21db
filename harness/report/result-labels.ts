import type { MigrationResult } from './lab-results.js';

/** The driver, and its method where it has more than one (xl save-restore, xl migrate). */
export function driverLabelOf(m: Pick<MigrationResult, 'driver' | 'method'>): string {
  return m.method ? `${m.driver} ${m.method}` : m.driver;
}

export function faultsLabelOf(m: Pick<MigrationResult, 'faults'>): string {
  return m.faults.length === 0 ? 'none' : m.faults.join('+');
}
