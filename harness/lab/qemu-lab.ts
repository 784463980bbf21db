import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT, UserError } from '../../contract/command-line.js';
import { LabTimeServer } from './lab-time-server.js';
import { BlackoutMeter } from '../blackout/blackout-meter.js';
import { NetworkWitness } from '../blackout/network-witness.js';
import { OutsideView } from '../blackout/outside-view.js';
import { completedCampaign, waitForAgentHello, type CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { GuestTarget } from '../campaign/campaign-target.js';
import { QmpDriver } from '../drivers/qmp-driver.js';
import { hostNowMs } from '../host-clock.js';
import { qemuBinaryVersion, resolveQemuBinary, serialLogPath } from '../../system/qemu/qemu-vm.js';
import { withQemuReleases } from './qemu-release.js';
import { agentKernelArguments, GUEST_ECHO_PORT, labGuestImage } from './guest-initramfs.js';
import { labNetworkFor, runInsideNamespace, withLabNetwork, type InsideStep, type LabNetwork } from './lab-network.js';
import { runCampaignInside, type CampaignPlan } from './campaign-inside.js';

/** Everything the part of the lab that runs inside the namespace needs; passed to it as JSON. */
interface InnerPlan extends CampaignPlan {
  network: LabNetwork;
  kernel: string;
  kernelPackage: string;
  initrd: string;
}

const LAB_AGENT_ID = 'flinch-lab-guest';
const GUEST_MAC = '52:54:00:f1:1c:01';
/** The campaign's inner half, run inside the lab namespace. */
export const QEMU_LAB_INSIDE: InsideStep = { subcommand: 'lab-inner', planVariable: 'FLINCH_LAB_PLAN', parent: 'flinch lab' };
/** Below 384 MiB the guest cannot unpack its initramfs (lab notes: 256 MiB fails). */
const MIN_GUEST_MEMORY_MIB = 384;

/**
 * `flinch lab`: prepares what needs the host's network (the guest kernel download, the image) and the lab namespace,
 * then runs the campaign in a child process inside that namespace, where the QEMUs, their taps and the collector
 * live. The namespace is removed whatever happens inside. Resolves with the outcome when there was nothing to run,
 * or with the exit status of the child, which showed its own.
 */
export async function runQemuLab(options: CampaignOptions, log: (line: string) => void): Promise<CampaignOutcome | number> {
  if (process.getuid?.() !== 0) {
    throw new UserError('flinch lab needs root: it creates a network namespace and tap devices (run it as root or with sudo)', EXIT.needsRoot);
  }
  if (options.memoryMiB < MIN_GUEST_MEMORY_MIB) {
    throw new UserError(`--memory ${options.memoryMiB} is too small: the guest's initramfs needs at least ${MIN_GUEST_MEMORY_MIB} MiB`, EXIT.usage);
  }
  options = await withQemuReleases(options, log);
  resolveQemuBinary(options.qemuBinary);
  if (options.destQemuBinary) resolveQemuBinary(options.destQemuBinary);
  if (options.agentless && options.blackoutIntervalMs === 0) {
    throw new UserError('--agentless measures with ICMP probes: --blackout-interval 0 would leave nothing to measure', EXIT.usage);
  }
  const done = completedCampaign(options, 'qmp');
  if (done) return done;
  const startedAtMs = hostNowMs();
  const image = await labGuestImage(options.cacheDir, log, options.guestKernel);
  const { kernel } = image;
  await warnAboutTcgAndKernel(kernel.release, [options.qemuBinary, options.destQemuBinary], log);
  const network = labNetworkFor(String(process.pid));
  const plan: InnerPlan = { options, network, kernel: kernel.vmlinuz, kernelPackage: kernel.packageName, initrd: image.initrd, startedAtMs };
  return withLabNetwork(network, () => runInsideNamespace(network.netns, QEMU_LAB_INSIDE, plan));
}

/** The part of `flinch lab` that runs inside the lab namespace: the campaign against the QEMU target. */
export const runLabInside = (log: (line: string) => void) => runCampaignInside(QEMU_LAB_INSIDE, qemuTarget, log);

/** The lab's guest: the initramfs image under QEMU TCG, its NIC on the lab namespace's taps, migrated over QMP. */
function qemuTarget(plan: InnerPlan): GuestTarget {
  const { options, network } = plan;
  let driver: QmpDriver | null = null;
  let timeServer: LabTimeServer | null = null;
  let meter: BlackoutMeter | null = null;
  let witness: NetworkWitness | null = null;
  let outside: OutsideView | null = null;
  return {
    driverName: 'qmp',
    collectorHost: network.hostAddress,
    collectorPort: options.collectorPort,
    async bringUp({ collector, fleetSecret, collectorPort, logsDir, log }) {
      const qmp = new QmpDriver({
        baseSpec: {
          qemuBinary: options.qemuBinary,
          runDir: logsDir,
          kernel: plan.kernel,
          initrd: plan.initrd,
          memoryMiB: options.memoryMiB,
          mac: GUEST_MAC,
          ...(options.machine ? { machine: options.machine } : {}),
          ...(options.sharedMemory ? { sharedMemoryFile: `/dev/shm/flinch-lab-${process.pid}.ram` } : {}),
          append: [
            'console=ttyS0', 'panic=-1', 'quiet',
            ...agentKernelArguments({ network, collectorPort, agentId: LAB_AGENT_ID, fleetSecret, probes: options.guestProbes, timeDaemon: options.guestTimeDaemon, agentless: options.agentless }),
          ].join(' '),
        },
        destQemuBinary: options.destQemuBinary,
        guestConsole: true,
        taps: network.taps,
        migrationHost: '127.0.0.1',
        migrationPortBase: 49152,
        timeoutMs: options.migrationTimeoutMs,
        pollMs: 50,
      });
      driver = qmp;
      if (options.guestTimeDaemon === 'chronyd') {
        timeServer = await LabTimeServer.start(options.cacheDir, network.hostAddress, logsDir);
        log(`serving NTP to the guest's chronyd from ${network.hostAddress} (chronyd -x: this machine's clock is not touched)`);
      }
      const bootStart = hostNowMs();
      log(`booting the guest (TCG, ${options.memoryMiB} MiB)`);
      // The QEMU is started only now, so that a kernel panic (-no-reboot ends QEMU) fails at once, not at the timeout.
      await qmp.prepare();
      const consoleLog = serialLogPath({ runDir: logsDir, name: 'guest-0' });
      const startOutside = async () => {
        if (options.blackoutIntervalMs === 0 || !(options.agentless || options.outsideView)) return;
        outside = new OutsideView(network.guestAddress, options.blackoutIntervalMs);
        await outside.start();
      };
      // An agentless guest is up when its kernel answers; beside an agent (--outside-view) the probes wait for its hello,
      // so that its boot and first baseline run as they do without them.
      if (options.agentless) await startOutside();
      const agent = options.agentless
        ? await waitForOutsideAnswer(outside!, options.bootTimeoutMs, () => qmp.vm.exitReason(), consoleLog)
        : await waitForAgentHello(collector, LAB_AGENT_ID, options.bootTimeoutMs, () => qmp.vm.exitReason()).catch((error: Error) => {
          throw new Error(`${error.message}; the guest console is in ${consoleLog}`);
        });
      const bootToAgentMs = hostNowMs() - bootStart;
      if (!options.agentless) await startOutside();
      log(agent ? `agent ${agent.agentId} connected ${(bootToAgentMs / 1000).toFixed(1)} s after boot` : `the guest (no agent) answered ICMP ${(bootToAgentMs / 1000).toFixed(1)} s after boot`);
      witness = await NetworkWitness.start(network.taps);
      const destQemuVersion = options.destQemuBinary ? await qemuBinaryVersion(options.destQemuBinary).catch(() => null) : null;
      meter = options.blackoutIntervalMs > 0 && !options.agentless ? new BlackoutMeter({ host: network.guestAddress, port: GUEST_ECHO_PORT }, options.blackoutIntervalMs) : null;
      return {
        driver: qmp, agent, meter, witness: { network: witness, mac: GUEST_MAC }, ...(outside ? { outside } : {}), where: () => qmp.vm.spec.tap, bootToAgentMs: Math.round(bootToAgentMs),
        hypervisor: { driver: qmp.name, qemu: qemuVersion(qmp), destQemu: options.destQemuBinary ?? null, ...(destQemuVersion ? { destQemuVersion } : {}), machine: qmp.machineType ?? undefined },
        guest: { kernel: plan.kernelPackage, memoryMiB: options.memoryMiB, bootToAgentMs: Math.round(bootToAgentMs) },
      };
    },
    async tearDown() {
      meter?.stop();
      await witness?.stop();
      await outside?.stop();
      timeServer?.stop();
      await driver?.cleanup().catch(() => undefined);
    },
  };
}

/**
 * Linux 6.12 (bookworm-backports', trixie's) double-faults under QEMU 7.2's TCG: at boot in 8 of 12 boots here, with
 * the qemu64, Nehalem and max CPU models alike, and once after being migrated onto a 7.2; under QEMU 10.0's TCG in
 * none of 4.
 * Said once, before the boot: a crash of that kind is the emulator's, not something the guest noticed.
 */
async function warnAboutTcgAndKernel(release: string, binaries: ReadonlyArray<string | undefined>, log: (line: string) => void): Promise<void> {
  const [major = 0, minor = 0] = release.split(/[.-]/).map(Number);
  if (major < 6 || (major === 6 && minor < 12)) return;
  for (const binary of binaries) {
    if (!binary) continue;
    const version = await qemuBinaryVersion(binary).catch(() => null);
    if (version && Number(version.split('.')[0]) < 8) {
      log(`warning: Linux ${release} under QEMU ${version.split(' ')[0]}'s TCG double-faults in most boots here; QEMU 10.0 (--qemu bookworm-backports) runs it`);
      return;
    }
  }
}

/** An agentless guest is up once its kernel answers the outside view's ICMP timestamps. */
async function waitForOutsideAnswer(outside: OutsideView, timeoutMs: number, gone: () => string | null, consoleLog: string): Promise<null> {
  for (const deadline = Date.now() + timeoutMs; !outside.answering; await sleep(100)) {
    const why = gone();
    if (why) throw new Error(`the guest is gone before it answered ICMP: ${why}; the guest console is in ${consoleLog}`);
    if (Date.now() > deadline) throw new Error(`the guest did not answer ICMP within ${timeoutMs / 1000} s; the guest console is in ${consoleLog}`);
  }
  return null;
}

function qemuVersion(driver: QmpDriver): string | null {
  const v = driver.vm.qmp.version;
  return v ? `${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}${v.package ? ` (${v.package.trim()})` : ''}` : null;
}
