import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { findExecutable } from '../../system/run-command.js';
import { virsh } from '../../system/virsh.js';
import { measureExistingGuest } from './existing-agent.js';
import type { OutsideView } from '../blackout/outside-view.js';
import { fleetSecretArgument } from '../collector/keyring.js';
import { completedCampaign, runCampaign, type CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { GuestTarget } from '../campaign/campaign-target.js';
import { LibvirtDriver, type LibvirtMigrateFlag } from '../drivers/libvirt-driver.js';
import { hostNowMs } from '../host-clock.js';

export interface LibvirtDomainOptions extends CampaignOptions {
  /** The user's domain, by name; flinch never defines, starts, destroys or undefines it. */
  domain: string;
  libvirtUri: string;
  /** A second libvirtd to live-migrate to and back; without one, each migration is a virsh save + restore. */
  destinationUri: string | null;
  migrateUri: string | null;
  migrateFlags: readonly LibvirtMigrateFlag[];
  /** Where the domain is left after the campaign: its libvirtd's URI (default: where it was found). */
  leaveOn: string | null;
  /** The agent to wait for; null: the one whose hello lists one of the domain's MACs. */
  agentId: string | null;
  /** The fleet secret the guest's agent key was derived from (`flinch token`); null for a guest without an agent (--agentless). */
  fleetSecretFile: string | null;
  /** Where the campaign's collector listens: the address the guest's agent was given. */
  collectorHost: string;
  collectorPort: number;
  /** The guest's address, reachable from here: ICMP timestamps to it are the outside view (its blackout and lag). */
  guestAddress: string | null;
}

/** One interface of `virsh -q domiflist`: "vnet0  bridge  virbr0  virtio  52:54:00:12:34:56" ("-" for none). */
export interface DomainInterface {
  type: string;
  source: string;
  mac: string;
}

export function parseDomIfList(text: string): DomainInterface[] {
  return text.split('\n').map((line) => line.trim().split(/\s+/)).filter((f) => f.length >= 5 && /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(f[4]!))
    .map((f) => ({ type: f[1]!, source: f[2]!, mac: f[4]!.toLowerCase() }));
}

/** `virsh domstate`: the domain's state ("running", "shut off", ...), or virsh's last line of why it has none. */
function domainState(uri: string, domain: string): { state: string } | { why: string } {
  const read = virsh(uri, 'domstate', domain);
  if (read.status === 0) return { state: read.stdout.trim() };
  return { why: (read.stderr.trim().split('\n').filter(Boolean).slice(-1)[0] ?? `exit ${read.status}`).replace(/^error: /, '') };
}

/**
 * `flinch campaign --driver libvirt --domain NAME`: a domain the user defined and runs, with the agent already in its
 * image, reporting to the collector this campaign opens at `--collector-listen` with keys from `--fleet-secret`.
 * flinch only migrates it (save/restore, or live to `--libvirt-dest` and back) and leaves it running where it was
 * found, or on `--leave-on`.
 */
export async function runLibvirtDomainCampaign(options: LibvirtDomainOptions, log: (line: string) => void): Promise<CampaignOutcome> {
  if (!findExecutable('virsh')) throw new UserError('virsh not found; install libvirt-clients', EXIT.missingTool);
  const version = virsh(options.libvirtUri, 'version');
  if (version.status !== 0) {
    throw new UserError(`libvirt at ${options.libvirtUri} does not answer (${version.stderr.trim().split('\n')[0]})`, EXIT.missingTool);
  }
  for (const leave of [options.leaveOn].filter((u): u is string => u !== null)) {
    if (leave !== options.libvirtUri && leave !== options.destinationUri) throw new UserError(`--leave-on ${leave}: choose --libvirt-uri or --libvirt-dest`, EXIT.usage);
  }
  const fleetSecret = options.fleetSecretFile === null ? null : fleetSecretArgument(options.fleetSecretFile);
  const found = domainState(options.libvirtUri, options.domain);
  if ('why' in found) throw new UserError(`libvirt domain ${options.domain} at ${options.libvirtUri}: ${found.why} (virsh -c ${options.libvirtUri} list --all shows the domains there)`, EXIT.usage);
  const { state } = found;
  if (state !== 'running') throw new UserError(`libvirt domain ${options.domain} is ${state}, not running: flinch migrates a running domain and never starts one (virsh start ${options.domain})`, EXIT.usage);
  const interfaces = parseDomIfList(virsh(options.libvirtUri, '-q', 'domiflist', options.domain).stdout);
  const done = completedCampaign(options, 'libvirt', domainIdentity(options));
  if (done) return done;
  mkdirSync(options.outDir, { recursive: true });
  const hypervisor = /Running hypervisor: (.*)/.exec(version.stdout)?.[1]?.trim() ?? null;
  const info = virsh(options.libvirtUri, 'dominfo', options.domain).stdout;
  const memoryMiB = Number(/Max memory:\s+(\d+) KiB/.exec(info)?.[1] ?? 0) / 1024;
  const persistent = !/^Persistent:\s+no$/m.test(info);
  const measuredBy = { agentless: fleetSecret === null, outsideView: options.guestAddress !== null };
  return runCampaign({ ...options, ...measuredBy }, libvirtDomainTarget(options, fleetSecret, interfaces, hypervisor, memoryMiB, persistent), hostNowMs(), log);
}

/** What makes a campaign on a user's domain this one: a resumed run must be on the same domain of the same libvirtd. */
function domainIdentity(options: LibvirtDomainOptions): Record<string, unknown> {
  return { domain: options.domain, libvirtUri: options.libvirtUri };
}

function libvirtDomainTarget(options: LibvirtDomainOptions, fleetSecret: string | null, interfaces: DomainInterface[], hypervisor: string | null, memoryMiB: number, persistent: boolean): GuestTarget {
  let driver: LibvirtDriver | null = null;
  let outside: OutsideView | null = null;
  const saveFile = path.join(options.outDir, 'guest.save');
  return {
    driverName: 'libvirt',
    collectorHost: options.collectorHost,
    collectorPort: options.collectorPort,
    ...(fleetSecret ? { fleetSecret } : {}),
    identity: domainIdentity(options),
    async bringUp({ collector, collectorPort, log }) {
      const waitStart = hostNowMs();
      const settings = fleetSecret ? { agentId: options.agentId, collectorHost: options.collectorHost, collectorPort, timeoutMs: options.bootTimeoutMs } : null;
      const macs = interfaces.map((i) => i.mac);
      const measured = await measureExistingGuest(collector, settings, macs, options.guestAddress, options.blackoutIntervalMs, `libvirt domain ${options.domain}`, log);
      const { agent } = measured;
      outside = measured.outside;
      const toAgentMs = Math.round(hostNowMs() - waitStart);
      const mac = interfaces.find((i) => agent?.hello.macs.includes(i.mac))?.mac ?? interfaces[0]?.mac ?? '';
      driver = new LibvirtDriver({
        uri: options.libvirtUri, domain: options.domain, mode: options.destinationUri ? 'migrate' : 'save-restore', saveFile,
        destinationUri: options.destinationUri, migrateUri: options.migrateUri, migrateFlags: options.migrateFlags, mac, virsh: 'virsh', timeoutMs: options.migrationTimeoutMs, persistent,
      });
      await driver.prepare();
      return {
        driver, agent, meter: null, ...(outside ? { outside } : {}), where: () => driver!.currentUri,
        // User-mode networking (SLIRP) keeps its connections in the QEMU process: a restore or a move resets them.
        reconnectsAfterMigration: interfaces.some((i) => i.type === 'user'),
        bootToAgentMs: toAgentMs,
        hypervisor: { driver: 'libvirt', qemu: hypervisor, destQemu: null },
        guest: { kernel: 'the domain\'s own (not reported by the agent)', memoryMiB, bootToAgentMs: toAgentMs, domain: options.domain, ...(agent ? { hostname: agent.hello.hostname } : {}) },
      };
    },
    async tearDown(log) {
      await outside?.stop();
      if (!driver) return;
      try {
        const leaveOn = options.leaveOn ?? options.libvirtUri;
        // A live migration goes back and forth: one more puts the domain on the other libvirtd.
        if (options.destinationUri && driver.currentUri !== leaveOn) await driver.migrate();
      } finally {
        await driver.cleanup();
        // A save whose restore failed leaves the user's domain only in the save file: restore it, or keep the file.
        const now = existsSync(saveFile) ? domainState(options.libvirtUri, options.domain) : null;
        const lost = now !== null && !('state' in now && now.state === 'running');
        if (lost && virsh(options.libvirtUri, 'restore', saveFile).status !== 0) {
          log(`libvirt domain ${options.domain} is not running and its saved state is kept in ${saveFile}: virsh -c ${options.libvirtUri} restore ${saveFile}`);
        } else {
          rmSync(saveFile, { force: true });
        }
      }
    },
  };
}
