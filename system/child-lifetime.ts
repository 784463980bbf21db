import { findExecutable } from './run-command.js';

/**
 * The command line that runs `command` so that the kernel sends it `signal` when this process dies (util-linux
 * `setpriv --pdeathsig`; the setting survives the exec into `command`). A lab killed by a test's time limit or by
 * SIGKILL must not leave its inner process or a QEMU emulating a whole nested Xen host on cores the next run needs.
 * Without setpriv the command runs as it is.
 */
export function diesWithThisProcess(command: string, args: readonly string[], signal: 'KILL' | 'TERM' = 'KILL'): [string, string[]] {
  return findExecutable('setpriv') ? ['setpriv', ['--pdeathsig', signal, '--', command, ...args]] : [command, [...args]];
}
