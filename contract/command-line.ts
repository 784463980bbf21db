import { Command, InvalidArgumentError } from 'commander';
import { FLINCH_VERSION } from './version.js';
import { IDENTIFIER_PATTERN } from './report-schema.js';

/**
 * Both executables end the same way on failure: one line that says what failed and what to do, the stack only with
 * --verbose (each program's --help says so), and a non-zero exit.
 */
/**
 * Every exit status of both executables, one place: README's "Exit status" table and flinch-agent(1) say the same
 * (test/cli/exit-codes.test.ts holds them to it). 1 is kept for what went wrong; a run that worked and found the
 * guest worse than `--expect` has its own code, so CI can tell a regression from a broken harness.
 */
export const EXIT = {
  /** Done, and as good as expected. */
  ok: 0,
  /** Something failed: the line says what (a tool that failed, a guest that did not boot, a crash). */
  failed: 1,
  /** Bad arguments, whoever found them (commander or flinch). */
  usage: 2,
  /** A program flinch needs is missing or does not answer (QEMU, virsh, libvirtd, the built agent). */
  missingTool: 3,
  /** Needs root (network namespaces, taps, cgroups, qemu:///system). */
  needsRoot: 4,
  /** The run worked, and a migration or a check was worse than expected (`--expect`, package-check). */
  worseThanExpected: 5,
  /** The agent's state directory takes no writes at start (full, read-only): EX_CANTCREAT. */
  stateDir: 73,
  /** An invalid configuration file (EX_CONFIG): systemd's RestartPreventExitStatus=78 does not retry it. */
  config: 78,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.failed,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/**
 * A run stopped by Ctrl-C or SIGTERM after it had cleaned up: it exits 128 + the signal, as a shell reports it
 * (README, "Exit status": outside the table, like every program's).
 */
export class StoppedBySignal extends Error {
  readonly exitCode: number;
  constructor(
    readonly signal: 'SIGINT' | 'SIGTERM',
    what: string,
  ) {
    super(`${signal}: ${what}`);
    this.name = 'StoppedBySignal';
    this.exitCode = signal === 'SIGINT' ? 130 : 143;
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
  return error instanceof UserError || error instanceof StoppedBySignal ? error.exitCode : EXIT.failed;
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
    .exitOverride((error) => process.exit(error.exitCode === 0 ? EXIT.ok : EXIT.usage));
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

/** The long flag a commander attribute comes from: `leaveOn` → `--leave-on`, for messages that name it. */
export function flagOf(attribute: string): string {
  return `--${attribute.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
}

/** An agent id given on a command line, as the wire and the store accept them; a usage error (exit 2) otherwise. */
export function agentIdArgument(id: string): string {
  if (!new RegExp(IDENTIFIER_PATTERN).test(id)) throw new UserError('--agent-id may hold only letters, digits and . _ : @ - (1..128)', EXIT.usage);
  return id;
}
