import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { findExecutable, runCommand } from '../run-command.js';
import { UserError } from '../../contract/command-line.js';
import { QmpClient } from './qmp-client.js';
import { diesWithThisProcess } from '../child-lifetime.js';

export const DEFAULT_QEMU_BINARY = 'qemu-system-x86_64';

export interface VmSpec {
  /** Executable path or name on PATH. A different binary on the destination is a same-host live upgrade. */
  qemuBinary: string;
  /** Unique within the run folder; names the QMP socket and the logs. */
  name: string;
  runDir: string;
  kernel: string;
  initrd: string;
  append: string;
  /** A raw root disk (virtio-blk), for guests that boot from an image rather than from their initramfs. */
  disk?: string;
  /** A second serial port (the guest's ttyS1) on this Unix socket, for a lab-only console (harness/lab/guest-console.ts). */
  consoleSocket?: string;
  memoryMiB: number;
  /** The guest NIC: a tap device already on the lab bridge, and the MAC the guest keeps across migrations. */
  tap: string;
  mac: string;
  /** Start paused, waiting for `migrate-incoming` (QEMU's `-incoming defer`). */
  incoming: boolean;
  /**
   * The machine type: `pc` (the alias of this QEMU's newest i440fx machine) unless pinned. Two QEMUs of different
   * versions only migrate between the same concrete type (`pc-i440fx-7.2`), never between their aliases.
   */
  machine?: string;
  /**
   * Guest RAM in this file (shared: `memory-backend-file,share=on`), which the QEMU on the other side of a same-host
   * migration maps too: with the `x-ignore-shared` capability, RAM is not copied at all (seed 004's page flipping).
   */
  sharedMemoryFile?: string;
}

/** The guest NIC's QEMU id; the command line and a hot replug (the nic-replug fault) must agree on it. */
export const NIC_ID = 'nic0';

/**
 * The guest NIC as QMP `device_add` arguments, which the command line's -device is made from too. A fixed PCI slot
 * keeps a NIC that was unplugged and plugged again the same device to the next migration's destination.
 */
export function nicDeviceArguments(mac: string): Record<string, string> {
  return { driver: 'virtio-net-pci', netdev: 'n0', id: NIC_ID, mac, addr: '0x3' };
}

/** Resolves the QEMU binary or fails with the one line a person needs. */
export function resolveQemuBinary(binary: string): string {
  const found = findExecutable(binary);
  if (!found) {
    throw new UserError(
      `${binary}: not found. Install QEMU (apt-get install qemu-system-x86) or pass --qemu /path/to/qemu-system-x86_64`,
      3,
    );
  }
  return found;
}

/**
 * The environment a QEMU binary runs in. One unpacked into a prefix (another Debian release's, in the cache) would
 * load the system QEMU's modules from the path compiled into it, and warn or fail on each: it is pointed at its own.
 */
export function qemuEnvironment(binary: string, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const resolved = findExecutable(binary) ?? binary;
  const prefix = path.dirname(path.dirname(path.dirname(resolved)));
  const modules = path.join(prefix, 'usr', 'lib', 'x86_64-linux-gnu', 'qemu');
  if (prefix === '/' || !resolved.endsWith(path.join('usr', 'bin', path.basename(resolved))) || !existsSync(modules)) return base;
  return { ...base, QEMU_MODULE_DIR: modules };
}

/** What `BINARY -version` says of itself ("10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)"); null if it is no QEMU. */
export async function qemuBinaryVersion(binary: string): Promise<string | null> {
  const { stdout } = await runCommand(binary, ['-version'], { timeout: 10_000, env: qemuEnvironment(binary) });
  const match = /version (\S+)(?: \((.*)\))?/.exec(stdout);
  return match ? `${match[1]}${match[2] ? ` (${match[2]})` : ''}` : null;
}

/** The machine the guest runs, as QOM names its type: `pc-q35-7.2-machine` is `pc-q35-7.2`, whatever alias started it. */
export async function runningMachineType(qmp: QmpClient): Promise<string> {
  const type = await qmp.execute<string>('qom-get', { path: '/machine', property: 'type' });
  return type.replace(/-machine$/, '');
}

/** The machine types a QEMU binary offers (`-machine help`), aliases included. */
export async function machineTypesOf(binary: string): Promise<Set<string>> {
  const { stdout } = await runCommand(binary, ['-machine', 'help'], { timeout: 10_000, env: qemuEnvironment(binary) });
  return new Set(stdout.split('\n').slice(1).map((line) => line.trim().split(/\s+/)[0]!).filter(Boolean));
}

/**
 * The QEMU command line for a lab guest. The device set and order must be identical on both sides of a migration,
 * so both come from this one function; only the tap, the QMP socket and -incoming differ.
 */
