import { existsSync, mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../../contract/command-line.js';
import { agentKernelArguments, GUEST_ECHO_PORT } from '../guest-initramfs.js';
import { runCommand } from '../../../system/run-command.js';
import { BlackoutMeter } from '../../blackout/blackout-meter.js';
import { completedCampaign, waitForAgentHello, type CampaignOutcome } from '../../campaign/campaign-runner.js';
import { DEFAULT_CAMPAIGN_OPTIONS, type CampaignOptions } from '../../campaign/campaign-options.js';
import type { GuestTarget } from '../../campaign/campaign-target.js';
import { XL_METHODS, XlDriver } from '../../drivers/xl-driver.js';
import { shellQuote } from '../../../system/xl.js';
import { hostNowMs } from '../../host-clock.js';
import { resolveQemuBinary } from '../../../system/qemu/qemu-vm.js';
import { labNetworkFor, runInsideNamespace, withLabNetwork, type InsideStep, type LabNetwork } from '../lab-network.js';
import { runCampaignInside, type CampaignPlan } from '../campaign-inside.js';
import { NestedXen, xenSerialLog } from './nested-xen.js';
import { buildXenLabArtifacts, DOMU_INITRD_IN_DOM0, DOMU_KERNEL_IN_DOM0, type XenLabArtifacts, type XenRelease } from './xen-artifacts.js';

export type XenGuestType = 'pv' | 'pvh';

export interface XenLabOptions extends CampaignOptions {
  guestType: XenGuestType;
  /** A domU kernel of one's own: a linux-image .deb or a bzImage; null for Debian's cloud kernel. */
  domuKernel: string | null;
  /** Memory of the machine Xen runs on, and dom0's share of it. */
  hostMemoryMiB: number;
  dom0MemoryMiB: number;
  /**
   * A second nested Xen host of this release, on the same lab bridge: xl migrate goes from one dom0 to the other over
   * ssh and back, so each direction is tried (4.17 → 4.20 and 4.20 → 4.17). null: one host, xl migrate to localhost.
   */
  destXen: XenRelease | null;
}

/**
 * The Xen lab's campaign: each fault row once with `xl save`/`xl restore` and once with `xl migrate` to localhost, so
 * every kind of cycle is run twice, and the vif replug and the firewall flush each ride on one of each.
 */
export const XEN_LAB_FAULTS: CampaignOptions['faultMatrix'] = [[], ['nic-replug'], ['guest-firewall-flush']];

export const DEFAULT_XEN_LAB_OPTIONS: Omit<XenLabOptions, 'outDir'> = {
  ...DEFAULT_CAMPAIGN_OPTIONS,
  faultMatrix: XEN_LAB_FAULTS,
  methods: [...XL_METHODS],
  memoryMiB: 512,
  bootTimeoutMs: 300_000,
  migrationTimeoutMs: 300_000,
  guestType: 'pv',
  domuKernel: null,
  hostMemoryMiB: 3072,
  dom0MemoryMiB: 1024,
  destXen: null,
};

const DOMAIN = 'flinch-domu';
const AGENT_ID = 'flinch-xen-domu';
/** Xen's own OUI: what xl gives a vif by default, and what netfront keeps across save/restore and migration. */
const DOMU_MAC = '00:16:3e:f1:1c:01';
/** Each nested host's NIC on the lab bridge, its dom0's address there (last byte), and its QEMU machine's name. */
const HOSTS = [
  { name: 'a', mac: '52:54:00:f1:1c:0e', addressSuffix: 2, machineName: 'xen-host', logs: 'dom0' },
  { name: 'b', mac: '52:54:00:f1:1c:0f', addressSuffix: 3, machineName: 'xen-host-b', logs: 'dom0-b' },
] as const;
const DOMU_CONFIG = '/run/flinch-domu.cfg';
const SAVE_FILE = '/var/lib/xen/flinch-domu.save';
export const XEN_LAB_INSIDE: InsideStep = { subcommand: 'xen-lab-inner', planVariable: 'FLINCH_XEN_LAB_PLAN', parent: 'flinch lab --hypervisor xen' };
const NESTED_TIMING_NOISE_MS = 500;

interface InnerPlan extends CampaignPlan {
  options: XenLabOptions;
  network: LabNetwork;
  artifacts: XenLabArtifacts;
  /** The second host's, with --xen-dest. */
  destArtifacts: XenLabArtifacts | null;
}

/** Beside the matrix, what makes a Xen campaign this one: a resumed run must have the same guest. */
function xenIdentity(options: XenLabOptions): Record<string, unknown> {
  return { guestType: options.guestType, domuKernel: options.domuKernel, ...(options.destXen ? { destXen: options.destXen } : {}) };
}

/**
 * `flinch lab --hypervisor xen`: builds (or takes from the cache) Xen, dom0 and the domU, then runs the campaign in a
 * child inside the lab namespace, where the nested Xen's QEMU, its tap and the collector live.
 */
export async function runXenLab(options: XenLabOptions, log: (line: string) => void): Promise<CampaignOutcome | number> {
  if (process.getuid?.() !== 0) throw new UserError('flinch lab --hypervisor xen needs root: it creates a network namespace and a tap device', EXIT.needsRoot);
  if (options.memoryMiB < 384) throw new UserError(`--memory ${options.memoryMiB} is too small: the domU's initramfs needs at least 384 MiB`, EXIT.usage);
  // Both domains exist while a migration runs, beside dom0 and Xen's own share.
  if (options.dom0MemoryMiB + 2 * options.memoryMiB + 256 > options.hostMemoryMiB) {
    throw new UserError(`--memory ${options.memoryMiB}: two domUs of that size and dom0 (${options.dom0MemoryMiB} MiB) do not fit in the ${options.hostMemoryMiB} MiB Xen machine`, EXIT.usage);
  }
  resolveQemuBinary(options.qemuBinary);
  const done = completedCampaign(options, 'xl', xenIdentity(options));
  if (done) return done;
  const startedAtMs = hostNowMs();
  mkdirSync(options.cacheDir, { recursive: true });
  const artifacts = await buildXenLabArtifacts(options.cacheDir, options.domuKernel, log);
  const destArtifacts = options.destXen ? await buildXenLabArtifacts(options.cacheDir, options.domuKernel, log, options.destXen) : null;
  const network = labNetworkFor(`xen${process.pid}`);
  return withLabNetwork(network, () => runInsideNamespace(network.netns, XEN_LAB_INSIDE, { options, network, artifacts, destArtifacts, startedAtMs } satisfies InnerPlan));
}

/** The part of the Xen lab that runs inside the namespace: the campaign against the nested-Xen target. */
export const runXenLabInside = (log: (line: string) => void) => runCampaignInside(XEN_LAB_INSIDE, xenTarget, log);

/** A real Xen under QEMU TCG: dom0 boots from the cached artifacts, the domU (real netfront) is moved by xl. */
function xenTarget(plan: InnerPlan): GuestTarget {
  const { options, network, artifacts, destArtifacts } = plan;
  /** The first host (where the domU is created) and, with --xen-dest, the second. */
  let hosts: NestedXen[] = [];
  let meter: BlackoutMeter | null = null;
  let logsDir = '';
  let log: (line: string) => void = () => undefined;
  const logDisk = (i: number) => path.join(logsDir, `${HOSTS[i]!.logs}-logs.ext4`);
  const dom0Address = (i: number) => addressWithSuffix(network.hostAddress, HOSTS[i]!.addressSuffix);
  const hostArtifacts = destArtifacts ? [artifacts, destArtifacts] : [artifacts];
  return {
    driverName: 'xl',
    collectorHost: network.hostAddress,
    collectorPort: options.collectorPort,
    identity: xenIdentity(options),
    async bringUp(context) {
      const { collector, fleetSecret, collectorPort } = context;
      ({ logsDir, log } = context);
      const bootStart = hostNowMs();
      log(destArtifacts
        ? `booting two nested Xen hosts under QEMU TCG, a: Xen ${artifacts.xenVersion}, b: Xen ${destArtifacts.xenVersion} (each dom0 ${artifacts.dom0Kernel.release})`
        : `booting Xen ${artifacts.xenVersion} and dom0 (${artifacts.dom0Kernel.release}) under QEMU TCG`);
      // Side by side: under TCG each boot is mostly one busy vCPU.
      const booted = await Promise.allSettled(hostArtifacts.map(async (hostArtifact, i) => {
        rmSync(logDisk(i), { force: true });
        await runCommand('mkfs.ext4', ['-q', '-F', '-L', 'flinchlogs', logDisk(i), '256M']);
        return NestedXen.boot(
          {
            qemuBinary: options.qemuBinary, runDir: logsDir, machineName: HOSTS[i]!.machineName, artifacts: hostArtifact, logDisk: logDisk(i), tap: network.taps[i]!, mac: HOSTS[i]!.mac,
            dom0Address: `${dom0Address(i)}/${network.prefixLength}`, memoryMiB: options.hostMemoryMiB, dom0MemoryMiB: options.dom0MemoryMiB,
          },
          options.bootTimeoutMs,
        );
      }));
      hosts = booted.flatMap((b) => (b.status === 'fulfilled' ? [b.value] : []));
      const failed = booted.find((b): b is PromiseRejectedResult => b.status === 'rejected');
      if (failed) throw failed.reason;
      const [xen, dest] = hosts as [NestedXen, NestedXen | undefined];
      const dom0 = xen;
      log(`dom0${dest ? 's answer on their consoles' : ' answers on its console'} after ${((hostNowMs() - bootStart) / 1000).toFixed(1)} s`);
      if (dest) await trustEachOther(xen, dest);
      const vifSpec = `mac=${DOMU_MAC},bridge=xenbr0`;
      const kernelArguments = [
        'console=hvc0', 'quiet',
        ...agentKernelArguments({ network, collectorPort, agentId: AGENT_ID, fleetSecret, probes: options.guestProbes }),
        'flinch.console=hvc0',
        // A PV guest under Xen under TCG wakes up to ~300 ms late and its offset to the host wanders by tens of ms on
        // its own; below this the agent treats both as the machine's jitter rather than as the start of an episode.
        `flinch.timing-noise=${NESTED_TIMING_NOISE_MS}`,
      ];
      const config = [
        `name = "${DOMAIN}"`,
        `type = "${options.guestType}"`,
        `kernel = "${DOMU_KERNEL_IN_DOM0}"`,
        `ramdisk = "${DOMU_INITRD_IN_DOM0}"`,
        `extra = "${kernelArguments.join(' ')}"`,
        `memory = ${options.memoryMiB}`,
        'vcpus = 1',
        `vif = [ '${vifSpec}' ]`,
        'on_crash = "preserve"',
        // Under TCG's emulated SVM, Xen's RDTSCP intercept fails to decode and a PVH guest stalls (lab notes).
        ...(options.guestType === 'pvh' ? ['tsc_mode = "native"'] : []),
      ];
      await dom0.check(`printf '%s\\n' ${config.map(shellQuote).join(' ')} > ${DOMU_CONFIG}`);
      const driver = new XlDriver({
        domain: DOMAIN, mode: 'save-restore', xl: 'xl', remoteShell: null, dom0Shell: dom0, domuConsoleRunner: '/flinch/domu-console.pl',
        target: dest ? `root@${dom0Address(0)}` : 'localhost', migrateTransport: '/flinch/migrate-transport.sh', saveFile: SAVE_FILE, vifSpec, timeoutMs: options.migrationTimeoutMs,
        xenstoreWatch: 'xenstore-watch', watchFile: '/tmp/flinch-release-watch',
        // The second host: xl migrate there over ssh (xl's own `ssh HOST xl migrate-receive`), and back.
        peer: dest ? { remoteShell: null, dom0Shell: dest, target: `root@${dom0Address(1)}` } : null,
      });
      const domuStart = hostNowMs();
      log(`creating the ${options.guestType.toUpperCase()} domU (${artifacts.domuKernel.packageName}, ${options.memoryMiB} MiB)`);
      await driver.xl(['create', DOMU_CONFIG]);
      const agent = await waitForAgentHello(collector, AGENT_ID, options.bootTimeoutMs, () => dom0.vm.exitReason()).catch((error: Error) => {
        throw new Error(`${error.message}; the domU's console is in ${path.join(logsDir, HOSTS[0].logs, 'xen', 'console')} after the run, Xen's in ${xenSerialLog(logsDir, HOSTS[0].machineName)}`);
      });
      const bootToAgentMs = hostNowMs() - domuStart;
      log(`agent ${agent.agentId} connected ${(bootToAgentMs / 1000).toFixed(1)} s after xl create`);
      await driver.prepare();
      meter = options.blackoutIntervalMs > 0 ? new BlackoutMeter({ host: network.guestAddress, port: GUEST_ECHO_PORT }, options.blackoutIntervalMs) : null;
      const qemu = dom0.vm.qmp.version;
      // With two hosts, each migration's from and to name the host and its Xen: "b: Xen 4.20.4, domid 2".
      const hostOf = () => (driver.isOnPeer ? 1 : 0);
      return {
        driver, agent, meter, bootToAgentMs: Math.round(bootToAgentMs),
        where: () => `${dest ? `${HOSTS[hostOf()]!.name}: Xen ${hostArtifacts[hostOf()]!.xenVersion.split('+')[0]}, ` : ''}domid ${driver.domid ?? '?'}`,
        hypervisor: {
          driver: driver.name, qemu: qemu ? `${qemu.qemu.major}.${qemu.qemu.minor}.${qemu.qemu.micro}` : null, xen: artifacts.xenVersion, dom0Kernel: artifacts.dom0Kernel.packageName,
          ...(destArtifacts ? { xenDest: destArtifacts.xenVersion } : {}),
        },
        guest: { kernel: artifacts.domuKernel.packageName, memoryMiB: options.memoryMiB, bootToAgentMs: Math.round(bootToAgentMs), type: options.guestType },
        afterMigrations: async () => {
          // Wherever the last migration left it.
          await driver.xl(['destroy', DOMAIN]).catch(() => undefined);
        },
      };
    },
    async tearDown() {
      meter?.stop();
      await Promise.all(hosts.map((host) => host.shutdown().catch(() => undefined)));
      if (!logsDir) return;
      for (const i of hostArtifacts.keys()) await keepDom0Logs(logDisk(i), path.join(logsDir, HOSTS[i]!.logs), log);
    },
  };
}

/**
 * Lets each dom0 reach the other as root over ssh, as xl migrate's default transport (`ssh HOST xl migrate-receive`)
 * needs: a key made in each, authorised in the other. The lab's hosts are made afresh each run from one disk, so host
 * keys are not checked (the same disk gives both the same host key anyway).
 */
async function trustEachOther(a: NestedXen, b: NestedXen): Promise<void> {
  const keyOf = (host: NestedXen) =>
    host.check("mkdir -p -m 700 /root/.ssh && ssh-keygen -q -t ed25519 -N '' -f /root/.ssh/id_ed25519 <<< y >/dev/null; printf 'Host *\\n  StrictHostKeyChecking no\\n  UserKnownHostsFile /dev/null\\n  LogLevel ERROR\\n' > /root/.ssh/config; cat /root/.ssh/id_ed25519.pub");
  const lastKeyLine = (output: string) => output.split('\n').map((line) => line.trim()).filter((line) => line.startsWith('ssh-ed25519 ')).pop() ?? output.trim();
  const [keyA, keyB] = [lastKeyLine(await keyOf(a)), lastKeyLine(await keyOf(b))];
  for (const [host, key] of [[a, keyB], [b, keyA]] as const) {
    if (!/^ssh-ed25519 [A-Za-z0-9+/=]+ \S+$/.test(key)) throw new Error(`a dom0's ssh key came back as ${JSON.stringify(key.slice(0, 200))}`);
    await host.check(`printf '%s\\n' ${shellQuote(key)} >> /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys`);
  }
}

/**
 * Copies dom0's /var/log (xl's logs, the domU consoles xenconsoled kept, dom0's ip monitor) out of the log disk
 * with debugfs: no loop mount, and it works on what a crashed dom0 left too.
 */
async function keepDom0Logs(logDisk: string, into: string, log: (line: string) => void): Promise<void> {
  if (!existsSync(logDisk)) return;
  rmSync(into, { recursive: true, force: true });
  mkdirSync(into, { recursive: true });
  try {
    await runCommand('debugfs', ['-R', `rdump / ${into}`, logDisk]);
    rmSync(path.join(into, 'lost+found'), { recursive: true, force: true });
    rmSync(logDisk);
    log(`dom0's logs (xl, xenconsoled's domU consoles, ip monitor) are in ${into}`);
  } catch (error) {
    log(`dom0's logs stay in the image ${logDisk}: ${(error as Error).message.split('\n')[0]}`);
  }
}

function addressWithSuffix(address: string, last: number): string {
  return `${address.split('.').slice(0, 3).join('.')}.${last}`;
}
