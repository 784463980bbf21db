import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { agentKeyFor } from '../../contract/frame-signing.js';
import { findExecutable } from '../../system/run-command.js';
import { virsh } from '../../system/virsh.js';
import { completedCampaign, runCampaign, waitForAgentHello, type CampaignOutcome } from '../campaign/campaign-runner.js';
import type { CampaignOptions } from '../campaign/campaign-options.js';
import type { GuestTarget } from '../campaign/campaign-target.js';
import { LibvirtDriver, type LibvirtMigrateFlag } from '../drivers/libvirt-driver.js';
import { hostNowMs } from '../host-clock.js';
import { labGuestImage } from './guest-initramfs.js';

export interface LibvirtLabOptions extends CampaignOptions {
  libvirtUri: string;
  /** A second libvirtd to live-migrate to; without one, each migration is a virsh save + restore. */
  destinationUri: string | null;
  migrateUri: string | null;
  migrateFlags: readonly LibvirtMigrateFlag[];
}

const AGENT_ID = 'flinch-libvirt-guest';
const MAC = '52:54:00:f1:1c:0a';

/**
 * `flinch campaign --driver libvirt`: the lab guest as a libvirt domain (QEMU TCG) on an existing libvirtd, with
 * user-mode networking so that nothing is added to the host's network: the guest reaches the collector on this host's
 * loopback as 10.0.2.2. User networking cannot carry the blackout probes in, and it resets the agent's connection at
 * each restore (the channel re-sends); the guest console faults need the qmp lab's serial socket.
 */
export async function runLibvirtCampaign(options: LibvirtLabOptions, log: (line: string) => void): Promise<CampaignOutcome> {
  if (process.getuid?.() !== 0) throw new UserError('flinch campaign --driver libvirt needs root (qemu:///system)', EXIT.needsRoot);
  if (!findExecutable('virsh')) throw new UserError('virsh not found; install libvirt-clients and libvirt-daemon-system', EXIT.missingTool);
  const version = virsh(options.libvirtUri, 'version');
  if (version.status !== 0) {
    throw new UserError(`libvirt at ${options.libvirtUri} does not answer (${version.stderr.trim().split('\n')[0]}); start libvirtd (systemctl start libvirtd, or libvirtd -d)`, EXIT.missingTool);
  }
  const done = completedCampaign(options, 'libvirt');
  if (done) return done;
  const startedAtMs = hostNowMs();
  mkdirSync(options.outDir, { recursive: true });
  const image = await labGuestImage(options.cacheDir, log, options.guestKernel);
  const { kernel } = image;
  const hypervisor = /Running hypervisor: (.*)/.exec(version.stdout)?.[1]?.trim() ?? null;
  return runCampaign(options, libvirtTarget(options, kernel, image.initrd, hypervisor), startedAtMs, log);
}

/** The lab guest as a transient libvirt domain on the user's libvirtd; clean-up goes to wherever it migrated. */
function libvirtTarget(options: LibvirtLabOptions, kernel: { vmlinuz: string; packageName: string }, initrd: string, hypervisor: string | null): GuestTarget {
  const domain = `flinch-lab-${process.pid}`;
  let current = () => options.libvirtUri;
  let defined = false;
  let stopDriver: () => Promise<void> = async () => undefined;
  return {
    driverName: 'libvirt',
    collectorHost: '127.0.0.1',
    collectorPort: 0,
    async bringUp({ collector, fleetSecret, collectorPort, logsDir, log }) {
      const xml = path.join(logsDir, 'domain.xml');
      writeFileSync(xml, `<domain type='qemu'>
  <name>${domain}</name>
  <memory unit='MiB'>${options.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>${kernel.vmlinuz}</kernel><initrd>${initrd}</initrd>
  <cmdline>console=ttyS0 panic=-1 quiet flinch.ip=10.0.2.15/24 flinch.gw=10.0.2.2 flinch.collector=ws://10.0.2.2:${collectorPort} flinch.id=${AGENT_ID} flinch.token=${agentKeyFor(fleetSecret, AGENT_ID)} flinch.remediate=on</cmdline></os>
  <cpu mode='custom' match='exact'><model>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='${path.join(logsDir, 'guest.serial.log')}'/></serial>
    <interface type='user'><mac address='${MAC}'/><model type='virtio'/></interface>
  </devices>
</domain>
`);
      const define = virsh(options.libvirtUri, 'define', xml);
      if (define.status !== 0) throw new UserError(`virsh define: ${define.stderr.trim()}`, EXIT.failed);
      defined = true;
      const bootStart = hostNowMs();
      const started = virsh(options.libvirtUri, 'start', domain);
      if (started.status !== 0) throw new Error(`virsh start: ${started.stderr.trim()}`);
      log(`booting libvirt domain ${domain} (TCG, ${options.memoryMiB} MiB)`);
      const agent = await waitForAgentHello(collector, AGENT_ID, options.bootTimeoutMs);
      const bootToAgentMs = hostNowMs() - bootStart;
      log(`agent ${agent.agentId} connected ${(bootToAgentMs / 1000).toFixed(1)} s after boot`);
      const driver = new LibvirtDriver({
        uri: options.libvirtUri, domain, mode: options.destinationUri ? 'migrate' : 'save-restore', saveFile: path.join(options.outDir, 'guest.save'),
        destinationUri: options.destinationUri, migrateUri: options.migrateUri, migrateFlags: options.migrateFlags, mac: MAC, virsh: 'virsh', timeoutMs: options.migrationTimeoutMs,
      });
      current = () => driver.currentUri;
      stopDriver = () => driver.cleanup();
      await driver.prepare();
      return {
        driver, agent, meter: null, where: () => driver.currentUri, reconnectsAfterMigration: true, bootToAgentMs: Math.round(bootToAgentMs),
        hypervisor: { driver: 'libvirt', qemu: hypervisor, destQemu: null },
        guest: { kernel: kernel.packageName, memoryMiB: options.memoryMiB, bootToAgentMs: Math.round(bootToAgentMs) },
      };
    },
    async tearDown() {
      await stopDriver();
      if (defined) {
        for (const uri of new Set([current(), options.libvirtUri])) {
          virsh(uri, 'destroy', domain);
          virsh(uri, 'undefine', domain);
        }
      }
      rmSync(path.join(options.outDir, 'guest.save'), { force: true });
    },
  };
}
