// The machine-wide lock cache builds take (and test files sharing the system libvirtd): real flock(1) on real files.
// This file is also the program that takes a lock and is then killed, to show the lock goes with its process.
import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { acquireFileLock } from '../../system/file-lock.js';
import { withCacheLock } from '../../harness/lab/cache-lock.js';

const SELF = fileURLToPath(import.meta.url);

if (process.argv[1] === SELF && process.argv[2] === 'hold') {
  acquireFileLock(process.argv[3]!, 5000).then(() => process.stdout.write('held\n'));
  setInterval(() => undefined, 60_000);
} else {
  const scratch = () => mkdtempSync(path.join(os.tmpdir(), 'flinch-lock-'));

  t.test('a held lock makes the next taker wait, then fail with one line naming the file; free again once released', async (t) => {
    const file = path.join(scratch(), 'x.lock');
    const first = await acquireFileLock(file, 1000);
    await t.rejects(acquireFileLock(file, 1000), { message: `flock ${file}: still held by another process after 1 s` });
    await first.release();
    const second = await acquireFileLock(file, 1000);
    await second.release();
  });

  t.test('a lock whose process is killed (SIGKILL) is free at once: no stale lock to clean', async (t) => {
    const file = path.join(scratch(), 'x.lock');
    const holder = spawn(process.execPath, [...process.execArgv, SELF, 'hold', file], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    await t.rejects(acquireFileLock(file, 1000), /still held/, 'held by the other process');
    holder.kill('SIGKILL');
    await new Promise<void>((resolve) => holder.once('exit', () => resolve()));
    const after = await acquireFileLock(file, 3000);
    t.pass('taken after the holder was killed');
    await after.release();
  });

  t.test('a directory the lock file cannot be made in: one line, not a wait', async (t) => {
    await t.rejects(acquireFileLock('/proc/flinch-no/x.lock', 5000), /^flock \/proc\/flinch-no\/x\.lock: (?!still held)/);
  });

  t.test('cache builds: two at once take turns; a build inside a build does not wait on itself', async (t) => {
    const cacheDir = scratch();
    const trace: string[] = [];
    const build = (name: string) => withCacheLock(cacheDir, async () => {
      trace.push(`${name} in`);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const inner = await withCacheLock(cacheDir, async () => `${name} inner`);
      trace.push(`${name} out (${inner})`);
    });
    await Promise.all([build('a'), build('b')]);
    t.equal(trace.length, 4);
    t.match(trace[0]!, / in$/);
    t.equal(trace[1], `${trace[0]!.split(' ')[0]} out (${trace[0]!.split(' ')[0]} inner)`, 'the first left before the second came in');
    t.match(trace[2]!, / in$/);
  });
}
