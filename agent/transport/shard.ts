import { createHash } from 'node:crypto';

/**
 * Orders the collectors for this agent by rendezvous (highest-random-weight) hashing of the agent id: every agent
 * computes the same order without coordination, adding or removing a collector moves only the agents whose
 * first collector changed (about 1/N of them), and when one collector is gone its agents' next choices spread evenly
 * over the others rather than all landing on one.
 */
export function collectorOrder(agentId: string, collectors: readonly string[]): string[] {
  if (collectors.length === 0) throw new Error('no collector to choose from');
  const weight = (collector: string) => createHash('sha256').update(collector).update('\0').update(agentId).digest().readBigUInt64BE(0);
  return collectors
    .map((collector) => ({ collector, weight: weight(collector) }))
    .sort((a, b) => (a.weight > b.weight ? -1 : a.weight < b.weight ? 1 : 0))
    .map((entry) => entry.collector);
}

/**
 * This agent's shard among independent collectors: the first of its order. Sharded, an agent sticks to its collector
 * and does not fail over: its sequence numbers and its stored reports live in that collector's store.
 */
export function collectorFor(agentId: string, collectors: readonly string[]): string {
  return collectorOrder(agentId, collectors)[0]!;
}
