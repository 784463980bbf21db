import type { ObservationOf, ClockStamp, Observation } from '../../contract/observation.js';
import { readSlackMs } from '../../probes/clock/clock-probe.js';
import { DEFAULT_OFFSET_NOISE, DEFAULT_PAUSE_NOISE, NoiseFloor, pauseMagnitudeMs } from './noise-floor.js';
import type { OwnClockStep } from './own-clock-step.js';

/** Why an episode opened. */
export interface EpisodeTrigger {
  kind:
    | 'clock-step'
    | 'boottime-jump'
    | 'host-offset-step'
    | 'pause'
    | 'notify-peers'
    | 'igmp-resend'
    | 'carrier-counter'
    | 'interface-recreated'
    | 'kmsg-suspend'
    | 'xen-domid'
    | 'xen-suspend'
    | 'canary-lost'
    | 'harness-announce';
  detail: string;
  /** For clock triggers: how far the clock moved (ms). */
  magnitudeMs?: number;
  at: ClockStamp;
}

export interface TriggerThresholds {
  /** realtime − monotonic moving this much is a clock step (ms). */
  realtimeStepMs: number;
  /** boottime − monotonic moving this much is a suspend (ms; /proc/uptime has 10 ms resolution). */
  boottimeJumpMs: number;
}

export const DEFAULT_TRIGGER_THRESHOLDS: TriggerThresholds = { realtimeStepMs: 3, boottimeJumpMs: 25 };

/**
 * Triggers that only a migration (or a suspend, which a migration is to the guest) produces: the kernel's own announce
 * request, Xen's suspend and new domid, boottime running on while monotonic stood still, the kernel's suspend lines,
 * the offset to the host moving, and a harness's authenticated announcement. A pause, a clock step, a carrier change,
 * a re-created interface and a lost canary are things an administrator or a busy host does too: they open episodes
 * (something happened) but prove no migration, and so never license the safety net to change the guest.
 */
const MIGRATION_EVIDENCE = new Set<EpisodeTrigger['kind']>([
  'notify-peers', 'igmp-resend', 'xen-domid', 'xen-suspend', 'boottime-jump', 'kmsg-suspend', 'host-offset-step', 'harness-announce',
]);

export function isMigrationEvidence(trigger: Pick<EpisodeTrigger, 'kind'>): boolean {
  return MIGRATION_EVIDENCE.has(trigger.kind);
}

/** Migration evidence that comes over the collector connection (a harness's announcement, the offset to the host). */
const COLLECTOR_EVIDENCE = new Set<EpisodeTrigger['kind']>(['harness-announce', 'host-offset-step']);

export function isCollectorEvidence(trigger: Pick<EpisodeTrigger, 'kind'>): boolean {
  return COLLECTOR_EVIDENCE.has(trigger.kind);
}

/** Migration evidence the guest's own kernel and clocks give: no collector can claim it. */
export function isLocalMigrationEvidence(trigger: Pick<EpisodeTrigger, 'kind'>): boolean {
  return isMigrationEvidence(trigger) && !isCollectorEvidence(trigger);
}

/**
 * Recognises the observations that mean "something happened to this guest": the moments an episode opens. It keeps
 * the little state that needs (last clock deltas, carrier counters and MACs per interface) and nothing else.
 */
export class TriggerDetector {
  private lastClock: ObservationOf<'clock'> | null = null;
  private readonly carrierChanges = new Map<number, number>();
  private readonly ifindexByMac = new Map<string, number>();
  private readonly deletedMacs = new Set<string>();

  constructor(
    private readonly thresholds: TriggerThresholds = DEFAULT_TRIGGER_THRESHOLDS,
    readonly pauseNoise: NoiseFloor = new NoiseFloor(DEFAULT_PAUSE_NOISE),
    readonly offsetNoise: NoiseFloor = new NoiseFloor(DEFAULT_OFFSET_NOISE),
  ) {}

  /** A realtime step flinch is about to make itself (healing the clock): the next move of about that size is its own. */
  private ownStep: OwnClockStep | null = null;

  expectOwnClockStep(step: OwnClockStep): void {
    this.ownStep = step;
  }

