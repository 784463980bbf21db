import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, UserError } from '../../contract/command-line.js';
import type { AgentRecord } from '../collector/agent-record.js';
import type { CollectorServer } from '../collector/collector-server.js';
import { OutsideView } from '../blackout/outside-view.js';

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

/** How long a guest has to answer its first ICMP timestamp request before flinch goes on without the outside view. */
const FIRST_ANSWER_MS = 10_000;

/**
 * What measures a guest flinch did not boot: its agent where it has one (found as findExistingAgent does), and the
 * outside view where its address is given (ICMP timestamps its kernel answers). A guest that answers no timestamp
 * request goes on with its agent alone; with neither, there is nothing to measure with, and that is one line.
 */
export async function measureExistingGuest(
  collector: CollectorServer,
  agentSettings: { agentId: string | null; collectorHost: string; collectorPort: number; timeoutMs: number } | null,
  macs: readonly string[],
  guestAddress: string | null,
  intervalMs: number,
  describe: string,
  log: (line: string) => void,
): Promise<{ agent: AgentRecord | null; outside: OutsideView | null }> {
  let agent: AgentRecord | null = null;
  if (agentSettings) {
    log(`waiting for the agent in ${describe} (${agentSettings.agentId ?? `MAC ${macs.join(', ') || 'none known'}`})`);
    agent = await findExistingAgent(collector, agentSettings, macs);
    log(`agent ${agent.agentId} on ${agent.hello.hostname} connected`);
  }
  if (!guestAddress) return { agent, outside: null };
  const outside = new OutsideView(guestAddress, intervalMs || 5);
  await outside.start();
  for (const until = Date.now() + FIRST_ANSWER_MS; !outside.answering && Date.now() < until;) await sleep(100);
  if (outside.answering) return { agent, outside };
  await outside.stop();
  if (!agent) throw new UserError(`the guest at ${guestAddress} does not answer ICMP timestamp requests, and there is no agent to measure with`, EXIT.failed);
  log(`the guest at ${guestAddress} does not answer ICMP timestamp requests: no outside view`);
  return { agent, outside: null };
}
