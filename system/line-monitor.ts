import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { diesWithThisProcess } from './child-lifetime.js';
import { CommandError, findExecutable } from './run-command.js';

/** A long-running tool whose output is read a line at a time (tcpdump, `bridge monitor`, hping3). */
export interface LineMonitor {
  /** Resolves once the tool said it is listening (its `readyWhen` line), so that nothing after is missed. */
  readonly ready: Promise<void>;
  /** Ends the tool (SIGTERM) and resolves when it is gone. */
  stop(): Promise<void>;
  /** What the tool said on stderr last, for an error message. */
  readonly lastError: string;
}

/** Lines longer than this are cut: no tool watched here prints one, and a runaway line must not grow memory. */
const MAX_LINE_CHARS = 4096;

/**
 * Runs `command` until stopped (in `netns` if given), handing `onLine` each line of its output. The tool dies with
 * this process. `readyWhen` matches the line (stdout or stderr) that says it is listening; without one the
 * monitor is ready once the tool started. A tool that ends on its own, or never says it is ready within
 * `readyTimeoutMs`, rejects `ready` with a CommandError naming it.
 */
export function startLineMonitor(
  command: string,
  args: readonly string[],
  onLine: (line: string) => void,
  options: { readyWhen?: RegExp; readyTimeoutMs?: number; env?: NodeJS.ProcessEnv; netns?: string } = {},
): LineMonitor {
  if (!findExecutable(command)) throw new CommandError(`${command} is not installed`, command, args, null, '');
  const [program, programArgs] = options.netns ? ['ip', ['netns', 'exec', options.netns, command, ...args]] : [command, args];
  const child = spawn(...diesWithThisProcess(program, programArgs, 'TERM'), { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
  let lastError = '';
  let settle: { resolve: () => void; reject: (error: Error) => void } | null = null;
  const ready = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
  ready.catch(() => undefined);
  const markReady = () => {
    settle?.resolve();
    settle = null;
  };
  const fail = (why: string) => {
    settle?.reject(new CommandError(`${command} ${why}${lastError ? `: ${lastError}` : ''}`, command, args, child.exitCode, lastError));
    settle = null;
  };
  const readyTimer = setTimeout(() => fail('never said it was listening'), options.readyTimeoutMs ?? 10_000);
  readyTimer.unref();
  const watch = (stream: NodeJS.ReadableStream, isStderr: boolean) =>
    createInterface({ input: stream }).on('line', (raw) => {
      const line = raw.length > MAX_LINE_CHARS ? raw.slice(0, MAX_LINE_CHARS) : raw;
      if (options.readyWhen?.test(line)) {
        clearTimeout(readyTimer);
        markReady();
      }
      if (isStderr) lastError = line.slice(0, 200);
      else onLine(line);
    });
  watch(child.stdout!, false);
  watch(child.stderr!, true);
  child.once('spawn', () => {
    if (options.readyWhen) return;
    clearTimeout(readyTimer);
    markReady();
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  child.once('error', (error) => fail(`could not start (${error.message})`));
  child.once('exit', (code, signal) => fail(`ended (${signal ?? `exit ${code}`})`));
  return {
    ready,
    get lastError() {
      return lastError;
    },
    async stop() {
      clearTimeout(readyTimer);
      settle = null;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
