import { setTimeout as sleep } from 'node:timers/promises';
import { QemuVm, type VmSpec } from '../qemu/qemu-vm.js';
import { hostNowMs } from '../host-clock.js';
import type { MigrationDriver, MigrationTiming } from './migration-driver.js';

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
  baseSpec: Omit<VmSpec, 'name' | 'tap' | 'incoming'>;
  /** Two taps on the lab bridge: source and destination swap at each migration. */
  taps: readonly [string, string];
  /** Where the destination listens; inside the lab namespace this is its own loopback. */
  migrationHost: string;
  migrationPortBase: number;
  timeoutMs: number;
  pollMs: number;
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
  private current: QemuVm | null = null;
  private generation = 0;

  constructor(private readonly options: QmpDriverOptions) {}

  get vm(): QemuVm {
    if (!this.current) throw new Error('qmp driver: no guest running (prepare() first)');
    return this.current;
  }

  async prepare(): Promise<void> {
    this.current = await QemuVm.launch(this.specFor(0, false));
  }

  async migrate(): Promise<MigrationTiming> {
    const source = this.vm;
    const generation = this.generation + 1;
    const destination = await QemuVm.launch(this.specFor(generation, true));
    try {
      const uri = `tcp:${this.options.migrationHost}:${this.options.migrationPortBase + (generation % 100)}`;
      await destination.qmp.execute('migrate-incoming', { uri });
      const startedAtMs = hostNowMs();
      await source.qmp.execute('migrate', { uri });
      const reply = await this.waitForCompletion(source);
      const completedAtMs = hostNowMs();
      await this.waitForRunning(destination);
      await source.stop();
      this.current = destination;
      this.generation = generation;
      return {
        startedAtMs,
        completedAtMs,
        totalMs: reply['total-time'] ?? null,
        downtimeMs: reply.downtime ?? null,
        setupMs: reply['setup-time'] ?? null,
        transferredBytes: reply.ram?.transferred ?? null,
      };
    } catch (error) {
      await destination.stop().catch(() => undefined);
      throw error;
    }
  }

  async cleanup(): Promise<void> {
    await this.current?.stop();
    this.current = null;
  }

  private specFor(generation: number, incoming: boolean): VmSpec {
    return {
      ...this.options.baseSpec,
      name: `guest-${generation}`,
      tap: this.options.taps[generation % 2]!,
      incoming,
    };
  }

  /**
   * Polls `query-migrate`. QEMU 7.2 can answer `completed` with total-time 0 for a moment before it fills in the
   * figures (lab notes), so a completed reply without a total time is asked again.
   */
  private async waitForCompletion(source: QemuVm): Promise<QueryMigrateReply> {
    const deadline = Date.now() + this.options.timeoutMs;
    while (Date.now() < deadline) {
      const reply = await source.qmp.execute<QueryMigrateReply>('query-migrate');
      if (reply.status === 'completed' && (reply['total-time'] ?? 0) > 0) return reply;
      if (reply.status === 'failed' || reply.status === 'cancelled') {
        throw new MigrationFailedError(`migration ${reply.status}: ${reply['error-desc'] ?? 'QEMU gave no reason'}`);
      }
      await sleep(this.options.pollMs);
    }
    throw new MigrationFailedError(`migration did not complete within ${this.options.timeoutMs} ms`);
  }

  private async waitForRunning(destination: QemuVm): Promise<void> {
    const deadline = Date.now() + this.options.timeoutMs;
    while (Date.now() < deadline) {
      const status = await destination.qmp.execute<{ status?: string }>('query-status');
      if (status.status === 'running') return;
      await sleep(this.options.pollMs);
    }
    throw new MigrationFailedError(`destination did not start running within ${this.options.timeoutMs} ms`);
  }
}
