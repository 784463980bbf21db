import type { AgentRecord } from './agent-record.js';
import type { CollectorMetrics } from './collector-metrics.js';
import type { RateLimitedLog } from './rate-limited-log.js';
import type { IncomingData } from './report-store.js';
import type { FleetStore } from './store.js';
import { hostNowMs } from '../host-clock.js';

export type BatchedItem = IncomingData & { agent: AgentRecord };

/** What the collector does around a commit: acknowledge an agent, drop one whose data was not stored, announce it. */
export interface IngestBatchHooks {
  /** Tell the agent (if it is connected) the highest seq now stored. */
  acknowledge(agent: AgentRecord): void;
  /** Nothing of this agent's was stored: close its connection so that it re-sends after its backoff. */
  disconnect(agent: AgentRecord): void;
  committed(items: readonly BatchedItem[]): void;
}

/**
 * Everything that arrives within one turn of the event loop is stored in one transaction, then acknowledged: an ack
 * never covers what is not on disk, and 10 000 agents cost one commit a turn rather than one each.
 */
export class IngestBatch {
  private items: BatchedItem[] = [];
  private readonly toAcknowledge = new Set<AgentRecord>();
  private scheduled = false;
  /** The commit in flight: one at a time, so that an ack never overtakes the commit of what it covers. */
  private committing: Promise<void> | null = null;

  constructor(
    private readonly store: Pick<FleetStore, 'apply' | 'lastSeq'>,
    private readonly metrics: CollectorMetrics,
    private readonly rateLog: RateLimitedLog,
    private readonly hooks: IngestBatchHooks,
  ) {}

  add(item: BatchedItem): void {
    this.items.push(item);
    this.schedule();
  }

  /** A duplicate: nothing to store, but the agent is told again what is, with the next commit's acks. */
  acknowledgeLater(agent: AgentRecord): void {
    this.toAcknowledge.add(agent);
    this.schedule();
  }

  /**
   * Commits what has arrived, after the commit in flight if there is one (a store over the network answers later: what
   * arrives meanwhile waits and goes in the next transaction). Resolves once it is stored and acknowledged.
   */
  async flush(): Promise<void> {
    this.scheduled = false;
    while (this.committing) await this.committing;
    const batch = this.items;
    this.items = [];
    const acknowledge = [...this.toAcknowledge];
    this.toAcknowledge.clear();
    this.committing = this.commit(batch, acknowledge).finally(() => (this.committing = null));
    await this.committing;
  }

  private async commit(batch: BatchedItem[], acknowledge: AgentRecord[]): Promise<void> {
    const toAcknowledge = new Set(acknowledge);
    if (batch.length > 0) {
      try {
        await this.store.apply(batch);
      } catch (error) {
        await this.failed(batch, error as Error);
        return;
      }
      const committedAt = hostNowMs();
      for (const item of batch) {
        this.metrics.ingestSeconds.observe((committedAt - item.receivedAtMs) / 1000);
        item.agent.storedSeq = Math.max(item.agent.storedSeq, item.seq);
        toAcknowledge.add(item.agent);
      }
      this.hooks.committed(batch);
    }
    for (const agent of toAcknowledge) this.hooks.acknowledge(agent);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => void this.flush());
  }

  /**
   * Nothing in a failed batch is acknowledged. Its agents fall back to what the store holds and are disconnected, so
   * they re-send after their backoff; the collector goes on serving.
   */
  private async failed(batch: BatchedItem[], error: Error): Promise<void> {
    this.rateLog.say('store', `store write failed, ${batch.length} messages not acknowledged: ${error.message}`);
    for (const agent of new Set(batch.map((item) => item.agent))) {
      // Disconnected first: what it sends until the store answers must not count as applied.
      this.hooks.disconnect(agent);
      let stored = agent.storedSeq;
      try {
        stored = await this.store.lastSeq(agent.agentId);
      } catch {
        // The store is unreachable: what this collector knows was committed is the floor.
      }
      agent.appliedSeq = stored;
      agent.storedSeq = stored;
    }
  }
}
