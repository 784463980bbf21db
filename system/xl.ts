import { CommandError } from './run-command.js';
import { runTimed, type TimedResult } from './timed-command.js';

/** A shell in dom0 that is not a command to spawn (the nested Xen lab's serial console): output is stdout and stderr. */
export interface Dom0Shell {
  run(commandLine: string, timeoutMs: number): Promise<{ exitCode: number; output: string }>;
}

export interface Dom0Options {
  /** The xl executable in dom0. */
  xl: string;
  /**
   * How to reach the Xen host's dom0: null runs here; otherwise a command that takes one shell command line as its
   * last argument, e.g. ['ssh', '-o', 'BatchMode=yes', 'root@xenhost'].
   */
  remoteShell: string[] | null;
  /** Instead of a command: a shell object (the nested Xen lab's dom0 console). */
  dom0Shell?: Dom0Shell;
  /** Each command's time limit. */
  timeoutMs: number;
}

/** Quotes one word for a POSIX shell: a remote shell (ssh) runs a command line, not an argument vector. */
export function shellQuote(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/**
 * Xen's dom0, where xl runs: here, through a remote shell, or through a shell object. Every command is timed and has
 * a time limit; a failure is a CommandError worded by the caller from the tool's last line, where xl puts the reason.
 */
export class Dom0 {
  /** Every command run, as spawned (or as the command line given to the shell object). */
  readonly commands: string[][] = [];

  constructor(private readonly options: Dom0Options) {}

  /** `xl ARGS`; a non-zero exit is a CommandError with xl's words. */
  xl(args: string[]): Promise<TimedResult> {
    return this.run([this.options.xl, ...args], (failure) => `xl ${args[0]} ${failure}`);
  }

  async run(argv: string[], describe: (failure: string) => string): Promise<TimedResult> {
    const timeoutMs = this.options.timeoutMs;
    const shell = this.options.dom0Shell;
    if (shell) {
      const commandLine = `${argv.map(shellQuote).join(' ')} 2>&1`;
      this.commands.push([commandLine]);
      const started = performance.now();
      const { exitCode, output } = await shell.run(commandLine, timeoutMs).catch((error: Error) => {
        throw new CommandError(describe(error.message), argv[0]!, argv.slice(1), null, '');
      });
      const ms = Math.round(performance.now() - started);
      if (exitCode !== 0) throw new CommandError(describe(`exited ${exitCode}: ${output.trim().split('\n').slice(-1)[0] || 'no output'}`), argv[0]!, argv.slice(1), exitCode, output);
      return { stdout: output, stderr: '', ms };
    }
    const [command, ...commandArgs] = this.options.remoteShell ? [...this.options.remoteShell, argv.map(shellQuote).join(' ')] : argv;
    this.commands.push([command!, ...commandArgs]);
    return runTimed(command!, commandArgs, timeoutMs, ({ code, signal, lastLine }) =>
      describe(`${signal ? `killed after ${timeoutMs} ms` : `exited ${code}`}: ${lastLine ?? 'no output'}`),
    );
  }
}
