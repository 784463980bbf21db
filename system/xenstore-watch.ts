import type { Dom0 } from './xl.js';

/**
 * A `xenstore-watch @releaseDomain` left running in dom0 across one migration, each event stamped there by bash's
 * $EPOCHREALTIME (no fork per line, so a stamp is not queued behind the previous one's `date`). xenstored fires
 * @releaseDomain when a domain shuts down, and a suspend for `xl save` or `xl migrate` is a shutdown with reason
 * suspend: the moment the guest's vCPUs stopped, as the hypervisor told the toolstack.
 */
const START_SCRIPT = [
  'f=$1; w=$2; rm -f "$f"; command -v "$w" > /dev/null || exit 3',
  // setsid: one process group to end (the watch, its pipe and the stamping loop); the limit: a harness that died
  // mid-migration does not leave it behind for ever (--foreground: timeout would otherwise make a group of its own).
  'setsid bash -c \'timeout --foreground 3600 "$0" @releaseDomain | while IFS= read -r l; do echo "$EPOCHREALTIME $l"; done\' "$w" > "$f" 2>/dev/null < /dev/null &',
  // Registered once xenstored's up-front event is in the file: a suspend before that would be missed.
  'i=0; while [ ! -s "$f" ] && [ $i -lt 250 ]; do sleep 0.02; i=$((i+1)); done',
  'echo "flinch-watch $! $EPOCHREALTIME"',
].join('\n');
const STOP_SCRIPT = 'kill -- "-$2" 2>/dev/null; cat "$1" 2>/dev/null; rm -f "$1"';

/** One stamped event line: "1796174211.140123 @releaseDomain". */
export function parseStampedWatchLine(line: string): { atS: number; path: string } | null {
  const m = /^(\d+\.\d+) (\S+)$/.exec(line.trim());
  return m ? { atS: Number(m[1]), path: m[2]! } : null;
}

export class ReleaseDomainWatch {
  private constructor(
    private readonly dom0: Dom0,
    private readonly file: string,
    private readonly pgid: string,
    /** dom0's realtime when the watch was registered: events stamped before it are not this migration's. */
    private readonly registeredAtDom0Ms: number,
    /** dom0's realtime minus the host's, ms: read mid-way through one console round trip, so off by up to half of it. */
    private readonly dom0AheadMs: number,
  ) {}

  /**
   * Starts the watch in dom0; null when it cannot run there (no xenstore-watch, no bash), so that a host without them
   * still migrates, only without this stamp. `file` is where dom0 keeps the stamps until `stop`; `hostNowMs` is the
   * host's realtime clock in ms, which dom0's stamps are put on.
   */
  static async start(dom0: Dom0, executable: string, file: string, hostNowMs: () => number): Promise<ReleaseDomainWatch | null> {
    const started = await dom0.run(['bash', '-c', START_SCRIPT, 'flinch-release-watch', file, executable], (failure) => `xenstore-watch ${failure}`).catch(() => null);
    const m = started && /flinch-watch (\d+) (\d+\.\d+)/.exec(started.stdout);
    if (!m) return null;
    // dom0's clock against the host's from a command that does nothing else, so the reading sits mid-round-trip.
    const before = hostNowMs();
    const clock = await dom0.run(['bash', '-c', 'echo "flinch-clock $EPOCHREALTIME"'], (failure) => `dom0 clock ${failure}`).catch(() => null);
    const after = hostNowMs();
    const reading = clock && /flinch-clock (\d+\.\d+)/.exec(clock.stdout);
    if (!reading) return null;
    return new ReleaseDomainWatch(dom0, file, m[1]!, Number(m[2]) * 1000, Number(reading[1]) * 1000 - (before + after) / 2);
  }

  private stopped: Promise<number | null> | null = null;

  /**
   * Ends the watch; resolves to dom0's stamp of the first @releaseDomain after the watch registered, in host realtime
   * ms, or null if none came. A second call gives the first one's answer.
   */
  stop(): Promise<number | null> {
    this.stopped ??= this.readAndEnd();
    return this.stopped;
  }

  private async readAndEnd(): Promise<number | null> {
    const read = await this.dom0.run(['bash', '-c', STOP_SCRIPT, 'flinch-release-watch', this.file, this.pgid], (failure) => `xenstore-watch ${failure}`).catch(() => null);
    const events = (read?.stdout ?? '').split('\n').map(parseStampedWatchLine).filter((e) => e?.path === '@releaseDomain');
    // xenstored fires every watch once when it is registered, before the start script says it is; the first one
    // after that is the suspend (the migration starts only once the watch is up).
    const released = events.find((e) => e!.atS * 1000 > this.registeredAtDom0Ms);
    return released ? released.atS * 1000 - this.dom0AheadMs : null;
  }
}