  detect(o: Observation): EpisodeTrigger[] {
    const at = o.at;
    switch (o.kind) {
      case 'clock': {
        const previous = this.lastClock;
        this.lastClock = o;
        if (!previous) return [];
        const triggers: EpisodeTrigger[] = [];
        const slack = readSlackMs(previous, o);
        const boottimeMove = o.boottimeMinusMonotonicMs - previous.boottimeMinusMonotonicMs;
        // Across a suspend (Xen save/restore and migration) monotonic stops while realtime and boottime both run on:
        // that is a suspend, not a wrong clock, so realtime is then judged against boottime, within boottime's coarser
        // resolution (/proc/uptime: 10 ms). A step moves realtime alone.
        const suspended = boottimeMove >= this.thresholds.boottimeJumpMs + slack;
        const realtimeMove = o.realtimeMinusMonotonicMs - previous.realtimeMinusMonotonicMs - (suspended ? boottimeMove : 0);
        const own = this.ownStep?.claimClockMove(realtimeMove, at.monotonicMs) ?? false;
        if (own) this.ownStep = null;
        else if (Math.abs(realtimeMove) >= (suspended ? this.thresholds.boottimeJumpMs : this.thresholds.realtimeStepMs) + slack) {
          triggers.push({ kind: 'clock-step', detail: `realtime moved ${realtimeMove.toFixed(1)} ms against ${suspended ? 'boottime' : 'monotonic'}`, magnitudeMs: Math.abs(realtimeMove), at });
        }
        if (suspended) {
          triggers.push({ kind: 'boottime-jump', detail: `boottime ran ${boottimeMove.toFixed(0)} ms ahead of a stopped monotonic clock`, magnitudeMs: boottimeMove, at });
        }
        return triggers;
      }
      case 'host-offset': {
        if (o.changeMs === null || o.cause === 'flinch-clock-heal') return [];
        // Like a pause: below what this machine's probes wobble by on their own, a move is noise, and is learnt.
        const magnitude = Math.abs(o.changeMs);
        const floor = this.offsetNoise.thresholdMs(at.monotonicMs);
        if (magnitude < floor) {
          this.offsetNoise.note(magnitude, at.monotonicMs);
          return [];
        }
        return [{ kind: 'host-offset-step', detail: `offset against the host moved ${o.changeMs.toFixed(1)} ms (noise floor ${floor.toFixed(0)} ms)`, magnitudeMs: magnitude, at }];
      }
      case 'pause': {
        // Below the machine's own noise a pause is noise, and is learnt as such; above it, it opens an episode.
        const magnitude = pauseMagnitudeMs(o);
        const floor = this.pauseNoise.thresholdMs(at.monotonicMs);
        if (magnitude < floor) {
          this.pauseNoise.note(magnitude, at.monotonicMs);
          return [];
        }
        return [{ kind: 'pause', detail: `woke ${o.lateByMs} ms late, ${o.stealMs} ms stolen (noise floor ${floor.toFixed(0)} ms)`, magnitudeMs: magnitude, at }];
      }
      case 'link': {
        const triggers: EpisodeTrigger[] = [];
        const { ifindex, mac, name, carrierChanges } = o.link;
        if (o.action === 'del') {
          this.carrierChanges.delete(ifindex);
          if (mac) this.deletedMacs.add(mac);
          return [];
        }
        if (mac && mac !== '00:00:00:00:00:00') {
          const known = this.ifindexByMac.get(mac);
          if (o.action === 'new' && known !== undefined && known !== ifindex && this.deletedMacs.has(mac)) {
            triggers.push({ kind: 'interface-recreated', detail: `${name} (${mac}) came back as ifindex ${ifindex}, was ${known}`, at });
            this.deletedMacs.delete(mac);
          }
          this.ifindexByMac.set(mac, ifindex);
        }
        if (carrierChanges !== null) {
          const before = this.carrierChanges.get(ifindex);
          this.carrierChanges.set(ifindex, carrierChanges);
          if (o.action === 'new' && before !== undefined && carrierChanges > before) {
            triggers.push({ kind: 'carrier-counter', detail: `${name} carrier_changes ${before} → ${carrierChanges}`, at });
          }
        }
        if (o.event === 'notify-peers') triggers.push({ kind: 'notify-peers', detail: `${name}: IFLA_EVENT NOTIFY_PEERS`, at });
        if (o.event === 'igmp-resend') triggers.push({ kind: 'igmp-resend', detail: `${name}: IFLA_EVENT IGMP_RESEND`, at });
        return triggers;
      }
      case 'kmsg':
        return !o.replay && o.tags.includes('suspend-resume') ? [{ kind: 'kmsg-suspend', detail: o.message.slice(0, 200), at }] : [];
      case 'xen':
        if (o.change === 'domid' && o.previous !== null) return [{ kind: 'xen-domid', detail: `domid ${o.previous} → ${o.value}`, at }];
        if (o.change === 'shutdown-request' && o.value === 'suspend') return [{ kind: 'xen-suspend', detail: 'control/shutdown = suspend', at }];
        return [];
      case 'firewall':
        return o.canary === 'missing' ? [{ kind: 'canary-lost', detail: `${o.backend}${o.family ? ` ${o.family}` : ''}: flinch's canary is gone (wholesale flush)`, at }] : [];
      default:
        return [];
    }
  }
}
