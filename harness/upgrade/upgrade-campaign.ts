import { existsSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { JOURNAL_FILE } from '../campaign/campaign-journal.js';
import { runCampaign, type CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { GuestTarget } from '../campaign/campaign-target.js';
import { hostNowMs } from '../host-clock.js';
import { findExistingAgent } from '../lab/existing-agent.js';
import type { QemuUpgradeDriver } from './qemu-upgrade.js';

export interface UpgradeCampaignOptions extends CampaignOptions {
  /** The fleet secret (already read) the guest agent's key was derived from. */
  fleetSecret: string;
  collectorHost: string;
  collectorPort: number;
  agentId: string | null;
}

/**
 * The upgrade measured like any migration: one migration of a campaign whose driver is the prepared upgrade, judged
 * by the guest's own agent (found by its id or its NIC's MAC) reporting to the campaign's collector.
 */
export async function runUpgradeCampaign(options: UpgradeCampaignOptions, driver: QemuUpgradeDriver, log: (line: string) => void): Promise<CampaignOutcome> {
  // An upgrade is not resumable: a second run in the same folder would be a second upgrade, not the rest of the first.
  if (existsSync(path.join(options.outDir, JOURNAL_FILE))) throw new UserError(`--out ${options.outDir} already holds a run: give a new folder`, EXIT.usage);
  const running = driver.running!;
  const target: GuestTarget = {
    driverName: driver.name,
    collectorHost: options.collectorHost,
    collectorPort: options.collectorPort,
    fleetSecret: options.fleetSecret,
    identity: { qmp: running.pid },
    async bringUp({ collector, collectorPort, log }) {
      const waitStart = hostNowMs();
      log(`waiting for the agent in QEMU PID ${running.pid} (${options.agentId ?? `MAC ${running.macs.join(', ') || 'none on its command line'}`})`);
      const agent = await findExistingAgent(collector, { ...options, collectorPort, timeoutMs: options.bootTimeoutMs }, running.macs);
      const toAgentMs = Math.round(hostNowMs() - waitStart);
      log(`agent ${agent.agentId} on ${agent.hello.hostname} connected`);
      return {
        driver, agent, meter: null, where: () => driver.where(), bootToAgentMs: toAgentMs,
        hypervisor: { driver: driver.name, qemu: running.version, destQemu: driver.commandLine()[0]! },
        guest: { kernel: "the guest's own (not reported by the agent)", memoryMiB: await driver.memoryMiB(), bootToAgentMs: toAgentMs, hostname: agent.hello.hostname },
      };
    },
    async tearDown() {
      await driver.cleanup();
    },
  };
  return runCampaign({ ...options, faultMatrix: [[]], migrationsPerFault: 1, controls: 0 }, target, hostNowMs(), log);
}
