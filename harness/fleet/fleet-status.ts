import { printable } from '../../contract/command-line.js';
import type { StoredAgent } from '../collector/report-store.js';
import type { EpisodeGroupRow, FleetStore } from '../collector/store.js';

export interface FleetStatus {
  agents: number;
  byLastVerdict: Record<string, number>;
  silent: Array<{ agentId: string; hostname: string; lastSeen: string; silentForS: number }>;
  /** Per guest: its episodes and how many ended in each verdict, worst first. */
  perGuest: Array<{ agentId: string; hostname: string; episodes: number; disrupted: number; disruptedRate: number; noticedRate: number; lastVerdict: string | null; spoolDropped: number }>;
  /** Share of guests with at least one disrupted episode: the fleet's "crashed after migration" figure. */
  guestsDisruptedRate: number;
  episodes: number;
  spoolDropped: number;
  /** The verdicts broken down by what the guests run (their hello's `guest`): a distro maintainer's first question. */
  byGuest: Record<GuestDimension, GuestGroup[]>;
  /** The seed's figure over time: per hour a report was received in, oldest first. */
  byHour: PeriodGroup[];
  /** Per campaign (see campaignOf), the latest first; episodes no harness announced are under UNANNOUNCED. */
  byCampaign: PeriodGroup[];
}

/** One hour or one campaign: its guests, episodes, and the share of its guests with a disrupted episode in it. */
export interface PeriodGroup {
  value: string;
  guests: number;
  episodes: number;
  disrupted: number;
  guestsDisrupted: number;
  guestsDisruptedRate: number;
}

/** Where episodes without a migration id (none announced by a harness) are counted in the per-campaign view. */
export const UNANNOUNCED = '(not announced)';

/**
 * The campaign a migration belongs to: a harness names each migration `<campaign>-<index>` (`lab-<start ms>-3`), so
 * the campaign is the id without its last dash-separated part. An id with no dash is its own campaign.
 */
export function campaignOf(migrationId: string | null): string {
  if (migrationId === null) return UNANNOUNCED;
  const cut = migrationId.lastIndexOf('-');
  return cut > 0 ? migrationId.slice(0, cut) : migrationId;
}

/** Rows of (key, agent) into groups: guests counted once per group, a guest disrupted if any of its rows had one. */
function periods(rows: readonly EpisodeGroupRow[], keyOf: (key: string | null) => string): PeriodGroup[] {
  const groups = new Map<string, { episodes: number; disrupted: number; guests: Map<string, number> }>();
  for (const row of rows) {
    const value = keyOf(row.key);
    const group = groups.get(value) ?? { episodes: 0, disrupted: 0, guests: new Map<string, number>() };
    group.episodes += row.episodes;
    group.disrupted += row.disrupted;
    group.guests.set(row.agentId, (group.guests.get(row.agentId) ?? 0) + row.disrupted);
    groups.set(value, group);
  }
  return [...groups].map(([value, g]) => {
    const guestsDisrupted = [...g.guests.values()].filter((n) => n > 0).length;
    return { value, guests: g.guests.size, episodes: g.episodes, disrupted: g.disrupted, guestsDisrupted, guestsDisruptedRate: g.guests.size ? guestsDisrupted / g.guests.size : 0 };
  });
}

export type GuestDimension = 'kernel' | 'distro' | 'hypervisor';

export interface GuestGroup {
  value: string;
  guests: number;
  episodes: number;
  disrupted: number;
  /** Disrupted episodes of all this group's episodes. */
  disruptedRate: number;
  /** Guests with at least one disrupted episode, of this group's guests. */
  guestsDisruptedRate: number;
}

/** What an agent that never said (an older agent, or one that could not read its guest) is counted under. */
export const UNKNOWN_GUEST = 'unknown';

function guestValue(agent: StoredAgent, dimension: GuestDimension): string {
  const guest = agent.guest;
  if (!guest) return UNKNOWN_GUEST;
  if (dimension === 'kernel') return guest.kernel || UNKNOWN_GUEST;
  if (dimension === 'distro') return `${guest.distro} ${guest.release}`.trim() || UNKNOWN_GUEST;
  return guest.hypervisor || (guest.virtual ? 'virtual (hypervisor not told)' : 'not seen as virtual');
}

