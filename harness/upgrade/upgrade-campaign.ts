import { existsSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { JOURNAL_FILE } from '../campaign/campaign-journal.js';
import { runCampaign, type CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { GuestTarget } from '../campaign/campaign-target.js';
import { hostNowMs } from '../host-clock.js';
import { measureExistingGuest } from '../lab/existing-agent.js';
import type { OutsideView } from '../blackout/outside-view.js';
import type { QemuUpgradeDriver } from './qemu-upgrade.js';

export interface UpgradeCampaignOptions extends CampaignOptions {
  /** The guest's agent, where it has one: the fleet secret (already read) its key was derived from, and where it reports. */
  agent: { fleetSecret: string; collectorHost: string; collectorPort: number; agentId: string | null } | null;
  /** The guest's address, reachable from here: ICMP timestamps to it are the outside view (its blackout and lag). */
  guestAddress: string | null;
}

/**
 * The upgrade measured like any migration: one migration of a campaign whose driver is the prepared upgrade, judged
 * by the guest's own agent (found by its id or its NIC's MAC) reporting to the campaign's collector, and seen from
 * outside by ICMP timestamps when its address is given; with no agent, the outside view judges alone.
 */
export async function runUpgradeCampaign(options: UpgradeCampaignOptions, driver: QemuUpgradeDriver, log: (line: string) => void): Promise<CampaignOutcome> {
  // An upgrade is not resumable: a second run in the same folder would be a second upgrade, not the rest of the first.
  if (existsSync(path.join(options.outDir, JOURNAL_FILE))) throw new UserError(`--out ${options.outDir} already holds a run: give a new folder`, EXIT.usage);
  const running = driver.running!;
  let outside: OutsideView | null = null;
  const { agent: agentSettings } = options;
  const target: GuestTarget = {
    driverName: driver.name,
    collectorHost: agentSettings?.collectorHost ?? '127.0.0.1',
    collectorPort: agentSettings?.collectorPort ?? 0,
    ...(agentSettings ? { fleetSecret: agentSettings.fleetSecret } : {}),
    identity: { qmp: running.pid },
    async bringUp({ collector, collectorPort, log }) {
      const waitStart = hostNowMs();
      const settings = agentSettings ? { ...agentSettings, collectorPort, timeoutMs: options.bootTimeoutMs } : null;
      const measured = await measureExistingGuest(collector, settings, running.macs, options.guestAddress, options.blackoutIntervalMs, `QEMU PID ${running.pid}`, log);
      const { agent } = measured;
      outside = measured.outside;
      const toAgentMs = Math.round(hostNowMs() - waitStart);
      return {
        driver, agent, meter: null, ...(outside ? { outside } : {}), where: () => driver.where(), bootToAgentMs: toAgentMs,
        hypervisor: { driver: driver.name, qemu: running.version, destQemu: driver.commandLine()[0]! },
        guest: { kernel: "the guest's own (not reported by the agent)", memoryMiB: await driver.memoryMiB(), bootToAgentMs: toAgentMs, ...(agent ? { hostname: agent.hello.hostname } : {}) },
      };
    },
    async tearDown() {
      await outside?.stop();
      await driver.cleanup();
    },
  };
  return runCampaign({ ...options, faultMatrix: [[]], migrationsPerFault: 1, controls: 0, agentless: agentSettings === null, outsideView: options.guestAddress !== null }, target, hostNowMs(), log);
}
