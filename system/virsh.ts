import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { runTimed, type TimedResult } from './timed-command.js';

/** No virsh call the harness makes outside a migration (version, define, start, destroy, undefine) takes this long on a healthy libvirtd. */
export const VIRSH_TIMEOUT_MS = 60_000;

/**
 * One synchronous virsh call against `uri`, killed after VIRSH_TIMEOUT_MS: a libvirtd that hangs costs a minute and
 * a clear failure, never a stuck campaign. Migrations, which are timed, go through virshTimed.
 */
export function virsh(uri: string, ...args: string[]): SpawnSyncReturns<string> {
  return spawnSync('virsh', ['-c', uri, ...args], { encoding: 'utf8', timeout: VIRSH_TIMEOUT_MS, killSignal: 'SIGKILL' });
}

/**
 * `virsh -c URI ARGS` from `executable`, timed (for a migration driver, virsh's wall time is the only timing it has)
 * and killed after `timeoutMs`; a failure is a CommandError with virsh's last line.
 */
export function virshTimed(executable: string, uri: string, args: readonly string[], timeoutMs: number): Promise<TimedResult> {
  return runTimed(executable, ['-c', uri, ...args], timeoutMs, ({ code, lastLine }) => `virsh ${args[0]}: ${lastLine ?? `exit ${code}`}`);
}
