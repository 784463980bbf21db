import { spawn } from 'node:child_process';
import { CommandError } from './run-command.js';

export interface TimedResult {
  stdout: string;
  stderr: string;
  /** Wall time of the command: for virsh and xl, the driver's only timing. */
  ms: number;
}

/**
 * Runs a hypervisor tool (virsh, xl) with a time limit and its wall time measured. A failure is a CommandError
 * worded by `describe` from the tool's last line of output, where these tools put the reason.
 */
export function runTimed(
  command: string,
  args: readonly string[],
  timeoutMs: number,
  describe: (failure: { code: number | null; signal: NodeJS.Signals | null; lastLine: string | null }) => string,
): Promise<TimedResult> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new CommandError(`${command}: ${error.message}`, command, args, null, ''));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Math.round(performance.now() - started);
      if (code === 0) return resolve({ stdout, stderr, ms });
      const lastLine = (stderr.trim() || stdout.trim()).split('\n').filter(Boolean).slice(-1)[0] ?? null;
      reject(new CommandError(describe({ code, signal, lastLine }), command, args, code, stderr));
    });
  });
}
