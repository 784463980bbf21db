import type { Test } from 'tap';
import { acquireFileLock } from '../../system/file-lock.js';

// The suite runs two test files at a time (tap's jobs). These locks keep apart the files that must not meet: they are
// machine-wide (flock under /run/lock), held until the test ends, and go with the process however it ends.

const WAIT_MS = 1_800_000;
const lockFile = (resource: string) => `/run/lock/flinch-test-${resource}.lock`;

/**
 * Holds `resource` alone until `t` ends: the system libvirtd one file starts and stops. Teardowns run last-registered
 * first: call this before registering the clean-ups of what the lock guards, so they run while it is still held.
 */
export async function exclusive(t: Test, resource: string): Promise<void> {
  const lock = await acquireFileLock(lockFile(resource), WAIT_MS);
  t.teardown(() => lock.release());
}

/**
 * For a file whose verdicts depend on the machine's timing: the 50 simulated guests, each frozen for a second, whose
 * agents missed the freeze outright (no episode at all) while a TCG guest kept the other core busy. It runs while no
 * busyMachine file does.
 */
export async function quietMachine(t: Test): Promise<void> {
  await cpuLock(t, false);
}

/** For a file that keeps a core busy (TCG guests, a fuzzer): runs beside its like, never beside a quietMachine one. */
export async function busyMachine(t: Test): Promise<void> {
  await cpuLock(t, true);
}

/**
 * A turnstile before the lock itself, so that a quiet file waiting is not passed over for ever by busy files keeping
 * the shared lock taken between them: every taker goes through the turnstile, and the quiet one holds it while it waits.
 */
async function cpuLock(t: Test, shared: boolean): Promise<void> {
  const turnstile = await acquireFileLock(lockFile('cpu-turnstile'), WAIT_MS);
  try {
    const lock = await acquireFileLock(lockFile('cpu'), WAIT_MS, { shared });
    t.teardown(() => lock.release());
  } finally {
    await turnstile.release();
  }
}
