import { EXIT, printable, UserError } from '../../contract/command-line.js';
import { Dom0 } from '../../system/xl.js';
import type { TimedResult } from '../../system/timed-command.js';
import { fleetSecretArgument } from '../collector/keyring.js';
import { completedCampaign, runCampaign, type CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { GuestTarget } from '../campaign/campaign-target.js';
import { XlDriver } from '../drivers/xl-driver.js';
import { hostNowMs } from '../host-clock.js';
import type { OutsideView } from '../blackout/outside-view.js';
import { measureExistingGuest } from './existing-agent.js';

/** A Xen host as `--xl-host` names it: `local` (xl runs here, in dom0), or `ssh://[user@]host[:port]`. */
export interface XenHost {
  /** How flinch reaches its dom0: null runs xl here; otherwise ssh with the user's own keys and ~/.ssh/config. */
  remoteShell: string[] | null;
  /** How another host's xl migrate names it (`user@host`), and how flinch says where the domain is. */
  name: string;
  /** As the user gave it (`--leave-on` names a host the same way). */
  url: string;
}

const SSH_URL = /^ssh:\/\/(?:([a-z_][a-z0-9_.-]{0,31})@)?([A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?\/?$/;

/**
 * `--xl-host` and `--xl-dest`: a one-line usage error (exit 2) for anything but `local` or an ssh:// URL. `sshConfig`
 * (`--ssh-config`) is ssh's -F: ssh reads ~/.ssh of the user's passwd entry, never $HOME's.
 */
export function parseXenHost(flag: string, value: string, sshConfig: string | null = null): XenHost {
  if (value === 'local') return { remoteShell: null, name: 'localhost', url: value };
  const match = SSH_URL.exec(value);
  const port = match?.[3] === undefined ? null : Number(match[3]);
  if (!match || (port !== null && (port < 1 || port > 65535))) {
    throw new UserError(`${flag} ${printable(value)}: give local or ssh://[user@]host[:port]`, EXIT.usage);
  }
  const destination = `${match[1] ?? 'root'}@${match[2]!.replace(/^\[|\]$/g, '')}`;
  // BatchMode: a key or nothing, never a password prompt in a campaign; ConnectTimeout: a host that is gone is one line.
  return { remoteShell: ['ssh', ...(sshConfig ? ['-F', sshConfig] : []), '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', ...(port !== null ? ['-p', String(port)] : []), destination], name: destination, url: value };
}

export interface XenDomainOptions extends CampaignOptions {
  /** The user's domain, by name; flinch never creates, destroys or reconfigures it. */
  domain: string;
  host: XenHost;
  /** A second Xen host to live-migrate to and back (`xl migrate`, its dom0 reached by the first host's own ssh). */
  dest: XenHost | null;
  /** Where the domain is left: on the host where it was found, or on --xl-dest. */
  leaveOnDest: boolean;
  agentId: string | null;
  /** The fleet secret the guest's agent key was derived from; null for a guest without an agent (--agentless). */
  fleetSecretFile: string | null;
  collectorHost: string;
  collectorPort: number;
  guestAddress: string | null;
}

/** Each domain line of `xl list`: name, id, memory (MiB) and state letters (r, b, p, s, c, d); the header is no domain. */
export function xlListDomains(text: string): Array<{ name: string; domid: number; memoryMiB: number; state: string }> {
  return text.split('\n').flatMap((line) => {
    const f = line.trim().split(/\s+/);
    return f.length >= 6 && /^\d+$/.test(f[1]!) ? [{ name: f[0]!, domid: Number(f[1]), memoryMiB: Number(f[2]) || 0, state: f[4]! }] : [];
  });
}

/** `xl list NAME`'s line for the domain: its id, memory (MiB) and state letters (r, b, p, s, c, d). */
export function parseXlList(text: string, domain: string): { domid: number; memoryMiB: number; state: string } | null {
  const found = xlListDomains(text).find((d) => d.name === domain);
  return found ? { domid: found.domid, memoryMiB: found.memoryMiB, state: found.state } : null;
}

/** A Xen host's dom0, where xl runs (here or over ssh), each command limited to a minute. */
export function dom0Of(host: XenHost): Dom0 {
  return new Dom0({ xl: 'xl', remoteShell: host.remoteShell, timeoutMs: 60_000 });
}

/** The first xl command on a host: its failure is the host not answering (exit 3), in one line. */
export async function firstXl(dom0: Dom0, host: XenHost, args: string[]): Promise<TimedResult> {
  return dom0.xl(args).catch((error: Error) => {
    throw new UserError(`${host.remoteShell ? `Xen host ${host.name}` : 'this Xen host'} does not answer: ${error.message.split('\n')[0]}`, EXIT.missingTool);
  });
}

/** `xl network-list NAME`: "Idx BE Mac Addr. handle state evt-ch ..." — the MACs, lower-cased as the agent reports them. */
export function parseXlNetworkList(text: string): string[] {
  return text.split('\n').flatMap((line) => {
    const mac = line.trim().split(/\s+/)[2] ?? '';
    return /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac) ? [mac.toLowerCase()] : [];
  });
}

/**
 * `flinch campaign --driver xl --domain NAME --xl-host ssh://root@xenhost`: a Xen domain the user created and runs,
 * with the agent in it, on a Xen host flinch reaches by ssh (or here). flinch saves and restores it there, or migrates
 * it to localhost (`xl migrate -s ''`, no ssh), or to `--xl-dest` and back, and leaves it running where it was.
 */
export async function runXenDomainCampaign(options: XenDomainOptions, log: (line: string) => void): Promise<CampaignOutcome> {
  const dom0 = dom0Of(options.host);
  const info = await firstXl(dom0, options.host, ['info']);
  const xenVersion = /^xen_version\s*:\s*(\S+)/m.exec(info.stdout)?.[1] ?? null;
  const listed = await dom0.xl(['list', options.domain]).catch((error: Error) => {
    throw new UserError(`Xen domain ${options.domain} on ${options.host.name}: ${error.message.split(': ').slice(-1)[0]} (xl list shows the domains there)`, EXIT.usage);
  });
  const domain = parseXlList(listed.stdout, options.domain);
  if (!domain) throw new UserError(`Xen domain ${options.domain} on ${options.host.name}: not in xl list`, EXIT.usage);
  if (/[psc]/.test(domain.state.replace(/-/g, ''))) {
    throw new UserError(`Xen domain ${options.domain} is ${domain.state.replace(/-/g, '')} (xl list), not running: flinch migrates a running domain and never unpauses or starts one`, EXIT.usage);
  }
  const fleetSecret = options.fleetSecretFile === null ? null : fleetSecretArgument(options.fleetSecretFile);
  const macs = parseXlNetworkList((await dom0.xl(['network-list', options.domain])).stdout);
  const identity = { domain: options.domain, xlHost: options.host.name, ...(options.dest ? { xlDest: options.dest.name } : {}) };
  const done = completedCampaign(options, 'xl', identity);
  if (done) return done;
  let driver: XlDriver | null = null;
  let outside: OutsideView | null = null;
  const target: GuestTarget = {
    driverName: 'xl',
    collectorHost: options.collectorHost,
    collectorPort: options.collectorPort,
    ...(fleetSecret ? { fleetSecret } : {}),
    identity,
    async bringUp({ collector, collectorPort, log }) {
      const waitStart = hostNowMs();
      const settings = fleetSecret ? { agentId: options.agentId, collectorHost: options.collectorHost, collectorPort, timeoutMs: options.bootTimeoutMs } : null;
      const measured = await measureExistingGuest(collector, settings, macs, options.guestAddress, options.blackoutIntervalMs, `Xen domain ${options.domain}`, log);
      const { agent } = measured;
      outside = measured.outside;
      const toAgentMs = Math.round(hostNowMs() - waitStart);
      driver = new XlDriver({
        domain: options.domain, mode: options.dest ? 'migrate' : 'save-restore', xl: 'xl', remoteShell: options.host.remoteShell, timeoutMs: options.migrationTimeoutMs,
        // No ssh for a migration to the same host: xl runs the receiver itself.
        target: options.dest ? options.host.name : 'xl migrate-receive', migrateTransport: options.dest ? null : '',
        peer: options.dest ? { remoteShell: options.dest.remoteShell, target: options.dest.name } : null,
        saveFile: `/var/lib/xen/flinch-${options.domain}.save`, removeSaveFile: true, vifSpec: null,
        xenstoreWatch: 'xenstore-watch', watchFile: `/tmp/flinch-release-watch-${options.domain}`,
      });
      await driver.prepare();
      const current = driver;
      return {
        driver, agent, meter: null, ...(outside ? { outside } : {}), where: () => `${current.where} (domid ${current.domid ?? '?'})`, bootToAgentMs: toAgentMs,
        hypervisor: { driver: 'xl', qemu: null, ...(xenVersion ? { xen: xenVersion } : {}) },
        guest: { kernel: "the domain's own (not reported by the agent)", memoryMiB: domain.memoryMiB, bootToAgentMs: toAgentMs, domain: options.domain, ...(agent ? { hostname: agent.hello.hostname } : {}) },
      };
    },
    async tearDown() {
      await outside?.stop();
      // Back where it was found, or left on --xl-dest.
      if (driver && options.dest && driver.isOnPeer !== options.leaveOnDest) await driver.migrate({ method: 'migrate' });
    },
  };
  const measuredBy = { agentless: fleetSecret === null, outsideView: options.guestAddress !== null };
  return runCampaign({ ...options, ...measuredBy }, target, hostNowMs(), log);
}
