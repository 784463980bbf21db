import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { runTimed, type TimedResult } from './timed-command.js';
import { startLineMonitor, type LineMonitor } from './line-monitor.js';

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

/** One lifecycle event as `virsh event --timestamp` printed it. */
export interface LifecycleEvent {
  /** When virsh received it (its own stamp, ms resolution), host CLOCK_REALTIME in ms. */
  atMs: number;
  domain: string;
  /** Started, Suspended, Resumed, Stopped, ...: virsh's words for VIR_DOMAIN_EVENT_*. */
  event: string;
  /** Migrated, Paused, Saved, Restored, Booted, ...: the event's detail. */
  detail: string;
}

/**
 * "2026-12-01 23:00:00.123+0000: event 'lifecycle' for domain 'guest': Suspended Migrated" (virsh-domain-event.c,
 * virTimeStringNowRaw's stamp); null for any other line.
 */
export function parseLifecycleLine(line: string): LifecycleEvent | null {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d\.\d{3})([+-]\d\d)(\d\d): event 'lifecycle' for domain '(.*)': (\S+) (\S+)$/.exec(line.trim());
  if (!m) return null;
  const atMs = Date.parse(`${m[1]}T${m[2]}${m[3]}:${m[4]}`);
  return Number.isFinite(atMs) ? { atMs, domain: m[5]!, event: m[6]!, detail: m[7]! } : null;
}

/** Watches every domain's lifecycle events on `uri` until stopped (`virsh event --loop`, stamped by virsh). */
export function watchLifecycleEvents(executable: string, uri: string, onEvent: (event: LifecycleEvent) => void): LineMonitor {
  return startLineMonitor(executable, ['-c', uri, 'event', '--event', 'lifecycle', '--loop', '--timestamp'], (line) => {
    const event = parseLifecycleLine(line);
    if (event) onEvent(event);
  });
}

/**
 * The pause a domain's lifecycle events bound after `sinceMs`: its first Suspended or Stopped (a live migration's
 * switch-over, a save, a suspend) to the first Resumed after it (the vCPUs running again, on the destination or after
 * the restore). Not Started: after `virsh restore` libvirt says "Started Restored" before it starts the vCPUs ("Resumed
 * Snapshot", 9 ms later on libvirt 9.0), and a live migration's destination says Started before its vCPUs run too.
 * Null until both have come.
 */
export function pauseFromLifecycle(events: readonly LifecycleEvent[], domain: string, sinceMs: number): { stoppedAtMs: number; resumedAtMs: number } | null {
  const ours = events.filter((e) => e.domain === domain && e.atMs >= sinceMs);
  const stopped = ours.find((e) => e.event === 'Suspended' || e.event === 'Stopped');
  if (!stopped) return null;
  const resumed = ours.find((e) => e.atMs >= stopped.atMs && e !== stopped && e.event === 'Resumed');
  return resumed ? { stoppedAtMs: stopped.atMs, resumedAtMs: resumed.atMs } : null;
}
