import { appendFileSync, closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, readSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';

export const DEFAULT_STATE_DIR = '/var/lib/flinch';

/** The state directory could not be written: one line naming it and why (a full or read-only filesystem). */
export class StateDirError extends Error {
  constructor(readonly dir: string, what: string, override readonly cause: unknown) {
    super(`state directory ${dir}: cannot ${what}: ${reasonOf(cause)}`);
    this.name = 'StateDirError';
  }
}

function reasonOf(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return 'no space left on the device';
  if (code === 'EROFS') return 'the file system is read-only';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'EDQUOT') return 'disk quota exceeded';
  return (error as Error).message.split('\n')[0]!;
}

/** reports.jsonl and the like rotate past this, and are read back from no more than this of their end. */
export const DEFAULT_LINES_MAX_BYTES = 16 * 1024 * 1024;

/** A probe file written and synced at start: whether this directory takes writes at all. */
const WRITE_PROBE = '.writable';

interface Envelope<T> {
  version: number;
  data: T;
}

/**
 * The agent's state directory. Every write is temp file → fsync → rename → fsync of the directory, so a crash leaves
 * the old file or the new one, never half of one. Files carry a version. A file that cannot be read, parsed or
 * validated is moved aside with one log line and treated as absent: the caller rebuilds from live state, never from
 * garbage, and the agent never crash-loops on it.
 */
export class StateDir {
  constructor(
    readonly dir: string,
    private readonly log: (line: string) => void,
  ) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw new StateDirError(dir, 'create it', error);
    }
  }

  /** Throws a StateDirError unless a file can be written and synced here now. */
  assertWritable(): void {
    try {
      this.writeJson(WRITE_PROBE, 1, { pid: process.pid });
      rmSync(path.join(this.dir, WRITE_PROBE), { force: true });
    } catch (error) {
      throw new StateDirError(this.dir, 'write to it', (error as { cause?: unknown }).cause ?? error);
    }
  }

  readJson<T>(name: string, version: number, isValid: (data: unknown) => data is T): T | null {
    const file = path.join(this.dir, name);
    if (!existsSync(file)) return null;
    let reason: string;
    try {
      const envelope = JSON.parse(readFileSync(file, 'utf8')) as Partial<Envelope<unknown>>;
      if (envelope.version !== version) reason = `version ${String(envelope.version)}, expected ${version}`;
      else if (!isValid(envelope.data)) reason = 'content does not have the expected shape';
      else return envelope.data;
    } catch (error) {
      reason = (error as Error).message.split('\n')[0]!;
    }
    const aside = `${file}.corrupt-${Date.now()}`;
    try {
      renameSync(file, aside);
      this.log(`state file ${file} is unusable (${reason}); moved to ${aside}, rebuilding from live state`);
    } catch (error) {
      this.log(`state file ${file} is unusable (${reason}) and could not be moved aside: ${(error as Error).message}`);
    }
    return null;
  }

  writeJson<T>(name: string, version: number, data: T): void {
    const file = path.join(this.dir, name);
    const tmp = `${file}.tmp-${process.pid}`;
    try {
      const fd = openSync(tmp, 'w', 0o600);
      try {
        writeSync(fd, `${JSON.stringify({ version, data } satisfies Envelope<T>)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, file);
      this.syncDirectory();
    } catch (error) {
      rmSync(tmp, { force: true });
      throw new StateDirError(this.dir, `write ${name}`, error);
    }
  }

  /**
   * Appends one JSON line and syncs it: a report that was announced as stored is on disk. A file past `maxBytes` is
   * first moved to NAME.1 (the one before that goes): a guest's disk is not the fleet's archive.
   */
  appendLine(name: string, value: unknown, maxBytes = DEFAULT_LINES_MAX_BYTES): void {
    const file = path.join(this.dir, name);
    // A line torn by a crash must not swallow the next record: start on a fresh line.
    try {
      if (existsSync(file) && statSync(file).size >= maxBytes) renameSync(file, `${file}.1`);
      const torn = existsSync(file) && statSync(file).size > 0 && !endsWithNewline(file);
      appendFileSync(file, `${torn ? '\n' : ''}${JSON.stringify(value)}\n`, { mode: 0o600 });
      const fd = openSync(file, 'r');
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    } catch (error) {
      throw new StateDirError(this.dir, `append to ${name}`, error);
    }
  }

  /**
   * The last `limit` parseable lines, read from at most the last `tailBytes` of the file (a line cut by that start is
   * not counted); a torn or corrupt line is skipped and counted, not fatal.
   */
  readLines<T>(name: string, limit: number, tailBytes = DEFAULT_LINES_MAX_BYTES): { values: T[]; skipped: number } {
    const file = path.join(this.dir, name);
    if (!existsSync(file)) return { values: [], skipped: 0 };
    const values: T[] = [];
    let skipped = 0;
    const size = statSync(file).size;
    const start = Math.max(0, size - tailBytes);
    const buffer = Buffer.alloc(size - start);
    const fd = openSync(file, 'r');
    try {
      readSync(fd, buffer, 0, buffer.length, start);
    } finally {
      closeSync(fd);
    }
    let text = buffer.toString('utf8');
    if (start > 0) text = text.slice(text.indexOf('\n') + 1);
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        values.push(JSON.parse(line) as T);
      } catch {
        skipped += 1;
      }
    }
    return { values: values.slice(-limit), skipped };
  }

  private syncDirectory(): void {
    const fd = openSync(this.dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}

function endsWithNewline(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, statSync(file).size - 1);
    return last[0] === 0x0a;
  } finally {
    closeSync(fd);
  }
}
