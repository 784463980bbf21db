import type { Test } from 'tap';
import { acquireFileLock } from '../../system/file-lock.js';

/**
 * Holds a machine-wide lock on `resource` until `t` ends, for test files that share one thing tap's parallel jobs
 * cannot: the system libvirtd one file starts and stops. Teardowns run last-registered first: call this before
 * registering the clean-ups of what the lock guards, so they run while it is still held.
 */
export async function exclusive(t: Test, resource: string): Promise<void> {
  const lock = await acquireFileLock(`/run/lock/flinch-test-${resource}.lock`, 1_800_000);
  t.teardown(() => lock.release());
}
