import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, UserError } from '../../contract/command-line.js';
import type { AgentRecord } from '../collector/agent-record.js';
import type { CollectorServer } from '../collector/collector-server.js';

/**
 * The agent in a guest flinch did not boot (a libvirt domain, a running QEMU): the one whose hello names it, by its id
 * or by one of the guest's MACs. Waits for it to connect; a guest that never says hello is a one-line failure that
 * says what the agent needs.
 */
export async function findExistingAgent(
  collector: CollectorServer,
  where: { agentId: string | null; collectorHost: string; collectorPort: number; timeoutMs: number },
  macs: readonly string[],
): Promise<AgentRecord> {
  const deadline = Date.now() + where.timeoutMs;
  for (;;) {
    const agents = [...collector.agents.values()];
    const agent = where.agentId !== null ? agents.find((a) => a.agentId === where.agentId) : agents.find((a) => a.hello.macs.some((m) => macs.includes(m)));
    if (agent) return agent;
    if (Date.now() > deadline) {
      const who = where.agentId !== null ? `agent ${where.agentId}` : `an agent with one of the guest's MACs (${macs.join(', ') || 'none'})`;
      throw new UserError(
        `${who} did not say hello to ws://${where.collectorHost}:${where.collectorPort} within ${where.timeoutMs / 1000} s` +
          ` (${agents.length === 0 ? 'no agent connected' : `connected: ${agents.map((a) => a.agentId).join(', ')}`}); its agent needs this collector's address and its key from flinch token --fleet-secret`,
        EXIT.failed,
      );
    }
    await sleep(200);
  }
}
