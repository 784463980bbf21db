import { monitorFdb, type FdbChange } from '../../system/bridge.js';
import type { MigrationResult } from '../report/lab-results.js';
import type { LineMonitor } from '../../system/line-monitor.js';
import { captureAnnouncements, type AnnouncementKind, type CapturedAnnouncement } from '../../system/tcpdump.js';

/** Past this many records the oldest are forgotten: a campaign's worth of announcements and fdb moves is far fewer. */
const MAX_RECORDS = 100_000;

/**
 * What the lab's own network saw of a migration, from the bridge's side: the announcements each QEMU's tap let in, and
 * when the bridge moved the guest's MAC to another port. Read from tcpdump and `bridge monitor` in the lab namespace,
 * both stamped with this host's CLOCK_REALTIME, the clock QEMU's STOP/RESUME stamps and the blackout probes use.
 */
export class NetworkWitness {
  private readonly announcements: CapturedAnnouncement[] = [];
  private readonly fdb: FdbChange[] = [];

  private constructor(private readonly monitors: LineMonitor[]) {}

  /** Starts watching every port and the bridge's fdb (in `netns`, or here); resolves once every capture is open. */
  static async start(ports: readonly string[], netns?: string): Promise<NetworkWitness> {
    const monitors: LineMonitor[] = [];
    const witness = new NetworkWitness(monitors);
    try {
      monitors.push(monitorFdb((change) => keep(witness.fdb, change), netns));
      for (const port of ports) monitors.push(captureAnnouncements(port, (a) => keep(witness.announcements, a), netns));
      await Promise.all(monitors.map((m) => m.ready));
    } catch (error) {
      await witness.stop();
      throw error;
    }
    return witness;
  }

  /** The announcements sent by `mac`, and the bridge's moves of it, in [fromMs, toMs]. */
  window(mac: string, fromMs: number, toMs: number): { announcements: CapturedAnnouncement[]; bridgeMoves: FdbChange[] } {
    const within = (atMs: number) => atMs >= fromMs && atMs <= toMs;
    const lower = mac.toLowerCase();
    return {
      announcements: this.announcements.filter((a) => a.sender === lower && within(a.atMs)),
      bridgeMoves: this.fdb.filter((f) => f.mac === lower && !f.deleted && within(f.atMs)),
    };
  }

  async stop(): Promise<void> {
    await Promise.all(this.monitors.map((m) => m.stop()));
  }
}

function keep<T>(records: T[], record: T): void {
  records.push(record);
  if (records.length > MAX_RECORDS) records.shift();
}

export interface BlackoutSplit {
  /** The guest still ran, but no echo came back: a fault before the migration, or the last pre-copy rounds. */
  beforePauseMs: number;
  /** The vCPUs were stopped: STOP on the source to RESUME on the destination. */
  pauseMs: number;
  /** Running on the destination, but nothing yet announced where it is. */
  untilAnnouncementMs: number;
  /** Announced, but the bridge still forwarded to the old port. */
  untilBridgeMs: number;
  /** The bridge knew the new port and still no echo: the guest's own recovery (a NIC coming back, a slow TCG guest). */
  restMs: number;
}

const overlap = (a0: number, a1: number, b0: number, b1: number) => Math.max(0, Math.min(a1, b1) - Math.max(a0, b0));

/**
 * Splits one gap between echoes (the one around RESUME) into the stretches the host can name:
 * before the pause, the pause, resumed but unannounced, announced but not learnt by the bridge, and the rest. Each
 * stretch is clipped to the gap, so the five add up to it. Without a first announcement or a bridge move, their
 * stretches are empty and the time falls into the rest.
 */
export function splitBlackout(
  gap: { fromMs: number; toMs: number },
  pause: { stoppedAtMs: number; resumedAtMs: number },
  firstAnnouncementAtMs: number | null,
  bridgeLearntAtMs: number | null,
): BlackoutSplit {
  const { fromMs, toMs } = gap;
  const resumed = pause.resumedAtMs;
  const announced = firstAnnouncementAtMs !== null && firstAnnouncementAtMs >= resumed ? firstAnnouncementAtMs : resumed;
  const learnt = bridgeLearntAtMs !== null && bridgeLearntAtMs >= announced ? bridgeLearntAtMs : announced;
  const parts = {
    beforePauseMs: overlap(fromMs, toMs, -Infinity, pause.stoppedAtMs),
    pauseMs: overlap(fromMs, toMs, pause.stoppedAtMs, resumed),
    untilAnnouncementMs: overlap(fromMs, toMs, resumed, announced),
    untilBridgeMs: overlap(fromMs, toMs, announced, learnt),
    restMs: 0,
  };
  parts.restMs = Math.max(0, toMs - fromMs - parts.beforePauseMs - parts.pauseMs - parts.untilAnnouncementMs - parts.untilBridgeMs);
  return Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, Math.round(v * 10) / 10])) as unknown as BlackoutSplit;
}

/** At most this many announcements per migration go into results.json; the counts have them all. */
const ANNOUNCEMENTS_KEPT = 20;

/**
 * One migration's network as the lab saw it, for results.json: its announcements and the bridge's move of the guest's
 * MAC away from `fromPort`, in ms after the destination's RESUME (or the completion, where no RESUME came), and the
 * echoes' gap around RESUME split by them.
 */
export function networkSeenIn(
  witness: NetworkWitness,
  guest: { mac: string; fromPort: string },
  timing: { startedAtMs: number; completedAtMs: number; pause?: { stoppedAtMs: number; resumedAtMs: number } | null },
  untilMs: number,
  resumeGap: { probes: 'icmp' | 'udp-echo'; fromMs: number; toMs: number } | null,
): NetworkSeen {
  const { announcements, bridgeMoves } = witness.window(guest.mac, timing.startedAtMs, untilMs);
  const referenceMs = timing.pause ? timing.pause.resumedAtMs : timing.completedAtMs;
  const after = (atMs: number) => Math.round((atMs - referenceMs) * 1000) / 1000;
  const moved = bridgeMoves.find((m) => m.port !== guest.fromPort) ?? null;
  const count = (kind: AnnouncementKind) => announcements.filter((a) => a.kind === kind).length;
  const first = announcements[0] ?? null;
  return {
    reference: timing.pause ? 'resume' : 'completion',
    announcements: announcements.slice(0, ANNOUNCEMENTS_KEPT).map((a) => ({ afterResumeMs: after(a.atMs), kind: a.kind, port: a.port, announced: a.announced })),
    counts: { rarp: count('rarp'), gratuitousArp: count('gratuitous-arp'), unsolicitedNa: count('unsolicited-na') },
    firstAnnouncementMs: first ? after(first.atMs) : null,
    bridgeLearntMs: moved ? after(moved.atMs) : null,
    bridgeLearntPort: moved?.port ?? null,
    resumeGap: resumeGap ? { probes: resumeGap.probes, fromMs: after(resumeGap.fromMs), toMs: after(resumeGap.toMs) } : null,
    blackoutSplit: resumeGap && timing.pause ? splitBlackout(resumeGap, timing.pause, first?.atMs ?? null, moved?.atMs ?? null) : null,
  };
}

export type NetworkSeen = NonNullable<MigrationResult['network']>;
