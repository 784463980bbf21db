import { spawnSync } from 'node:child_process';
import { findExecutable } from './run-command.js';

let pdeathsigSupported: boolean | null = null;

/**
 * Whether this system's setpriv takes --pdeathsig: util-linux's does; busybox's `setpriv` applet (the lab guests')
 * does not, and refuses the whole command line. Asked once, by running it.
 */
function setprivHasPdeathsig(): boolean {
  if (pdeathsigSupported === null) {
    pdeathsigSupported =
      findExecutable('setpriv') !== null && spawnSync('setpriv', ['--pdeathsig', 'TERM', '--', 'true'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  }
  return pdeathsigSupported;
}

/**
 * The command line that runs `command` so that the kernel sends it `signal` when this process dies (util-linux
 * `setpriv --pdeathsig`; the setting survives the exec into `command`). A lab killed by a test's time limit or by
 * SIGKILL must not leave its inner process or a QEMU emulating a whole nested Xen host on cores the next run needs.
 * Without a setpriv that can, the command runs as it is.
 */
export function diesWithThisProcess(command: string, args: readonly string[], signal: 'KILL' | 'TERM' = 'KILL'): [string, string[]] {
  return setprivHasPdeathsig() ? ['setpriv', ['--pdeathsig', signal, '--', command, ...args]] : [command, [...args]];
}