function groupBy(agents: readonly StoredAgent[], perGuest: ReadonlyMap<string, { episodes: number; disrupted: number }>, dimension: GuestDimension): GuestGroup[] {
  const groups = new Map<string, { guests: number; episodes: number; disrupted: number; guestsDisrupted: number }>();
  for (const agent of agents) {
    const value = guestValue(agent, dimension);
    const group = groups.get(value) ?? { guests: 0, episodes: 0, disrupted: 0, guestsDisrupted: 0 };
    const own = perGuest.get(agent.agentId) ?? { episodes: 0, disrupted: 0 };
    group.guests += 1;
    group.episodes += own.episodes;
    group.disrupted += own.disrupted;
    if (own.disrupted > 0) group.guestsDisrupted += 1;
    groups.set(value, group);
  }
  return [...groups]
    .map(([value, g]) => ({
      value, guests: g.guests, episodes: g.episodes, disrupted: g.disrupted,
      disruptedRate: g.episodes ? g.disrupted / g.episodes : 0, guestsDisruptedRate: g.guestsDisrupted / g.guests,
    }))
    .sort((a, b) => b.disruptedRate - a.disruptedRate || b.episodes - a.episodes || a.value.localeCompare(b.value));
}

export async function fleetStatus(store: FleetStore, nowMs: number, silentAfterMs: number): Promise<FleetStatus> {
  const agents: StoredAgent[] = await store.agents();
  const counts = await store.verdictCounts();
  const byHour = periods(await store.episodesBy('hour'), (key) => key ?? '').sort((a, b) => a.value.localeCompare(b.value));
  const byMigration = await store.episodesBy('migration');
  // Latest first (a harness's campaign ids hold their start time), the unannounced last.
  const byCampaign = periods(byMigration, campaignOf).sort((a, b) =>
    (a.value === UNANNOUNCED ? 1 : 0) - (b.value === UNANNOUNCED ? 1 : 0) || b.value.localeCompare(a.value, undefined, { numeric: true }));
  const byLastVerdict: Record<string, number> = {};
  for (const agent of agents) {
    const key = agent.lastVerdict ?? 'none yet';
    byLastVerdict[key] = (byLastVerdict[key] ?? 0) + 1;
  }
  const perGuest = agents.map((agent) => {
    const verdicts = counts.get(agent.agentId) ?? {};
    const episodes = Object.values(verdicts).reduce((a, b) => a + b, 0);
    const disrupted = verdicts.disrupted ?? 0;
    return {
      agentId: agent.agentId,
      hostname: agent.hostname,
      episodes,
      disrupted,
      disruptedRate: episodes ? disrupted / episodes : 0,
      noticedRate: episodes ? (verdicts.noticed ?? 0) / episodes : 0,
      lastVerdict: agent.lastVerdict,
      spoolDropped: agent.spoolDropped,
    };
  });
  perGuest.sort((a, b) => b.disruptedRate - a.disruptedRate || b.episodes - a.episodes || a.agentId.localeCompare(b.agentId));
  const silent = agents
    .filter((agent) => nowMs - agent.lastSeenMs > silentAfterMs)
    .map((agent) => ({ agentId: agent.agentId, hostname: agent.hostname, lastSeen: new Date(agent.lastSeenMs).toISOString(), silentForS: Math.round((nowMs - agent.lastSeenMs) / 1000) }))
    .sort((a, b) => b.silentForS - a.silentForS);
  const byAgent = new Map(perGuest.map((g) => [g.agentId, g]));
  return {
    agents: agents.length,
    byLastVerdict,
    silent,
    perGuest,
    guestsDisruptedRate: agents.length ? perGuest.filter((g) => g.disrupted > 0).length / agents.length : 0,
    episodes: perGuest.reduce((sum, g) => sum + g.episodes, 0),
    spoolDropped: agents.reduce((sum, a) => sum + a.spoolDropped, 0),
    byGuest: { kernel: groupBy(agents, byAgent, 'kernel'), distro: groupBy(agents, byAgent, 'distro'), hypervisor: groupBy(agents, byAgent, 'hypervisor') },
    byHour,
    byCampaign,
  };
}

