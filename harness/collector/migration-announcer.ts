import type { CollectorServer } from './collector-server.js';

/** How old an announcement may be and still be given to an agent that reconnects: an agent's longest episode. */
const ANNOUNCEMENT_REPLAY_MS = 120_000;

/**
 * A harness telling its guests' agents that a migration starts or has finished, so that an agent can name the episode
 * after it (and, with --accept-announce, count it as evidence). A lab's feature, not the collector's: it sits on the
 * collector's events. The latest announcement is given again to an agent that reconnects, since a guest frozen for a
 * save/restore often loses its connection exactly across the migration being announced.
 */
export class MigrationAnnouncer {
  private readonly latest = new Map<string, { phase: 'starting' | 'finished'; migrationId: string; atMs: number }>();

  constructor(private readonly collector: CollectorServer) {
    collector.on('hello', (agent) => {
      const announcement = this.latest.get(agent.agentId);
      if (announcement && Date.now() - announcement.atMs <= ANNOUNCEMENT_REPLAY_MS) {
        collector.tell(agent.agentId, { type: 'announce', phase: announcement.phase, migrationId: announcement.migrationId });
      }
    });
  }

  /** False when the agent is not connected now; it is told when it reconnects. */
  announce(agentId: string, phase: 'starting' | 'finished', migrationId: string): boolean {
    this.latest.set(agentId, { phase, migrationId, atMs: Date.now() });
    return this.collector.tell(agentId, { type: 'announce', phase, migrationId });
  }
}
