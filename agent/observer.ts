import type { Observation } from '../contract/observation.js';
import { ProbeUnavailableError, type Probe } from '../probes/probe.js';
import { stampNow } from '../probes/clock/read-clocks.js';

/**
 * Starts the probes and funnels everything they see into one stream. A probe that cannot start is reported as
 * unavailable (or failed) and the others carry on.
 */
export class Observer {
  private readonly running: Probe[] = [];

  constructor(
    private readonly probes: readonly Probe[],
    private readonly sink: (observation: Observation) => void,
  ) {}

  async start(): Promise<void> {
    for (const probe of this.probes) {
      try {
        await probe.start(this.sink);
        this.running.push(probe);
        this.sink({ kind: 'probe-status', probe: probe.name, status: 'running', at: stampNow() });
      } catch (error) {
        const unavailable = error instanceof ProbeUnavailableError;
        this.sink({
          kind: 'probe-status',
          probe: probe.name,
          status: unavailable ? 'unavailable' : 'failed',
          reason: unavailable ? error.reason : (error as Error).message,
          at: stampNow(),
        });
      }
    }
  }

  /**
   * Every probe's current state, read once with nothing kept running (`snapshot`): a probe that cannot start says
   * why, as it would in start(), and the others are read.
   */
  static async snapshot(probes: readonly Probe[]): Promise<Record<string, unknown>> {
    const states: Record<string, unknown> = {};
    for (const probe of probes) {
      try {
        await probe.start(() => undefined);
        states[probe.name] = await probe.snapshot();
      } catch (error) {
        states[probe.name] = error instanceof ProbeUnavailableError ? { unavailable: error.reason } : { failed: (error as Error).message };
      } finally {
        await probe.stop();
      }
    }
    return states;
  }

  /** Tells every running probe that something happened (Probe.attend): the polling ones look now, and closely. */
  attend(): void {
    for (const probe of this.running) probe.attend?.();
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.running.map((probe) => probe.stop()));
    this.running.length = 0;
  }
}
