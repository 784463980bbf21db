import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RejectReason } from '../../contract/messages.js';
import { REMEDIATION_RESULTS } from '../../contract/report-schema.js';

const SAFETY_NET_RESULTS = new Set<string>(REMEDIATION_RESULTS);

/**
 * The collector's Prometheus metrics (prom-client), named the node_exporter way: a `flinch_` prefix, base units,
 * `_total` for counters. Each collector has its own registry, so several can live in one process (tests, sharding).
 */
export class CollectorMetrics {
  readonly registry = new Registry();
  readonly agentsConnected = new Gauge({ name: 'flinch_agents_connected', help: 'Agents with an authenticated connection', registers: [this.registry] });
  readonly connectionsPending = new Gauge({ name: 'flinch_connections_pending', help: 'Connections that have not said hello yet', registers: [this.registry] });
  readonly reports = new Counter({ name: 'flinch_reports_total', help: 'Reports stored, by verdict', labelNames: ['verdict'] as const, registers: [this.registry] });
  readonly duplicates = new Counter({ name: 'flinch_duplicates_total', help: 'Data messages received again after being stored (re-sent after a lost ack); acknowledged, not stored', registers: [this.registry] });
  readonly observations = new Counter({ name: 'flinch_observations_total', help: 'Observations received', registers: [this.registry] });
  readonly safetyNetActions = new Counter({
    name: 'flinch_safety_net_actions_total',
    help: "Agents' safety-net actions as they happened, by result (left-alone: a change no migration explains, also outside any episode)",
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly spoolDropped = new Counter({ name: 'flinch_agent_spool_dropped_total', help: 'Entries agents report having dropped from a full spool', registers: [this.registry] });
  readonly rejected = new Counter({ name: 'flinch_rejected_total', help: 'Connections closed for a bad frame or behaviour, by reason', labelNames: ['reason'] as const, registers: [this.registry] });
  readonly ingestSeconds = new Histogram({
    name: 'flinch_ingest_seconds',
    help: 'From a data frame arriving to its batch being committed to the store',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  /** `result` comes off the wire: only the values agents send become labels, so a peer cannot grow the series. */
  safetyNetAction(result: unknown): void {
    this.safetyNetActions.inc({ result: typeof result === 'string' && SAFETY_NET_RESULTS.has(result) ? result : 'other' });
  }

  reject(reason: RejectReason): void {
    this.rejected.inc({ reason });
  }
}
