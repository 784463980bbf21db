import { Command, InvalidArgumentError } from 'commander';
import { FLINCH_VERSION } from './version.js';

/**
 * Both executables end the same way on failure: one line that says what failed and what to do, the stack only with
 * --verbose (each program's --help says so), and a non-zero exit.
 */
/** Bad arguments, whoever found them (commander or flinch): the exit status the man pages promise. */
export const USAGE_EXIT = 2;

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * Text as it may reach a log or a terminal: control characters (C0, DEL, C1) and the bidirectional overrides are
 * shown as visible escapes (\x1b, \u202e), so that nothing a peer sent can forge a log line, erase one, or reach an
 * operator's terminal as a command (an OSC 52 clipboard write).
 */
export function printable(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g, (c) => {
    const code = c.charCodeAt(0);
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16)}`;
  });
}

export function reportFatal(program: string, error: unknown, verbose: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${program}: ${printable(message.split('\n')[0] ?? '')}\n`);
  if (verbose && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
  return error instanceof UserError ? error.exitCode : 1;
}

/** Wraps a commander action so that every failure ends in reportFatal rather than a stack trace. */
export function guarded<Args extends unknown[]>(
  program: string,
  isVerbose: () => boolean,
  action: (...args: Args) => Promise<void>,
): (...args: Args) => Promise<void> {
  return async (...args: Args) => {
    try {
      await action(...args);
    } catch (error) {
      process.exitCode = reportFatal(program, error, isVerbose());
    }
  };
}

/** The shape both executables share: name, version, --verbose, and a way to ask whether it was given. */
export function createProgram(name: string, description: string): { program: Command; verbose: () => boolean; log: (line: string) => void } {
  const program = new Command(name)
    .description(description)
    .version(FLINCH_VERSION)
    .option('--verbose', 'on failure, print the stack trace behind the one-line error')
    // commander's own usage errors (an unknown option, a bad choice, a missing argument) read like flinch's: one line
    // with the program's name, exit 2. Set before any subcommand is added, so every subcommand inherits it.
    .configureOutput({ outputError: (message, write) => write(`${name}: ${printable(message.trimEnd())}\n`) })
    .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : USAGE_EXIT));
  return {
    program,
    verbose: () => program.opts<{ verbose?: boolean }>().verbose === true,
    log: (line) => process.stderr.write(`${name}: ${printable(line)}\n`),
  };
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a whole number of 0 or more');
  return n;
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** "HOST:PORT" or "[v6]:PORT". */
export function parseHostPort(value: string): { host: string; port: number } {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(value);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`"${value}" is not HOST:PORT (e.g. 127.0.0.1:9431)`);
  return { host: match[1] ?? match[2]!, port };
}
