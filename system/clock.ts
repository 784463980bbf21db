import { readdirSync, readFileSync } from 'node:fs';
import { findExecutable, runCommand } from './run-command.js';

/**
 * The one place flinch touches the guest's clock: finding which time daemon runs, asking it to step, or stepping
 * CLOCK_REALTIME itself with `date` (GNU and busybox both take `-s @SECONDS`).
 */
export type TimeDaemon = 'chronyd' | 'ntpd' | 'systemd-timesyncd';

/** /proc/PID/comm is cut at 15 characters: "systemd-timesyn". */
const DAEMONS: ReadonlyArray<[comm: string, daemon: TimeDaemon]> = [['chronyd', 'chronyd'], ['ntpd', 'ntpd'], ['systemd-timesyn', 'systemd-timesyncd']];

export function runningTimeDaemon(proc = '/proc'): TimeDaemon | null {
  let entries: string[];
  try {
    entries = readdirSync(proc).filter((e) => /^\d+$/.test(e));
  } catch {
    return null;
  }
  for (const pid of entries) {
    let comm: string;
    try {
      comm = readFileSync(`${proc}/${pid}/comm`, 'utf8').trim();
    } catch {
      continue;
    }
    const found = DAEMONS.find(([name]) => name === comm);
    if (found) return found[1];
  }
  return null;
}

/** Asks the running daemon to step now; returns the command, or null when the daemon has no such request (ntpd). */
export async function askDaemonToStep(daemon: TimeDaemon, dryRun: boolean): Promise<string | null> {
  const [command, args]: [string, string[]] | [null, null] = daemon === 'chronyd' ? ['chronyc', ['makestep']]
    : daemon === 'systemd-timesyncd' ? ['systemctl', ['restart', 'systemd-timesyncd.service']]
    : [null, null];
  if (command === null) return null;
  if (!findExecutable(command)) throw new Error(`${command} is not installed`);
  if (!dryRun) await runCommand(command, args, { timeout: 10_000 });
  return `${command} ${args.join(' ')}`;
}

/**
 * Steps CLOCK_REALTIME by `byMs`. `date` sets whole seconds, so it is run just as the corrected clock crosses a whole
 * second: the step is then exact to the time `date` takes to start (ms), not to a second.
 */
export async function stepRealtime(byMs: number, dryRun: boolean): Promise<string> {
  const target = () => Date.now() + byMs;
  const untilWholeSecond = 1000 - (target() % 1000);
  if (!dryRun) await new Promise((resolve) => setTimeout(resolve, untilWholeSecond));
  const seconds = Math.round(target() / 1000);
  const args = ['-u', '-s', `@${seconds}`];
  if (!dryRun) await runCommand('date', args, { timeout: 5000 });
  return `date ${args.join(' ')}`;
}
