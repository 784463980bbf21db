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
  return { outcome: await runCampaign(plan.options, target(plan), plan.startedAtMs, log), options: plan.options };
}
