import { runCampaign, type CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { GuestTarget } from '../campaign/campaign-target.js';
import { readPlanFromEnvironment, type InsideStep } from './lab-network.js';

/** What every lab hands the campaign's inner half, beside what its own target needs. */
export interface CampaignPlan {
  options: CampaignOptions;
  startedAtMs: number;
}

/**
 * The inner half of a lab campaign, inside its namespace: reads the plan the parent handed over and runs the campaign
 * against the target that plan describes. The options come back with the outcome: the command line prints by them.
 */
export async function runCampaignInside<P extends CampaignPlan>(
  step: InsideStep,
  target: (plan: P) => GuestTarget,
  log: (line: string) => void,
): Promise<{ outcome: CampaignOutcome; options: CampaignOptions }> {
  const plan = readPlanFromEnvironment<P>(step);
  const guest = target(plan);
  // Ctrl-C, or a SIGTERM the parent passed on: the guest (its agent, its QEMUs, its nested hosts) is torn down before
  // this process ends. Killed outright instead, it left the agent running in a namespace the parent then removed, and
  // its freezer cgroup undeletable. The journal keeps the migrations done: the same command resumes.
  const stop = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping; the guest is being torn down (the same command resumes the campaign)`);
    void guest.tearDown(log).catch(() => undefined).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    return { outcome: await runCampaign(plan.options, guest, plan.startedAtMs, log), options: plan.options };
  } finally {
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}
