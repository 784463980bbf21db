import path from 'node:path';
import { GuestConsole } from '../guest-console.js';
import { QemuVm, qmpSocketPath, serialLogPath, type VmSpec } from '../../../system/qemu/qemu-vm.js';
import type { Dom0Shell } from '../../../system/xl.js';
import type { XenLabArtifacts } from './xen-artifacts.js';

export interface NestedXenSpec {
  qemuBinary: string;
  runDir: string;
  /** Names its QMP socket, serial log and console socket in the run folder: two hosts share one folder. */
  machineName?: string;
  artifacts: XenLabArtifacts;
  /** An empty ext4 image dom0 mounts as /var/log: xl's, xenconsoled's and flinch's logs survive the run there. */
  logDisk: string;
  /** dom0's uplink: a tap on the lab bridge, so domUs bridged behind it reach the collector. */
  tap: string;
  /**
   * Instead of the tap: QEMU's user networking, whose gateway 10.0.2.2 is this host's loopback, with these host
   * forwards (`tcp:127.0.0.1:2201-:22`: dom0's sshd reached from here as a user's Xen host is).
   */
  userNetwork?: { hostForwards: readonly string[] };
  mac: string;
  /** dom0's own address on its bridge (CIDR). */
  dom0Address: string;
  memoryMiB: number;
  dom0MemoryMiB: number;
}

/** The QEMU machine's default name. */
const MACHINE_NAME = 'xen-host';
const machineName = (spec: Pick<NestedXenSpec, 'machineName'>) => spec.machineName ?? MACHINE_NAME;

/**
 * The command line of the machine Xen runs on. `-cpu max` with SMAP/SMEP crashes a PV dom0 under TCG (lab notes), so
 * both are off; max keeps SVM and NPT, which PVH domUs need. Xen takes com1 (the serial log); dom0's lab shell is on
 * com2. The dom0 disk is a snapshot: the cached image is never written, a run's changes vanish with QEMU.
 */
export function nestedXenArguments(spec: NestedXenSpec): string[] {
  const { artifacts } = spec;
  const xenCommandLine = [
    'console=com1', 'com1=115200,8n1', `dom0_mem=${spec.dom0MemoryMiB}M,max:${spec.dom0MemoryMiB}M`, 'dom0_max_vcpus=1',
    'loglvl=all', 'guest_loglvl=all', 'noreboot',
  ].join(' ');
  const dom0CommandLine = ['root=/dev/vda', 'console=hvc0', 'earlyprintk=xen', 'loglevel=6', `flinch.dom0ip=${spec.dom0Address}`].join(' ');
  for (const file of [artifacts.dom0Kernel.vmlinuz, artifacts.dom0Initrd]) {
    // QEMU's multiboot -initrd is a comma-separated list of "file arguments".
    if (/[ ,]/.test(file)) throw new Error(`${file}: a multiboot module path may hold neither spaces nor commas`);
  }
  return [
    '-name', machineName(spec),
    '-machine', 'pc,accel=tcg',
    '-cpu', 'max,-smap,-smep',
    '-smp', '2',
    '-m', String(spec.memoryMiB),
    '-nodefaults', '-no-user-config', '-no-reboot',
    '-display', 'none',
    '-serial', `file:${xenSerialLog(spec.runDir, spec.machineName)}`,
    '-serial', `unix:${dom0ConsoleSocket(spec)},server=on,wait=off`,
    '-kernel', artifacts.xen,
    '-append', xenCommandLine,
    '-initrd', `${artifacts.dom0Kernel.vmlinuz} ${dom0CommandLine},${artifacts.dom0Initrd}`,
    '-drive', `file=${artifacts.dom0Disk},if=virtio,format=raw,snapshot=on,cache=unsafe`,
    '-drive', `file=${artifacts.domuDisk},if=virtio,format=raw,readonly=on`,
    '-drive', `file=${spec.logDisk},if=virtio,format=raw,cache=writeback`,
    '-netdev', spec.userNetwork ? ['user', 'id=n0', ...spec.userNetwork.hostForwards.map((f) => `hostfwd=${f}`)].join(',') : `tap,id=n0,ifname=${spec.tap},script=no,downscript=no`,
    '-device', `virtio-net-pci,netdev=n0,mac=${spec.mac}`,
    '-qmp', `unix:${qmpSocketPath({ runDir: spec.runDir, name: machineName(spec) })},server=on,wait=off`,
  ];
}

function dom0ConsoleSocket(spec: Pick<NestedXenSpec, 'runDir' | 'machineName'>): string {
  return path.join(spec.runDir, `${machineName(spec)}.console`);
}

export function xenSerialLog(runDir: string, name = MACHINE_NAME): string {
  return serialLogPath({ runDir, name });
}

/**
 * Xen with its dom0, nested in one QEMU process we started. dom0 is reached through its lab shell on the machine's
 * second serial port: no sshd, keys or network in the way, and it keeps working while the lab breaks the domU's network
 * (the way an administrator keeps a serial-over-LAN console on a real Xen host).
 */
export class NestedXen implements Dom0Shell {
  private constructor(
    readonly vm: QemuVm,
    private readonly console: GuestConsole,
  ) {}

  static async boot(spec: NestedXenSpec, dom0TimeoutMs: number): Promise<NestedXen> {
    const vmSpec: VmSpec = {
      qemuBinary: spec.qemuBinary, name: machineName(spec), runDir: spec.runDir, kernel: spec.artifacts.xen, initrd: spec.artifacts.dom0Initrd,
      append: '', memoryMiB: spec.memoryMiB, tap: spec.tap, mac: spec.mac, incoming: false,
    };
    const vm = await QemuVm.launch(vmSpec, 15_000, nestedXenArguments(spec));
    try {
      const console = await GuestConsole.connect(dom0ConsoleSocket(spec));
      const exited = new Promise<never>((_, reject) => vm.process.once('exit', () => reject(new Error(`QEMU exited while Xen and dom0 booted: ${vm.exitReason()}`))));
      exited.catch(() => undefined);
      await Promise.race([console.waitReady(dom0TimeoutMs), exited]);
      return new NestedXen(vm, console);
    } catch (error) {
      await vm.stop(1000).catch(() => undefined);
      throw new Error(`${(error as Error).message}; Xen's and dom0's console is in ${xenSerialLog(spec.runDir, spec.machineName)}`);
    }
  }

  run(commandLine: string, timeoutMs: number): Promise<{ exitCode: number; output: string }> {
    if (this.vm.exitReason()) return Promise.reject(new Error(`the nested Xen machine is gone: ${this.vm.exitReason()}`));
    return this.console.run(commandLine, timeoutMs);
  }

  /** A command that must succeed in dom0; its output. */
  async check(commandLine: string, timeoutMs = 60_000): Promise<string> {
    return this.console.check(commandLine, timeoutMs);
  }

  /** Flushes dom0's logs to their disk and powers the machine off; QEMU exits by itself (-no-reboot, Xen noreboot). */
  async shutdown(): Promise<void> {
    if (!this.vm.exitReason()) {
      await this.console.run('sync; umount /var/log; sync', 60_000).catch(() => undefined);
      this.console.run('busybox poweroff -f', 2000).catch(() => undefined);
      const gone = new Promise<void>((resolve) => this.vm.process.once('exit', () => resolve()));
      await Promise.race([gone, new Promise((resolve) => setTimeout(resolve, 20_000))]);
    }
    this.console.close();
    await this.vm.stop(2000);
  }
}
