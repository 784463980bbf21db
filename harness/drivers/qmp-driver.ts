import { rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { NIC_ID, nicDeviceArguments, QemuVm, runningMachineType, type VmSpec } from '../../system/qemu/qemu-vm.js';
import type { QmpClient, QmpEvent } from '../../system/qemu/qmp-client.js';
import { hostNowMs } from '../host-clock.js';
import { GUEST_CONSOLE_FAULTS, type FaultName, type FaultRecord, type MigrateOptions, type MigrationDriver, type MigrationTiming } from './migration-driver.js';
import { GuestConsole } from '../lab/guest-console.js';

/** `query-migrate`'s answer, as far as flinch reads it. */
export interface QueryMigrateReply {
  status?: string;
  'total-time'?: number;
  downtime?: number;
  'setup-time'?: number;
  'error-desc'?: string;
  ram?: { transferred?: number };
}

export interface QmpDriverOptions {
  /** The guest as it starts; `tap` alternates between `taps` on every migration. */
  baseSpec: Omit<VmSpec, 'name' | 'tap' | 'incoming' | 'consoleSocket'>;
  /**
   * The destination's QEMU, when it is not the source's: a same-host live upgrade (libvirt's idea, seeds 002/004).
   * Every destination runs it; the first guest runs baseSpec.qemuBinary.
   */
  destQemuBinary?: string;
  /** Give each QEMU a lab console socket (the guest's ttyS1), for the guest-side faults. */
  guestConsole: boolean;
  /** Two taps on the lab bridge: source and destination swap at each migration. */
  taps: readonly [string, string];
  /** Where the destination listens; inside the lab namespace this is its own loopback. */
  migrationHost: string;
  migrationPortBase: number;
  timeoutMs: number;
  pollMs: number;
}

/** After the destination reports running, how long its RESUME event may still take to arrive (it is queued first). */
export const PAUSE_EVENT_WAIT_MS = 2000;

/**
 * The true pause, from QEMU's own stamps: the source's STOP (the vCPUs stop for the last copy, or for a paused
 * migration, the `stop` itself) to the destination's RESUME. QEMU stamps events with the host's realtime clock in
 * microseconds; both QEMUs run on this host, so the two stamps share a clock. Its `downtime` stops counting earlier,
 * before the destination has loaded the state and started.
 */
export function watchPause(source: QmpClient, destination: QmpClient) {
  let stoppedAtMs: number | null = null;
  let resumedAtMs: number | null = null;
  const onSource = (event: QmpEvent) => {
    if (event.event === 'STOP') stoppedAtMs ??= event.timestampMs;
  };
  const onDestination = (event: QmpEvent) => {
    if (event.event === 'RESUME') resumedAtMs = event.timestampMs;
  };
  source.on('event', onSource);
  destination.on('event', onDestination);
  return {
    async settled(waitMs: number): Promise<{ stoppedAtMs: number; resumedAtMs: number } | null> {
      for (const until = Date.now() + waitMs; resumedAtMs === null && Date.now() < until;) await sleep(20);
      source.off('event', onSource);
      destination.off('event', onDestination);
      return stoppedAtMs !== null && resumedAtMs !== null && resumedAtMs >= stoppedAtMs ? { stoppedAtMs, resumedAtMs } : null;
    },
  };
}

export class MigrationFailedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MigrationFailedError';
  }
}

/**
 * Live migration between two QEMU processes through QMP: start a destination with `-incoming defer`, point it at a
 * TCP port, `migrate` the source there, wait for `completed`, and retire the source. The guest ping-pongs between
 * the two taps, so the same bridge sees it leave one port and arrive on the other.
 */
export class QmpDriver implements MigrationDriver {
  readonly name = 'qmp';
  readonly faults: readonly FaultName[];
  private current: QemuVm | null = null;
  private generation = 0;
  private consoleOf: { vm: QemuVm; console: GuestConsole } | null = null;
  /** The concrete machine type the first QEMU runs, which every destination is started with. */
  private machine: string | null = null;

  constructor(private readonly options: QmpDriverOptions) {
    const qmpFaults: FaultName[] = ['carrier-flap', 'nic-replug', 'link-down', 'long-pause'];
    this.faults = options.guestConsole ? [...qmpFaults, 'guest-firewall-flush', 'guest-clock-step'] : qmpFaults;
  }

  get vm(): QemuVm {
    if (!this.current) throw new Error('qmp driver: no guest running (prepare() first)');
    return this.current;
  }

