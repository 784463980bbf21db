/**
 * Both executables end the same way on failure: one line that says what failed and what to do, the stack only with
 * --verbose (each program's --help says so), and a non-zero exit.
 */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

export function reportFatal(program: string, error: unknown, verbose: boolean): number {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${program}: ${message.split('\n')[0]}\n`);
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
