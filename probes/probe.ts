import type { Observation } from '../contract/observation.js';

/**
 * The one interface every probe implements (the node_exporter collector model): the core starts and stops probes
 * and forwards what they emit, and never needs to know which probes exist.
 */
export interface Probe<Snapshot = unknown> {
  readonly name: string;
  /** Starts watching. Rejects with a ProbeUnavailableError when the probe cannot run on this guest. */
  start(emit: (observation: Observation) => void): Promise<void>;
  stop(): Promise<void>;
  /**
   * Something happened elsewhere in the guest (an episode trigger, a harness's announcement). A probe that has to poll
   * what it watches reads it now and polls it closely for a while; a probe with change events has nothing to do.
   */
  attend?(): void;
  /** The probe's current view of the state it watches. */
  snapshot(): Promise<Snapshot>;
}

/** A probe that cannot run here (tool missing, no permission, wrong platform). The others carry on. */
export class ProbeUnavailableError extends Error {
  constructor(
    readonly probe: string,
    readonly reason: string,
  ) {
    super(`${probe}: unavailable: ${reason}`);
    this.name = 'ProbeUnavailableError';
  }
}