  async prepare(): Promise<void> {
    this.current = await QemuVm.launch(this.specFor(0, false));
    // An alias (pc, q35) means this QEMU's newest machine, another one on another version: a destination of another
    // QEMU must be given the concrete type the guest runs, or it cannot take the guest (or takes it wrongly).
    this.machine = await runningMachineType(this.current.qmp);
  }

  /** The machine type the guest runs (pc-i440fx-7.2), once prepared. */
  get machineType(): string | null {
    return this.machine;
  }

  async migrate(options: MigrateOptions = {}): Promise<MigrationTiming> {
    const source = this.vm;
    const generation = this.generation + 1;
    const destination = await QemuVm.launch(this.specFor(generation, true));
    try {
      const uri = `tcp:${this.options.migrationHost}:${this.options.migrationPortBase + (generation % 100)}`;
      const parameters: Record<string, number> = {};
      if (options.downtimeLimitMs !== undefined) parameters['downtime-limit'] = options.downtimeLimitMs;
      if (options.maxBandwidthBytesPerSecond !== undefined) parameters['max-bandwidth'] = options.maxBandwidthBytesPerSecond;
      if (Object.keys(parameters).length > 0) await source.qmp.execute('migrate-set-parameters', parameters);
      const capabilities = [
        ...(options.postcopy ? [{ capability: 'postcopy-ram', state: true }] : []),
        // Both sides map the same RAM file: nothing of it is sent, only the devices' state.
        ...(this.options.baseSpec.sharedMemoryFile ? [{ capability: 'x-ignore-shared', state: true }] : []),
      ];
      if (capabilities.length > 0) {
        for (const vm of [source, destination]) await vm.qmp.execute('migrate-set-capabilities', { capabilities });
      }
      await destination.qmp.execute('migrate-incoming', { uri });
      const pause = watchPause(source.qmp, destination.qmp);
      const startedAtMs = hostNowMs();
      if (options.pausedForMs !== undefined) {
        await source.qmp.execute('stop');
        await sleep(options.pausedForMs);
      }
      await source.qmp.execute('migrate', { uri });
      if (options.postcopy) await this.startPostcopy(source);
      const reply = await waitForMigration(source.qmp, this.options.timeoutMs, this.options.pollMs);
      const completedAtMs = hostNowMs();
      // A guest migrated while stopped arrives stopped: continuing it ends the deterministic pause.
      if (options.pausedForMs !== undefined) await this.continueWhenMigrated(destination);
      await waitUntilRunning(destination.qmp, this.options.timeoutMs, this.options.pollMs);
      const stoppedAndResumed = await pause.settled(PAUSE_EVENT_WAIT_MS);
      await source.stop();
      this.current = destination;
      this.generation = generation;
      return {
        startedAtMs,
        completedAtMs,
        pause: stoppedAndResumed,
        ...qemuFigures(reply),
      };
    } catch (error) {
      // A QEMU that died says why in its log; that beats the QMP socket's ECONNRESET.
      await sleep(100);
      const died = destination.exitReason() ?? source.exitReason();
      await destination.stop().catch(() => undefined);
      if (died) throw new MigrationFailedError(`QEMU ${died}`);
      throw error;
    }
  }

  async injectFault(fault: FaultName, phase: 'before' | 'after'): Promise<FaultRecord | null> {
    const record = (detail: string): FaultRecord => ({ fault, phase, atMs: hostNowMs(), detail });
    const vm = this.vm;
    switch (`${fault}/${phase}`) {
      case 'carrier-flap/after':
        await vm.qmp.execute('set_link', { name: NIC_ID, up: false });
        await sleep(300);
        await vm.qmp.execute('set_link', { name: NIC_ID, up: true });
        return record(`set_link ${NIC_ID} off, 300 ms, on`);
      case 'link-down/before':
        await vm.qmp.execute('set_link', { name: NIC_ID, up: false });
        return record(`set_link ${NIC_ID} off on the source`);
      case 'link-down/after':
        await vm.qmp.execute('set_link', { name: NIC_ID, up: true });
        return record(`set_link ${NIC_ID} on on the destination`);
      case 'nic-replug/after': {
        const deleted = vm.qmp.waitForEvent('DEVICE_DELETED', 20_000, (event) => event.data.device === NIC_ID);
        await vm.qmp.execute('device_del', { id: NIC_ID });
        await deleted;
        await vm.qmp.execute('device_add', nicDeviceArguments(this.options.baseSpec.mac));
        return record(`device_del ${NIC_ID} (guest acknowledged), device_add with the same MAC ${this.options.baseSpec.mac}`);
      }
      case 'guest-firewall-flush/after':
      case 'guest-clock-step/after': {
        const { command, detail } = GUEST_CONSOLE_FAULTS[fault]!;
        await (await this.guestConsole()).check(command);
        return record(detail);
      }
      default:
        return null;
    }
  }

