import { printable } from '../../contract/command-line.js';
import type { ReportStore, StoredAgent } from '../collector/report-store.js';

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
}

export function fleetStatus(store: ReportStore, nowMs: number, silentAfterMs: number): FleetStatus {
  const agents: StoredAgent[] = store.agents();
  const counts = store.verdictCounts();
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
  return {
    agents: agents.length,
    byLastVerdict,
    silent,
    perGuest,
    guestsDisruptedRate: agents.length ? perGuest.filter((g) => g.disrupted > 0).length / agents.length : 0,
    episodes: perGuest.reduce((sum, g) => sum + g.episodes, 0),
    spoolDropped: agents.reduce((sum, a) => sum + a.spoolDropped, 0),
  };
}

const percent = (x: number) => `${(x * 100).toFixed(2)} %`;

export function renderFleetStatus(status: FleetStatus, top: number): string {
  const lines: string[] = [];
  lines.push(`${status.agents} agents, ${status.episodes} episodes; guests with a disrupted episode: ${percent(status.guestsDisruptedRate)}${status.spoolDropped ? `; ${status.spoolDropped} spool entries dropped by agents` : ''}`);
  lines.push('', 'by last verdict:');
  for (const [verdict, n] of Object.entries(status.byLastVerdict).sort((a, b) => b[1] - a[1])) lines.push(`  ${verdict.padEnd(12)} ${String(n).padStart(7)}`);
  lines.push('', `silent: ${status.silent.length}`);
  for (const s of status.silent.slice(0, top)) lines.push(`  ${s.agentId.padEnd(32)} ${s.hostname.padEnd(24)} last seen ${s.lastSeen} (${s.silentForS} s ago)`);
  lines.push('', `per guest (worst ${Math.min(top, status.perGuest.length)}):`, `  ${'agent'.padEnd(32)} ${'episodes'.padStart(8)} ${'disrupted'.padStart(10)} ${'noticed'.padStart(9)}  last`);
  for (const g of status.perGuest.slice(0, top)) {
    lines.push(`  ${g.agentId.padEnd(32)} ${String(g.episodes).padStart(8)} ${percent(g.disruptedRate).padStart(10)} ${percent(g.noticedRate).padStart(9)}  ${g.lastVerdict ?? '-'}`);
  }
  // Hostnames and ids come from guests: nothing of theirs reaches the operator's terminal unescaped.
  return lines.map(printable).join('\n');
}
