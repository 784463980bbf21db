import { createHash } from 'node:crypto';

/**
 * Picks this agent's collector among several by rendezvous (highest-random-weight) hashing of the agent id: every
 * agent computes the same answer without coordination, and adding or removing a collector moves only the agents whose
 * highest-weight collector changed (about 1/N of them), not the whole fleet. An agent sticks to its collector and does
 * not fail over: its sequence numbers and its stored reports live in that collector's store.
 */
export function collectorFor(agentId: string, collectors: readonly string[]): string {
  if (collectors.length === 0) throw new Error('no collector to choose from');
  let best = collectors[0]!;
  let bestWeight = -1n;
  for (const collector of collectors) {
    const weight = createHash('sha256').update(collector).update('\0').update(agentId).digest().readBigUInt64BE(0);
    if (weight > bestWeight) {
      best = collector;
      bestWeight = weight;
    }
  }
  return best;
}
