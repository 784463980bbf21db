import type { CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import { runLibvirtCampaign } from './libvirt-lab.js';
import { runQemuLab } from './qemu-lab.js';
import { runSimCampaign } from './sim-lab.js';

/** What `flinch campaign` passes beside the campaign's own options: the settings only one target reads. */
export interface TargetSettings {
  libvirtUri: string;
  libvirtDest: string | null;
  libvirtMigrateUri: string | null;
}

/**
 * The drivers `flinch campaign --driver NAME` can run, each with the lab that brings its guest up. The command line
 * looks a driver up here and never names one (as the agent's PROBES registry). A run resolves with its outcome, or
 * with the exit status of the namespace child that ran it and showed its own. xl runs in the nested Xen lab
 * (`flinch lab --hypervisor xen`), which builds its own host.
 */
export const CAMPAIGN_DRIVERS: Record<string, { summary: string; run(options: CampaignOptions, settings: TargetSettings, log: (line: string) => void): Promise<CampaignOutcome | number> }> = {
  qmp: { summary: 'two QEMU processes, migrated over QMP', run: (options, _, log) => runQemuLab(options, log) },
  libvirt: {
    summary: 'a libvirt domain: virsh save/restore, or virsh migrate --live with --libvirt-dest',
    run: (options, settings, log) => runLibvirtCampaign({ ...options, libvirtUri: settings.libvirtUri, destinationUri: settings.libvirtDest, migrateUri: settings.libvirtMigrateUri }, log),
  },
  sim: { summary: 'a network-namespace simulation, frozen by a cgroup', run: (options, _, log) => runSimCampaign(options, log) },
};
