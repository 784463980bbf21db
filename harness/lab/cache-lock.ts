import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { withFileLock } from '../../system/file-lock.js';

/** The longest a build waits for another one: a debootstrap plus a kernel download on a slow mirror. */
const CACHE_LOCK_WAIT_MS = 30 * 60_000;

/** Which cache directories this async call chain already holds, so a build that needs another build does not wait on itself. */
const held = new AsyncLocalStorage<ReadonlySet<string>>();

/**
 * Runs a cache build holding the cache directory's lock: two flinch runs (or test files) starting on a fresh machine
 * would otherwise debootstrap into the same `.partial` tree, run apt in the same private state, or remove each other's
 * finished kernel before renaming their own. A build re-checks what it builds after taking the lock (the other run may
 * have built it meanwhile). Nested builds in the same call chain pass straight through.
 */
export async function withCacheLock<T>(cacheDir: string, fn: () => Promise<T>): Promise<T> {
  const key = path.resolve(cacheDir);
  const mine = held.getStore() ?? new Set<string>();
  if (mine.has(key)) return fn();
  mkdirSync(key, { recursive: true });
  return withFileLock(path.join(key, '.lock'), CACHE_LOCK_WAIT_MS, () => held.run(new Set([...mine, key]), fn));
}
