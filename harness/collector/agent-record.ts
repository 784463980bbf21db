import type { Observation } from '../../contract/observation.js';
import type { HelloMessage } from '../../contract/messages.js';
import type { ClockOffsetTracker } from '../../contract/clock-offset.js';
import type { Report } from '../../contract/report-schema.js';

export interface ReceivedObservation {
  /** Host time the collector received it: how the harness places it relative to a migration. */
  receivedAtMs: number;
  seq: number;
  observation: Observation;
}

/** What the collector knows of one agent across its connections. */
export interface AgentRecord {
  agentId: string;
  hello: HelloMessage;
  connections: number;
  /** Kept only with keepInMemory (the lab); a fleet collector stores reports and counts observations. */
  observations: ReceivedObservation[];
  reports: Array<{ receivedAtMs: number; seq: number; report: Report }>;
  offsets: ClockOffsetTracker;
  /** Highest seq applied: stored, or queued in a batch not yet committed (what a duplicate is told apart by). */
  appliedSeq: number;
  /** Highest seq known to be in the store: all that an ack may cover, while a later batch is still being committed. */
  storedSeq: number;
}
