import { spawnSync, type SpawnSyncReturns } from 'node:child_process';

/** No virsh call the harness makes outside a migration (version, define, start, destroy, undefine) takes this long on a healthy libvirtd. */
export const VIRSH_TIMEOUT_MS = 60_000;

/**
 * One synchronous virsh call against `uri`, killed after VIRSH_TIMEOUT_MS: a libvirtd that hangs costs a minute and
 * a clear failure, never a stuck campaign. Migrations, which are timed, go through the driver's runTimed instead.
 */
export function virsh(uri: string, ...args: string[]): SpawnSyncReturns<string> {
  return spawnSync('virsh', ['-c', uri, ...args], { encoding: 'utf8', timeout: VIRSH_TIMEOUT_MS, killSignal: 'SIGKILL' });
}