export function qemuArguments(spec: VmSpec): string[] {
  const args = [
    '-name', spec.name,
    ...(spec.sharedMemoryFile ? ['-object', `memory-backend-file,id=ram0,size=${spec.memoryMiB}M,mem-path=${spec.sharedMemoryFile},share=on`] : []),
    '-machine', `${spec.machine ?? 'pc'},accel=tcg${spec.sharedMemoryFile ? ',memory-backend=ram0' : ''}`,
    '-cpu', 'qemu64',
    '-smp', '1',
    '-m', String(spec.memoryMiB),
    '-nodefaults', '-no-user-config', '-no-reboot',
    '-display', 'none',
    '-serial', `file:${serialLogPath(spec)}`,
    '-kernel', spec.kernel,
    '-initrd', spec.initrd,
    '-append', spec.append,
    '-netdev', `tap,id=n0,ifname=${spec.tap},script=no,downscript=no`,
    '-device', Object.entries(nicDeviceArguments(spec.mac)).map(([key, value]) => (key === 'driver' ? value : `${key}=${value}`)).join(','),
    '-qmp', `unix:${qmpSocketPath(spec)},server=on,wait=off`,
  ];
  if (spec.consoleSocket) args.push('-serial', `unix:${spec.consoleSocket},server=on,wait=off`);
  if (spec.disk) args.push('-drive', `file=${spec.disk},if=virtio,format=raw,cache=unsafe`);
  if (spec.incoming) args.push('-incoming', 'defer');
  return args;
}

export function qmpSocketPath(spec: Pick<VmSpec, 'runDir' | 'name'>): string {
  return path.join(spec.runDir, `${spec.name}.qmp`);
}

export function serialLogPath(spec: Pick<VmSpec, 'runDir' | 'name'>): string {
  return path.join(spec.runDir, `${spec.name}.serial.log`);
}

/** One QEMU process we started, with its QMP connection. We only ever signal this PID. */
export class QemuVm {
  private constructor(
    readonly spec: VmSpec,
    readonly process: ChildProcess,
    readonly qmp: QmpClient,
  ) {}

  get pid(): number {
    return this.process.pid ?? -1;
  }

  /** `args` replaces the lab guest's command line, for machines of another shape (the nested Xen host). */
  static async launch(spec: VmSpec, startTimeoutMs = 15_000, args: string[] = qemuArguments(spec)): Promise<QemuVm> {
    const binary = resolveQemuBinary(spec.qemuBinary);
    // A socket left by an earlier QEMU of the same name (a failed migration's destination) would be mistaken for ours.
    for (const stale of [qmpSocketPath(spec), spec.consoleSocket]) if (stale) rmSync(stale, { force: true });
    const stderrPath = path.join(spec.runDir, `${spec.name}.qemu.log`);
    const child = spawn(...diesWithThisProcess(binary, args), { stdio: ['ignore', 'ignore', 'pipe'], env: qemuEnvironment(binary) });
    child.stderr!.pipe(createWriteStream(stderrPath));
    let exited: string | null = null;
    child.once('exit', (code, signal) => {
      exited = signal ? `killed by ${signal}` : `exited with code ${code}`;
    });
    child.once('error', (error) => {
      exited = error.message;
    });
    const socketPath = qmpSocketPath(spec);
    const deadline = Date.now() + startTimeoutMs;
    while (!existsSync(socketPath)) {
      if (exited !== null) throw new Error(`QEMU ${spec.name} ${exited} at start: ${lastLine(stderrPath)}`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`QEMU ${spec.name} did not open its QMP socket within ${startTimeoutMs} ms`);
      }
      await sleep(20);
    }
    try {
      const qmp = await QmpClient.connect(socketPath, startTimeoutMs);
      // QEMU opens QMP before it has loaded its accelerator and firmware; one that dies of those dies right after.
      await sleep(50);
      if (exited !== null) throw new Error('exited');
      return new QemuVm(spec, child, qmp);
    } catch (error) {
      await sleep(100);
      child.kill('SIGKILL');
      if (exited !== null) throw new Error(`QEMU ${spec.name} (${binary}) ${exited} at start: ${lastLine(stderrPath)}`);
      throw error;
    }
  }

  /** Why this QEMU is gone, from its own last words; null while it runs. */
  exitReason(): string | null {
    if (this.process.exitCode === null && this.process.signalCode === null) return null;
    return `${this.spec.name} ${this.process.signalCode ? `killed by ${this.process.signalCode}` : `exited with code ${this.process.exitCode}`}: ${lastLine(path.join(this.spec.runDir, `${this.spec.name}.qemu.log`))}`;
  }

  /** Asks QEMU to quit; kills the process if it has not gone within the grace period. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    const gone = new Promise<void>((resolve) => this.process.once('exit', () => resolve()));
    try {
      await this.qmp.execute('quit', undefined, graceMs);
    } catch {
      // QEMU may close the socket before answering `quit`; the exit below is what counts.
    }
    const timer = setTimeout(() => this.process.kill('SIGKILL'), graceMs);
    await gone;
    clearTimeout(timer);
    this.qmp.close();
  }
}

/** QEMU's own word on why it stopped: its last error line (`qemu-system-x86_64: …`), not the hint after it. */
function lastLine(file: string): string {
  try {
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const errors = lines.filter((line) => /^qemu-system-[\w-]+: /.test(line));
    return errors[errors.length - 1] ?? (lines[lines.length - 1] || '(no output)');
  } catch {
    return '(no output)';
  }
}
