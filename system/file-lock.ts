import { spawn } from 'node:child_process';
import { CommandError } from './run-command.js';

/** A lock flock(1) holds for this process; released by `release()`, or by the process ending however it ends. */
export interface HeldLock {
  readonly file: string;
  release(): Promise<void>;
}

/**
 * Takes a flock(2) lock on `file` (created if missing), exclusive unless `shared`, waiting at most `timeoutMs` for its
 * holders. Node has no flock, so util-linux's flock holds it while its `cat` reads a pipe from us: when this process
 * ends, even by SIGKILL, the pipe closes, cat exits and the lock is free; no stale lock file is ever left to clean.
 */
export function acquireFileLock(file: string, timeoutMs: number, options: { shared?: boolean } = {}): Promise<HeldLock> {
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  const mode = options.shared ? ['-s'] : [];
  const holder = spawn('flock', [...mode, '-w', String(seconds), file, '-c', 'echo held; exec cat >/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  holder.stderr.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => holder.once('close', (code) => resolve(code)));
  return new Promise<HeldLock>((resolve, reject) => {
    holder.once('error', (error) => reject(new CommandError(`flock: ${error.message}`, 'flock', [file], null, '')));
    holder.stdout.once('data', () => {
      resolve({
        file,
        release: async () => {
          holder.stdin.end();
          await exited;
        },
      });
    });
    exited.then((code) => {
      // flock exits 1 when -w runs out; anything else is flock itself failing (a directory that cannot hold the file).
      const reason = code === 1 && !stderr.trim() ? `still held by another process after ${seconds} s` : stderr.trim().split('\n')[0] || `exit ${code}`;
      reject(new CommandError(`flock ${file}: ${reason}`, 'flock', [file], code, stderr));
    });
  });
}

/** Runs `fn` holding the lock on `file`; released whatever `fn` does. */
export async function withFileLock<T>(file: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const lock = await acquireFileLock(file, timeoutMs);
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}