  /** The lab console of the running QEMU; a new one after each migration, since the chardev belongs to the process. */
  async guestConsole(): Promise<GuestConsole> {
    const vm = this.vm;
    if (!vm.spec.consoleSocket) throw new Error('qmp driver: this guest has no lab console (guestConsole: false)');
    if (this.consoleOf?.vm !== vm) {
      this.consoleOf?.console.close();
      const console = await GuestConsole.connect(vm.spec.consoleSocket);
      await console.waitReady(30_000);
      this.consoleOf = { vm, console };
    }
    return this.consoleOf.console;
  }

  async cleanup(): Promise<void> {
    this.consoleOf?.console.close();
    this.consoleOf = null;
    await this.current?.stop();
    this.current = null;
    if (this.options.baseSpec.sharedMemoryFile) rmSync(this.options.baseSpec.sharedMemoryFile, { force: true });
  }

  private specFor(generation: number, incoming: boolean): VmSpec {
    const name = `guest-${generation}`;
    return {
      ...this.options.baseSpec,
      qemuBinary: generation > 0 && this.options.destQemuBinary ? this.options.destQemuBinary : this.options.baseSpec.qemuBinary,
      ...(generation > 0 && this.machine ? { machine: this.machine } : {}),
      name,
      tap: this.options.taps[generation % 2]!,
      incoming,
      consoleSocket: this.options.guestConsole ? path.join(this.options.baseSpec.runDir, `${name}.console`) : undefined,
    };
  }

  /** Post-copy can start only once the migration is active. */
  private async startPostcopy(source: QemuVm): Promise<void> {
    const deadline = Date.now() + this.options.timeoutMs;
    while (Date.now() < deadline) {
      const reply = await source.qmp.execute<QueryMigrateReply>('query-migrate');
      if (reply.status === 'active') {
        await source.qmp.execute('migrate-start-postcopy');
        return;
      }
      if (reply.status === 'completed' || reply.status === 'failed') return;
      await sleep(this.options.pollMs);
    }
  }

  private async continueWhenMigrated(destination: QemuVm): Promise<void> {
    const deadline = Date.now() + this.options.timeoutMs;
    while (Date.now() < deadline) {
      const status = await destination.qmp.execute<{ status?: string }>('query-status');
      if (status.status === 'paused' || status.status === 'postmigrate' || status.status === 'prelaunch') {
        await destination.qmp.execute('cont');
        return;
      }
      if (status.status === 'running') return;
      await sleep(this.options.pollMs);
    }
    throw new MigrationFailedError('the destination never arrived paused, so it could not be continued');
  }
}

/** QEMU's own figures of a completed migration, as a MigrationTiming carries them. */
export function qemuFigures(reply: QueryMigrateReply): Pick<MigrationTiming, 'totalMs' | 'downtimeMs' | 'setupMs' | 'transferredBytes'> {
  return { totalMs: reply['total-time'] ?? null, downtimeMs: reply.downtime ?? null, setupMs: reply['setup-time'] ?? null, transferredBytes: reply.ram?.transferred ?? null };
}

/**
 * Polls `query-migrate` until the migration is over. QEMU 7.2 can answer `completed` with total-time 0 for a moment
 * before it fills in the figures (lab notes), so a completed reply without a total time is asked again.
 */
export async function waitForMigration(source: QmpClient, timeoutMs: number, pollMs: number): Promise<QueryMigrateReply> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const reply = await source.execute<QueryMigrateReply>('query-migrate');
    if (reply.status === 'completed' && (reply['total-time'] ?? 0) > 0) return reply;
    if (reply.status === 'failed' || reply.status === 'cancelled') {
      throw new MigrationFailedError(`migration ${reply.status}: ${reply['error-desc'] ?? 'QEMU gave no reason'}`);
    }
    await sleep(pollMs);
  }
  throw new MigrationFailedError(`migration did not complete within ${timeoutMs} ms`);
}

export async function waitUntilRunning(destination: QmpClient, timeoutMs: number, pollMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const status = await destination.execute<{ status?: string }>('query-status');
    if (status.status === 'running') return;
    await sleep(pollMs);
  }
  throw new MigrationFailedError(`destination did not start running within ${timeoutMs} ms`);
}
