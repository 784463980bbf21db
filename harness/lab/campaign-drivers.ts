import { openSync, closeSync, statSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { agentIdArgument, EXIT, flagOf, parseHostPort, printable, UserError } from '../../contract/command-line.js';
import type { CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import { runLibvirtCampaign } from './libvirt-lab.js';
import { LIBVIRT_MIGRATE_FLAGS, type LibvirtMigrateFlag } from '../drivers/libvirt-driver.js';
import { runLibvirtDomainCampaign } from './libvirt-domain.js';
import { runQemuLab } from './qemu-lab.js';
import { runSimCampaign } from './sim-lab.js';
import { parseXenHost, runXenDomainCampaign, type XenHost } from './xen-domain.js';

/** What `flinch campaign` passes beside the campaign's own options: the settings only one target reads. */
export interface TargetSettings {
  libvirtUri: string;
  libvirtDest: string | null;
  libvirtMigrateUri: string | null;
  libvirtMigrateFlags: readonly LibvirtMigrateFlag[];
  /** A Xen host (and a second one) the xl driver reaches its user's domain on. */
  xl: { host: XenHost; dest: XenHost | null } | null;
  /** The user's own guest (--domain), instead of one the lab builds; with what it needs to find its agent. */
  existing: {
    domain: string; agentId: string | null; fleetSecretFile: string | null; collectorHost: string; collectorPort: number; leaveOn: string | null; guestAddress: string | null;
  } | null;
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
    summary: 'a libvirt domain (the lab\'s, or yours with --domain): virsh save/restore, or virsh migrate --live with --libvirt-dest',
    run: (options, settings, log) => {
      const where = { libvirtUri: settings.libvirtUri, destinationUri: settings.libvirtDest, migrateUri: settings.libvirtMigrateUri, migrateFlags: settings.libvirtMigrateFlags };
      return settings.existing ? runLibvirtDomainCampaign({ ...options, ...where, ...settings.existing }, log) : runLibvirtCampaign({ ...options, ...where }, log);
    },
  },
  sim: { summary: 'a network-namespace simulation, frozen by a cgroup', run: (options, _, log) => runSimCampaign(options, log) },
  xl: {
    summary: 'your own Xen domain (--domain) on a Xen host (--xl-host local or ssh://root@host): xl save/restore, xl migrate to localhost or to --xl-dest',
    run: (options, settings, log) => {
      if (!settings.existing || !settings.xl) throw new UserError('--driver xl runs on your own Xen host: give --domain NAME and --xl-host (the lab: flinch lab --hypervisor xen)', EXIT.usage);
      const { leaveOn, ...existing } = settings.existing;
      const leaveOnDest = leaveOn !== null && settings.xl.dest !== null && leaveOn === settings.xl.dest.url;
      return runXenDomainCampaign({ ...options, ...existing, host: settings.xl.host, dest: settings.xl.dest, leaveOnDest }, log);
    },
  },
};

/** The command line's options for a user's own guest (`--domain` and what goes with it). */
export interface ExistingGuestFlags {
  driver: string;
  domain?: string;
  agentId?: string;
  fleetSecret?: string;
  collectorListen?: string;
  leaveOn?: string;
  libvirtDest?: string;
  xlHost?: string;
  xlDest?: string;
  guestAddress?: string;
  agentless?: boolean;
}

/** The existing-guest settings, or null without --domain; a one-line usage error (exit 2) for what does not fit. */
export function existingGuestFrom(o: ExistingGuestFlags): TargetSettings['existing'] {
  if (o.domain === undefined) {
    const stray = (['agentId', 'fleetSecret', 'collectorListen', 'leaveOn', 'guestAddress'] as const).find((k) => o[k] !== undefined);
    if (stray) throw new UserError(`${flagOf(stray)} is for your own guest: give it with --domain NAME`, EXIT.usage);
    return null;
  }
  if (o.driver !== 'libvirt' && o.driver !== 'xl') throw new UserError(`--domain is for --driver libvirt or xl, not ${o.driver}`, EXIT.usage);
  if (!/^[^\s/][^/]{0,199}$/.test(o.domain) || /[\u0000-\u001f\u007f]/.test(o.domain)) throw new UserError(`--domain: a ${o.driver} domain name (no slash, no control characters, at most 200 characters)`, EXIT.usage);
  if (o.guestAddress !== undefined && net.isIP(o.guestAddress) === 0) throw new UserError(`--guest-address ${o.guestAddress}: an IPv4 or IPv6 address`, EXIT.usage);
  const dest = o.driver === 'xl' ? o.xlDest : o.libvirtDest;
  if (o.leaveOn !== undefined && dest === undefined) throw new UserError(`--leave-on is for live migrations: give ${o.driver === 'xl' ? '--xl-dest' : '--libvirt-dest'} too`, EXIT.usage);
  if (o.driver === 'xl' && o.leaveOn !== undefined && o.leaveOn !== o.xlHost && o.leaveOn !== o.xlDest) throw new UserError(`--leave-on ${printable(o.leaveOn)}: choose --xl-host or --xl-dest, as given`, EXIT.usage);
  if (o.agentless) {
    // No agent: measured from outside alone, so the guest's address is all there is to measure with.
    if (o.guestAddress === undefined) throw new UserError('--agentless with --domain measures from outside only: give --guest-address IP', EXIT.usage);
    const stray = (['agentId', 'fleetSecret', 'collectorListen'] as const).find((k) => o[k] !== undefined);
    if (stray) throw new UserError(`${flagOf(stray)} is for the guest's agent, and --agentless says it has none`, EXIT.usage);
    return { domain: o.domain, agentId: null, fleetSecretFile: null, collectorHost: '127.0.0.1', collectorPort: 0, leaveOn: o.leaveOn ?? null, guestAddress: o.guestAddress };
  }
  if (o.fleetSecret === undefined) throw new UserError("--domain needs --fleet-secret FILE: the secret the guest agent's key was derived from (flinch token); or --agentless --guest-address IP", EXIT.usage);
  if (o.collectorListen === undefined) throw new UserError("--domain needs --collector-listen HOST:PORT: where the guest's agent was told the collector is", EXIT.usage);
  if (o.agentId !== undefined) agentIdArgument(o.agentId);
  const listen = guestCollectorListen(o.collectorListen);
  return { domain: o.domain, agentId: o.agentId ?? null, fleetSecretFile: o.fleetSecret, collectorHost: listen.host, collectorPort: listen.port, leaveOn: o.leaveOn ?? null, guestAddress: o.guestAddress ?? null };
}

/** --collector-listen for a guest flinch did not boot: the address its agent was given, so never port 0. */
export function guestCollectorListen(value: string): { host: string; port: number } {
  let listen: { host: string; port: number };
  try {
    listen = parseHostPort(value);
  } catch (error) {
    throw new UserError(`--collector-listen: ${(error as Error).message}`, EXIT.usage);
  }
  if (listen.port === 0) throw new UserError('--collector-listen: give the port the guest was told, not 0', EXIT.usage);
  return listen;
}

/** --libvirt-migrate-flags: a comma-separated list of LIBVIRT_MIGRATE_FLAGS, each once, and only with a live migration. */
export function libvirtMigrateFlagsFrom(value: string | undefined, driver: string, destination: string | undefined): LibvirtMigrateFlag[] {
  if (value === undefined) return [];
  if (driver !== 'libvirt' || destination === undefined) throw new UserError('--libvirt-migrate-flags is for live migrations: --driver libvirt with --libvirt-dest', EXIT.usage);
  const flags = value.split(',').map((f) => f.trim().replace(/^--/, '')).filter(Boolean);
  const unknown = flags.find((f) => !(LIBVIRT_MIGRATE_FLAGS as readonly string[]).includes(f));
  if (unknown !== undefined || flags.length === 0) throw new UserError(`--libvirt-migrate-flags: choose from ${LIBVIRT_MIGRATE_FLAGS.join(', ')}${unknown !== undefined ? ` (not ${printable(unknown)})` : ''}`, EXIT.usage);
  if (new Set(flags).size !== flags.length) throw new UserError('--libvirt-migrate-flags: each flag once', EXIT.usage);
  return flags as LibvirtMigrateFlag[];
}

/** A regular file this process can open for reading (ssh -F reads it as the user flinch runs as). */
function isReadableFile(file: string): boolean {
  try {
    if (!statSync(file).isFile()) return false;
    closeSync(openSync(file, 'r'));
    return true;
  } catch {
    return false;
  }
}

/**
 * --xl-host and --xl-dest: only for the xl driver, and then the host is needed; each `local` or ssh://[user@]host[:port],
 * reached with --ssh-config where given.
 */
export function xenHostsFrom(o: { driver: string; xlHost?: string; xlDest?: string; sshConfig?: string }): TargetSettings['xl'] {
  if (o.driver !== 'xl') {
    const stray = o.xlHost !== undefined ? 'xlHost' : o.xlDest !== undefined ? 'xlDest' : o.sshConfig !== undefined ? 'sshConfig' : null;
    if (stray) throw new UserError(`${flagOf(stray)} is for --driver xl`, EXIT.usage);
    return null;
  }
  if (o.xlHost === undefined) throw new UserError('--driver xl needs --xl-host: local, or ssh://[user@]host[:port] for the Xen host the domain runs on', EXIT.usage);
  const sshConfig = o.sshConfig === undefined ? null : path.resolve(o.sshConfig);
  if (sshConfig !== null && !isReadableFile(sshConfig)) throw new UserError(`--ssh-config ${printable(o.sshConfig!)}: not a readable file`, EXIT.usage);
  const host = parseXenHost('--xl-host', o.xlHost, sshConfig);
  const dest = o.xlDest === undefined ? null : parseXenHost('--xl-dest', o.xlDest, sshConfig);
  if (dest && (dest.name === host.name || dest.remoteShell === null)) throw new UserError('--xl-dest: another Xen host than --xl-host, by ssh://', EXIT.usage);
  return { host, dest };
}