const percent = (x: number) => `${(x * 100).toFixed(2)} %`;

export function renderFleetStatus(status: FleetStatus, top: number): string {
  const lines: string[] = [];
  lines.push(`${status.agents} agents, ${status.episodes} episodes; guests with a disrupted episode: ${percent(status.guestsDisruptedRate)}${status.spoolDropped ? `; ${status.spoolDropped} spool entries dropped by agents` : ''}`);
  if (status.byHour.length > 0) {
    const hours = status.byHour.slice(-top);
    lines.push('', `guests with a disrupted episode, per hour (last ${hours.length}):`, `  ${'hour (UTC)'.padEnd(24)} ${'guests'.padStart(7)} ${'episodes'.padStart(8)} ${'guests disrupted'.padStart(17)}`);
    for (const h of hours) lines.push(`  ${h.value.padEnd(24)} ${String(h.guests).padStart(7)} ${String(h.episodes).padStart(8)} ${`${h.guestsDisrupted} (${percent(h.guestsDisruptedRate)})`.padStart(17)}`);
  }
  if (status.byCampaign.length > 0) {
    const campaigns = status.byCampaign.slice(0, top);
    lines.push('', `per campaign (latest ${campaigns.length}):`, `  ${'campaign'.padEnd(40)} ${'guests'.padStart(7)} ${'episodes'.padStart(8)} ${'guests disrupted'.padStart(17)}`);
    for (const c of campaigns) lines.push(`  ${c.value.padEnd(40)} ${String(c.guests).padStart(7)} ${String(c.episodes).padStart(8)} ${`${c.guestsDisrupted} (${percent(c.guestsDisruptedRate)})`.padStart(17)}`);
  }
  lines.push('', 'by last verdict:');
  for (const [verdict, n] of Object.entries(status.byLastVerdict).sort((a, b) => b[1] - a[1])) lines.push(`  ${verdict.padEnd(12)} ${String(n).padStart(7)}`);
  lines.push('', `silent: ${status.silent.length}`);
  for (const s of status.silent.slice(0, top)) lines.push(`  ${s.agentId.padEnd(32)} ${s.hostname.padEnd(24)} last seen ${s.lastSeen} (${s.silentForS} s ago)`);
  lines.push('', `per guest (worst ${Math.min(top, status.perGuest.length)}):`, `  ${'agent'.padEnd(32)} ${'episodes'.padStart(8)} ${'disrupted'.padStart(10)} ${'noticed'.padStart(9)}  last`);
  for (const g of status.perGuest.slice(0, top)) {
    lines.push(`  ${g.agentId.padEnd(32)} ${String(g.episodes).padStart(8)} ${percent(g.disruptedRate).padStart(10)} ${percent(g.noticedRate).padStart(9)}  ${g.lastVerdict ?? '-'}`);
  }
  for (const [dimension, title] of [['kernel', 'guest kernel'], ['distro', 'distribution'], ['hypervisor', 'hypervisor']] as const) {
    const groups = status.byGuest[dimension];
    lines.push('', `by ${title} (worst ${Math.min(top, groups.length)}):`, `  ${title.padEnd(40)} ${'guests'.padStart(7)} ${'episodes'.padStart(8)} ${'disrupted'.padStart(10)} ${'guests disrupted'.padStart(17)}`);
    for (const g of groups.slice(0, top)) {
      lines.push(`  ${g.value.padEnd(40)} ${String(g.guests).padStart(7)} ${String(g.episodes).padStart(8)} ${percent(g.disruptedRate).padStart(10)} ${percent(g.guestsDisruptedRate).padStart(17)}`);
    }
  }
  // Hostnames and ids come from guests: nothing of theirs reaches the operator's terminal unescaped.
  return lines.map(printable).join('\n');
}
