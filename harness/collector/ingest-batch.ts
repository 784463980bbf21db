import type { AgentRecord } from './agent-record.js';
import type { CollectorMetrics } from './collector-metrics.js';
import type { RateLimitedLog } from './rate-limited-log.js';
import type { IncomingData, ReportStore } from './report-store.js';
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

  constructor(
    private readonly store: Pick<ReportStore, 'apply' | 'lastSeq'>,
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

  flush(): void {
    this.scheduled = false;
    const batch = this.items;
    this.items = [];
    if (batch.length > 0) {
      try {
        this.store.apply(batch);
      } catch (error) {
        this.failed(batch, error as Error);
        return;
      }
      const committedAt = hostNowMs();
      for (const item of batch) {
        this.metrics.ingestSeconds.observe((committedAt - item.receivedAtMs) / 1000);
        this.toAcknowledge.add(item.agent);
      }
      this.hooks.committed(batch);
    }
    for (const agent of this.toAcknowledge) this.hooks.acknowledge(agent);
    this.toAcknowledge.clear();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  /**
   * Nothing in a failed batch is acknowledged. Its agents fall back to what the store holds and are disconnected, so
   * they re-send after their backoff; the collector goes on serving.
   */
  private failed(batch: BatchedItem[], error: Error): void {
    this.rateLog.say('store', `store write failed, ${batch.length} messages not acknowledged: ${error.message}`);
    this.toAcknowledge.clear();
    for (const agent of new Set(batch.map((item) => item.agent))) {
      agent.appliedSeq = this.store.lastSeq(agent.agentId);
      this.hooks.disconnect(agent);
    }
  }
}
