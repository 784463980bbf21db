import WebSocket from 'ws';
import type { Observation } from '../../probes/observation.js';
import type { TimeExchange } from '../../probes/clock/clock-offset.js';
import type { Report } from '../report/report-schema.js';
import {
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  parseCollectorMessage,
  type AgentMessage,
  type HelloMessage,
} from '../protocol/messages.js';

export interface CollectorClientOptions {
  url: string;
  hello: Omit<HelloMessage, 'type' | 'protocol'>;
  /** Observations kept while disconnected; past this the oldest are dropped and counted. */
  maxQueued: number;
  minBackoffMs: number;
  maxBackoffMs: number;
  log: (line: string) => void;
  /** Each completed time exchange (all four stamps), for the agent's own view of its offset against the host. */
  onTimeExchange?: (exchange: TimeExchange) => void;
  /** A harness announced a migration. */
  onAnnounce?: (phase: 'starting' | 'finished', migrationId: string) => void;
  /** An established connection was lost: the guest's applications would have seen the same. */
  onConnectionLost?: (detail: string) => void;
}

export const DEFAULT_QUEUE_LIMIT = 10_000;

/** What waits in the queue while the collector is unreachable. */
type Outbound = { kind: 'observation'; observation: Observation } | { kind: 'report'; report: Report };

/**
 * Streams observations to a collector and keeps them while it cannot: a migration pauses the guest and some networks
 * reset its connections at exactly the moment there is most to report. Reconnects with jittered exponential backoff.
 */
export class CollectorClient {
  private socket: WebSocket | null = null;
  private readonly queue: Outbound[] = [];
  private seq = 0;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private failuresSinceLog = 0;
  /** Our half of recent exchanges, until the collector tells us when our reply arrived. */
  private readonly exchanges = new Map<number, { t1: number; t2: number; t3: number }>();
  /** Observations dropped because the queue was full while disconnected. Never silent: logged and reported. */
  dropped = 0;

  constructor(private readonly options: CollectorClientOptions) {}

  start(): void {
    this.connect();
  }

  send(observation: Observation): void {
    this.sendOrQueue({ kind: 'observation', observation });
  }

  sendReport(report: Report): void {
    this.sendOrQueue({ kind: 'report', report });
  }

  private sendOrQueue(item: Outbound): void {
    if (this.socket?.readyState === WebSocket.OPEN) {
      this.sendItem(item);
      return;
    }
    this.enqueue(item);
  }

  private enqueue(item: Outbound): void {
    this.queue.push(item);
    if (this.queue.length > this.options.maxQueued) {
      this.queue.shift();
      this.dropped += 1;
      if (this.dropped === 1 || this.dropped % 1000 === 0) {
        this.options.log(`collector unreachable and queue full (${this.options.maxQueued}): ${this.dropped} oldest observations dropped`);
      }
    }
  }

  get queued(): number {
    return this.queue.length;
  }

  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.socket?.close(1000, 'agent stopping');
  }

  private connect(): void {
    const socket = new WebSocket(this.options.url, { maxPayload: MAX_FRAME_BYTES, handshakeTimeout: 5000 });
    this.socket = socket;
    let failure = '';
    let established = false;
    socket.on('open', () => {
      established = true;
      if (this.attempt > 0) this.options.log(`connected to ${this.options.url} after ${this.attempt} failed attempt(s)`);
      this.attempt = 0;
      this.failuresSinceLog = 0;
      this.write({ type: 'hello', protocol: PROTOCOL_VERSION, ...this.options.hello });
      // Drain in order; anything sent meanwhile goes behind what was queued because the socket is open now.
      const backlog = this.queue.splice(0, this.queue.length);
      for (const item of backlog) this.sendItem(item);
    });
    socket.on('message', (data, isBinary) => {
      const received = Date.now();
      if (isBinary) return this.options.log('ignored a binary frame from the collector');
      try {
        const message = parseCollectorMessage(data as Buffer);
        if (message.type === 'announce') {
          this.options.onAnnounce?.(message.phase, message.migrationId);
          return;
        }
        const t3 = Date.now();
        this.write({ type: 'time-reply', id: message.id, t1: message.t1, t2: received, t3 });
        this.completeExchange(message.previous);
        this.exchanges.set(message.id, { t1: message.t1, t2: received, t3 });
      } catch (error) {
        if (error instanceof ProtocolError) this.options.log(`ignored a message from the collector: ${error.message}`);
        else throw error;
      }
    });
    socket.on('error', (error) => {
      failure = error.message;
    });
    socket.on('close', (code, reason) => {
      if (this.socket === socket) this.socket = null;
      if (this.closed) return;
      if (established) this.options.onConnectionLost?.(failure || `closed with code ${code}`);
      this.attempt += 1;
      const delay = this.backoffMs();
      this.failuresSinceLog += 1;
      // One line for the first failure, then one every ten, so a long outage does not flood the journal.
      if (this.failuresSinceLog === 1 || this.failuresSinceLog % 10 === 0) {
        const why = failure || `closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`;
        this.options.log(
          `collector ${this.options.url}: ${why}; retrying in ${(delay / 1000).toFixed(1)} s (${this.queue.length} queued)`,
        );
      }
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  private completeExchange(previous: { id: number; t4: number } | undefined): void {
    if (previous) {
      const half = this.exchanges.get(previous.id);
      if (half) this.options.onTimeExchange?.({ ...half, t4: previous.t4 });
    }
    // Keep only the last few: a collector that never returns t4 must not grow this.
    for (const id of this.exchanges.keys()) if (this.exchanges.size > 4) this.exchanges.delete(id);
  }

  private backoffMs(): number {
    const ceiling = Math.min(this.options.maxBackoffMs, this.options.minBackoffMs * 2 ** Math.min(this.attempt - 1, 16));
    // Full jitter keeps a fleet that lost its collector at once from reconnecting in lock step.
    return Math.round(this.options.minBackoffMs / 2 + Math.random() * (ceiling - this.options.minBackoffMs / 2));
  }

  /** A frame the socket could not take (it closed under us) goes back to the queue instead of being lost. */
  private sendItem(item: Outbound): void {
    const message: AgentMessage = item.kind === 'observation'
      ? { type: 'observation', seq: ++this.seq, observation: item.observation }
      : { type: 'report', report: item.report };
    this.write(message, () => this.enqueue(item));
  }

  private write(message: AgentMessage, onFailure?: () => void): void {
    const socket = this.socket;
    if (!socket) return onFailure?.();
    socket.send(JSON.stringify(message), (error) => {
      if (error) onFailure?.();
    });
  }
}
