import type { Observation } from '../../contract/observation.js';
import type { Evidence, Report, Verdict } from '../../contract/report-schema.js';

export type RemediationOutcome = Report['remediation']['outcome'];
import type { Episode } from './episode-engine.js';

export interface VerdictThresholds {
  /** A clock step (or host offset step) at least this large is a disruption; smaller ones are noticed (ms). */
  clockStepMs: number;
}

export const DEFAULT_VERDICT_THRESHOLDS: VerdictThresholds = { clockStepMs: 1000 };

function isMulticastNeighbour(o: { address: string; lladdr: string | null }): boolean {
  return o.address.startsWith('ff') || o.address.startsWith('224.') || (o.lladdr?.startsWith('33:33:') ?? false) || (o.lladdr?.startsWith('01:00:5e') ?? false);
}

/** What one observation says about the guest's experience, if anything. */
export function evidenceOf(o: Observation, thresholds: VerdictThresholds): Evidence | null {
  const at = o.at;
  const noticed = (kind: string, detail: string): Evidence => ({ severity: 'noticed', kind, detail, at });
  const disrupted = (kind: string, detail: string): Evidence => ({ severity: 'disrupted', kind, detail, at });
  switch (o.kind) {
    case 'link':
      if (o.action === 'del') return disrupted('interface-removed', `${o.link.name} (ifindex ${o.link.ifindex}) removed`);
      if (o.action === 'new' && o.link.adminUp && o.link.carrier === 0) return disrupted('carrier-lost', `${o.link.name} lost its carrier`);
      if (o.event === 'notify-peers' || o.event === 'igmp-resend') return noticed(o.event, `${o.link.name}: IFLA_EVENT ${o.event}`);
      if (o.action === 'new') return noticed('link-change', `${o.link.name}: ${o.link.operstate}, carrier_changes ${o.link.carrierChanges ?? '?'}`);
      return null;
    case 'address':
      return o.action === 'del' ? disrupted('address-lost', `${o.address}/${o.prefixLength} on ifindex ${o.ifindex}${o.reconciled ? ' (dropped silently)' : ''}`) : null;
    case 'route':
      return o.action === 'del' ? disrupted('route-lost', `${o.destination}${o.gateway ? ` via ${o.gateway}` : ''}${o.reconciled ? ' (dropped silently)' : ''}`) : null;
    case 'neighbour':
      return o.action === 'del' && !isMulticastNeighbour(o) ? disrupted('neighbour-lost', `${o.address} on ifindex ${o.ifindex}`) : null;
    case 'firewall': {
      const by = o.committedBy ? ` by process ${o.committedBy.pid} (${o.committedBy.process})` : '';
      if (o.canary === 'missing') {
        // A flush that took none of the guest's own rules (only flinch's canary) cost the guest nothing.
        const flush = o.removed.length > 0 ? disrupted : noticed;
        return flush('firewall-flushed', `${o.backend}${o.family ? ` ${o.family}` : ''}: wholesale flush (canary gone)${by}, ${o.removed.length} rule(s) removed`);
      }
      if (o.removed.length > 0 || o.added.length > 0) return disrupted('firewall-changed', `${o.backend}${o.family ? ` ${o.family}` : ''}: ${o.removed.length} removed, ${o.added.length} added${by}`);
      if (o.staleInterfaceRefs.length > 0) return disrupted('stale-interface-rule', `${o.staleInterfaceRefs.length} rule(s) match a dead interface index`);
      return null;
    }
    case 'clock': {
      return null; // clock steps are judged from the triggers, which know the previous sample
    }
    case 'host-offset':
      if (o.changeMs === null || o.cause === 'flinch-clock-heal') return null;
      return Math.abs(o.changeMs) >= thresholds.clockStepMs
        ? disrupted('clock-step', `offset against the host moved ${o.changeMs.toFixed(1)} ms`)
        : noticed('clock-lag', `offset against the host moved ${o.changeMs.toFixed(1)} ms`);
    case 'pause':
      return noticed('pause', `woke ${o.lateByMs} ms late, ${o.stealMs} ms stolen`);
    case 'kmsg':
      return !o.replay && o.tags.length > 0 ? noticed(`kmsg-${o.tags[0]}`, o.message.slice(0, 200)) : null;
    case 'xen':
      return o.change === 'domid' && o.previous !== null ? noticed('xen-domid', `domid ${o.previous} → ${o.value}`) : null;
    case 'connection':
      return o.event === 'reset' ? disrupted('connection-reset', o.detail) : null;
    default:
      return null;
  }
}

export interface Judgement {
  verdict: Verdict;
  evidence: Evidence[];
}

/**
 * The verdict on one closed episode. Disrupted when state was lost or changed; healed when it was and the safety
 * net put every piece back (outcome `healed`: its actions succeeded and the state matched the baseline again);
 * noticed when the guest could see events but lost nothing; transparent when it saw nothing at all.
 */
export function judgeEpisode(episode: Episode, remediation: RemediationOutcome, thresholds: VerdictThresholds): Judgement {
  const evidence: Evidence[] = [];
  for (const trigger of episode.triggers) {
    // Only a clock that moved can be disrupted by how far it moved; a pause or an offset step is as big as it was.
    if (trigger.magnitudeMs !== undefined && (trigger.kind === 'clock-step' || trigger.kind === 'boottime-jump')) {
      // A suspend, however long, loses nothing by itself: what it broke shows up as its own evidence.
      const severity = trigger.kind !== 'boottime-jump' && trigger.magnitudeMs >= thresholds.clockStepMs ? 'disrupted' : 'noticed';
      evidence.push({ severity, kind: trigger.kind, detail: trigger.detail, at: trigger.at });
    }
  }
  // A pause or an offset move is kept in the episode either way, but is evidence only where it rose above this
  // machine's own noise, that is where the detector raised a trigger on it: a 10 ms steal the host inflicts every
  // few seconds would otherwise make every announced episode "noticed" (control migrations showed it).
  const aboveNoise = new Set(episode.triggers.filter((x) => x.kind === 'pause' || x.kind === 'host-offset-step').map((x) => `${x.kind === 'pause' ? 'pause' : 'host-offset'} ${x.at.monotonicMs}`));
  for (const o of episode.observations) {
    if ((o.kind === 'pause' || (o.kind === 'host-offset' && o.cause !== 'flinch-clock-heal')) && !aboveNoise.has(`${o.kind} ${o.at.monotonicMs}`)) continue;
    const e = evidenceOf(o, thresholds);
    if (e) evidence.push(e);
  }
  const disrupted = evidence.some((e) => e.severity === 'disrupted');
  if (!disrupted) return { verdict: evidence.length > 0 ? 'noticed' : 'transparent', evidence };
  return { verdict: remediation === 'healed' ? 'healed' : 'disrupted', evidence };
}
