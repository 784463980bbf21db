import path from 'node:path';
import type { GuestSystem } from '../../contract/messages.js';
import type { Observation } from '../../contract/observation.js';
import type { Report } from '../../contract/report-schema.js';
import { HostOffsetTracker } from '../../probes/clock/host-offset.js';
import { stampNow } from '../../probes/clock/read-clocks.js';
import type { AgentMetrics } from '../metrics/agent-metrics.js';
import { CollectorClient, DEFAULT_LIVENESS_TIMEOUT_MS } from '../transport/collector-client.js';
import { currentIdentity } from '../transport/agent-identity.js';
import { Spool } from '../transport/spool.js';
import type { Publisher } from './publisher.js';

export interface CollectorPublisherOptions {
  /** In order of preference; more than one only for collectors that share a store (see CollectorClientOptions.urls). */
  urls: readonly string[];
  agentId: string;
  /** The agent's signing key; null streams unsigned (a collector run with --no-auth). */
  key: string | null;
  ca: Buffer | undefined;
  stateDir: string;
  spoolMaxBytes: number;
  /** Whether the harness's signed announcements are honoured: they are migration evidence, and open a repair window. */
  acceptAnnounce: boolean;
  metrics: AgentMetrics | null;
  log: (line: string) => void;
}

/** What the collector connection hands the agent: observations it makes itself, and the harness's announcements. */
export interface CollectorFeed {
  ingest(observation: Observation): void;
  announce(phase: 'starting' | 'finished', migrationId: string): void;
}

/**
 * The collector as a publisher: what the agent sees and concludes is spooled and streamed (collector-client.ts). The
 * connection makes observations of its own (the offset to the host from its time exchanges, its losses), which go
 * into the agent's pipeline like any probe's once the agent is whole and `start` connects.
 */
export class CollectorPublisher implements Publisher {
  readonly name = 'collector';
  private readonly client: CollectorClient;
  private readonly spool: Spool;
  private feed: CollectorFeed | null = null;
  private xenDomid: number | null = null;
  private guest: GuestSystem | null = null;

  constructor(options: CollectorPublisherOptions) {
    const { spoolMaxBytes, log, metrics } = options;
    this.spool = new Spool({ dir: path.join(options.stateDir, 'spool'), maxBytes: spoolMaxBytes, segmentBytes: Math.min(1024 * 1024, Math.max(4096, Math.floor(spoolMaxBytes / 8))), log });
    const hostOffset = new HostOffsetTracker();
    const ingest = (observation: Observation) => this.feed?.ingest(observation);
    this.client = new CollectorClient({
      urls: options.urls,
      // The hello names the domain the guest is in now.
      identity: () => ({ ...currentIdentity(options.agentId, this.xenDomid), ...(this.guest ? { guest: this.guest } : {}) }),
      key: options.key,
      ca: options.ca,
      spool: this.spool,
      minBackoffMs: 250,
      maxBackoffMs: 10_000,
      livenessTimeoutMs: DEFAULT_LIVENESS_TIMEOUT_MS,
      log,
      onTimeExchange: (exchange) => {
        const observation = hostOffset.add(exchange);
        if (observation) ingest(observation);
      },
      onAnnounce: options.acceptAnnounce ? (phase, migrationId) => this.feed?.announce(phase, migrationId) : undefined,
      onConnectionLost: (detail) => ingest({ kind: 'connection', event: 'reset', detail: `collector connection lost: ${detail}`, at: stampNow() }),
      onConnectionReplaced: (detail) => ingest({ kind: 'connection', event: 'closed', detail: `collector connection replaced: ${detail}`, at: stampNow() }),
      onCollectorChanged: () => hostOffset.reset(),
      onAck: () => metrics?.spool(this.spool.unacked.length, this.spool.dropped),
    });
  }

  observation(observation: Observation): void {
    if (observation.kind === 'xen' && observation.change === 'domid' && observation.value !== null && /^\d+$/.test(observation.value)) {
      this.xenDomid = Number(observation.value);
    }
    this.client.send(observation);
  }

  report(report: Report): void {
    this.client.sendReport(report);
  }

  /**
   * Connects. Only once the agent is whole (probes running, baseline taken): the hello means "ready", and what the
   * probes saw meanwhile waits in the spool.
   */
  start(feed: CollectorFeed, guest: GuestSystem | null): void {
    this.feed = feed;
    this.guest = guest;
    this.client.start();
  }

  close(): void {
    this.client.close();
  }
}
