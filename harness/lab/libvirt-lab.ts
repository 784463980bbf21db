import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { agentKeyFor } from '../../contract/frame-signing.js';
import { findExecutable } from '../../system/run-command.js';
import { CampaignJournal } from '../campaign/campaign-journal.js';
import { campaignResults, finishCampaign, openCampaignCollector, runMigrations, waitForAgentHello } from '../campaign/campaign-runner.js';
import { LibvirtDriver } from '../drivers/libvirt-driver.js';
import { hostNowMs } from '../host-clock.js';
import { fetchGuestKernel } from './debian-kernel.js';
import { buildGuestImage } from './guest-initramfs.js';
import { campaignIdentity, campaignSettings, finishedAlready, type LabOptions } from './qemu-lab.js';

/** No virsh call the lab makes here (version, list, destroy, undefine) takes this long on a healthy libvirtd. */
const VIRSH_TIMEOUT_MS = 60_000;

export interface LibvirtLabOptions extends LabOptions {
  libvirtUri: string;
  /** A second libvirtd to live-migrate to; without one, each migration is a virsh save + restore. */
  destinationUri: string | null;
  migrateUri: string | null;
}

const AGENT_ID = 'flinch-libvirt-guest';
const MAC = '52:54:00:f1:1c:0a';

/**
 * `flinch campaign --driver libvirt`: the lab guest as a libvirt domain (QEMU TCG) on an existing libvirtd, with
 * user-mode networking so that nothing is added to the host's network: the guest reaches the collector on this host's
 * loopback as 10.0.2.2. User networking cannot carry the blackout probes in, and it resets the agent's connection at
 * each restore (the channel re-sends); the guest console faults need the qmp lab's serial socket.
 */
export async function runLibvirtCampaign(options: LibvirtLabOptions, log: (line: string) => void): Promise<void> {
  if (process.getuid?.() !== 0) throw new UserError('flinch campaign --driver libvirt needs root (qemu:///system)', EXIT.needsRoot);
  if (!findExecutable('virsh')) throw new UserError('virsh not found; install libvirt-clients and libvirt-daemon-system', EXIT.missingTool);
  const version = spawnSync('virsh', ['-c', options.libvirtUri, 'version'], { encoding: 'utf8', timeout: VIRSH_TIMEOUT_MS, killSignal: 'SIGKILL' });
  if (version.status !== 0) {
    throw new UserError(`libvirt at ${options.libvirtUri} does not answer (${version.stderr.trim().split('\n')[0]}); start libvirtd (systemctl start libvirtd, or libvirtd -d)`, EXIT.missingTool);
  }
  if (finishedAlready(options, log, 'libvirt')) return;
  const startedAtMs = hostNowMs();
  mkdirSync(options.outDir, { recursive: true });
  const kernel = await fetchGuestKernel(options.cacheDir, log);
  const image = await buildGuestImage(options.cacheDir, kernel, log);
  const journal = CampaignJournal.open(options.outDir, campaignIdentity(options, 'libvirt'), log);
  const { collector, store, fleetSecret, port } = await openCampaignCollector(options.outDir, journal, '127.0.0.1', 0, log);
  const logsDir = path.join(options.outDir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  const domain = `flinch-lab-${process.pid}`;
  const xml = path.join(logsDir, 'domain.xml');
  writeFileSync(xml, `<domain type='qemu'>
  <name>${domain}</name>
  <memory unit='MiB'>${options.memoryMiB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>${kernel.vmlinuz}</kernel><initrd>${image.initrd}</initrd>
  <cmdline>console=ttyS0 panic=-1 quiet flinch.ip=10.0.2.15/24 flinch.gw=10.0.2.2 flinch.collector=ws://10.0.2.2:${port} flinch.id=${AGENT_ID} flinch.token=${agentKeyFor(fleetSecret, AGENT_ID)} flinch.remediate=on</cmdline></os>
  <cpu mode='custom' match='exact'><model>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='${path.join(logsDir, 'guest.serial.log')}'/></serial>
    <interface type='user'><mac address='${MAC}'/><model type='virtio'/></interface>
  </devices>
</domain>
`);
  const virsh = (...args: string[]) => spawnSync('virsh', ['-c', options.libvirtUri, ...args], { encoding: 'utf8', timeout: VIRSH_TIMEOUT_MS, killSignal: 'SIGKILL' });
  // The domain moves between libvirtds in a live-migration campaign; clean-up goes to wherever it is.
  let current = () => options.libvirtUri;
  const defined = virsh('define', xml);
  if (defined.status !== 0) throw new UserError(`virsh define: ${defined.stderr.trim()}`, EXIT.failed);
  try {
    const bootStart = hostNowMs();
    const started = virsh('start', domain);
    if (started.status !== 0) throw new Error(`virsh start: ${started.stderr.trim()}`);
    log(`booting libvirt domain ${domain} (TCG, ${options.memoryMiB} MiB)`);
    const agent = await waitForAgentHello(collector, AGENT_ID, options.bootTimeoutMs);
    const bootToAgentMs = hostNowMs() - bootStart;
    log(`agent ${agent.agentId} connected ${(bootToAgentMs / 1000).toFixed(1)} s after boot`);
    const driver = new LibvirtDriver({
      uri: options.libvirtUri, domain, mode: options.destinationUri ? 'migrate' : 'save-restore', saveFile: path.join(options.outDir, 'guest.save'),
      destinationUri: options.destinationUri, migrateUri: options.migrateUri, mac: MAC, virsh: 'virsh', timeoutMs: options.migrationTimeoutMs,
    });
    current = () => driver.currentUri;
    await driver.prepare();
    const migrations = await runMigrations(campaignSettings(options, startedAtMs), { driver, collector, agent, meter: null, where: () => driver.currentUri, reconnectsAfterMigration: true }, journal, log);
    const results = await campaignResults({
      startedAtMs,
      hypervisor: { driver: 'libvirt', qemu: /Running hypervisor: (.*)/.exec(version.stdout)?.[1]?.trim() ?? null, destQemu: null },
      guest: { kernel: kernel.packageName, memoryMiB: options.memoryMiB, bootToAgentMs: Math.round(bootToAgentMs) },
      settings: options,
      migrations,
      collector,
      store,
      agent,
    });
    finishCampaign(options.outDir, results, options.failOnUnexpected, log);
  } finally {
    for (const uri of new Set([current(), options.libvirtUri])) {
      spawnSync('virsh', ['-c', uri, 'destroy', domain], { encoding: 'utf8', timeout: VIRSH_TIMEOUT_MS, killSignal: 'SIGKILL' });
      spawnSync('virsh', ['-c', uri, 'undefine', domain], { encoding: 'utf8', timeout: VIRSH_TIMEOUT_MS, killSignal: 'SIGKILL' });
    }
    rmSync(path.join(options.outDir, 'guest.save'), { force: true });
    await collector.stop();
    store.close();
  }
}
