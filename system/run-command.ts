import { execFile, type ExecFileOptions } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';

/** A system tool failed or is missing. The message is one line a person can act on. */
export class CommandError extends Error {
  constructor(
    message: string,
    readonly command: string,
    readonly args: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(message);
    this.name = 'CommandError';
  }
}

export interface CommandResult {
  stdout: string;
  stderr: string;
}

/** Finds an executable the way a shell would; null when it is not installed. */
export function findExecutable(name: string, searchPath = process.env.PATH ?? ''): string | null {
  if (name.includes('/')) return isExecutable(name) ? name : null;
  for (const dir of searchPath.split(':').concat(['/usr/sbin', '/sbin'])) {
    if (!dir) continue;
    const candidate = path.join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** No system tool flinch runs takes this long when healthy; a stuck one must not stall the agent (or the safety net). */
export const DEFAULT_COMMAND_TIMEOUT_MS = 30_000;

/**
 * Runs a tool without a shell (no quoting bugs, no injection) and turns its failure into a CommandError that names the
 * tool and quotes the first line of what it said. Every call has a time limit (DEFAULT_COMMAND_TIMEOUT_MS unless told).
 */
export function runCommand(
  command: string,
  args: readonly string[],
  options: ExecFileOptions & { input?: string } = {},
): Promise<CommandResult> {
  const { input, ...execOptions } = options;
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      args as string[],
      { maxBuffer: 64 * 1024 * 1024, encoding: 'utf8', timeout: DEFAULT_COMMAND_TIMEOUT_MS, killSignal: 'SIGKILL', ...execOptions },
      (error, stdout, stderr) => {
        const out = String(stdout);
        const err = String(stderr);
        if (!error) return resolve({ stdout: out, stderr: err });
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          return reject(new CommandError(`${command}: not installed (not found on PATH)`, command, args, null, err));
        }
        if ((error as { killed?: boolean }).killed && (error as { signal?: string }).signal === 'SIGKILL') {
          const limit = execOptions.timeout ?? DEFAULT_COMMAND_TIMEOUT_MS;
          return reject(new CommandError(`${command} ${args.join(' ')}: timed out after ${limit} ms`, command, args, null, err));
        }
        const firstLine = err.trim().split('\n')[0] || error.message.split('\n')[0];
        const exitCode = typeof code === 'number' ? code : null;
        reject(
          new CommandError(
            `${command} ${args.join(' ')}: failed${exitCode === null ? '' : ` (exit ${exitCode})`}: ${firstLine}`,
            command,
            args,
            exitCode,
            err,
          ),
        );
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}
