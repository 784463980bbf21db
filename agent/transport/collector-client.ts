import { randomBytes } from 'node:crypto';
import WebSocket from 'ws';
import { observationError, type Observation } from '../../contract/observation.js';
import type { TimeExchange } from '../../contract/clock-offset.js';
import type { Report } from '../../contract/report-schema.js';
import { GUEST_SYSTEM_SINCE_PROTOCOL, INSTANCE_SINCE_PROTOCOL, MAX_COLLECTOR_FRAME_BYTES, ProtocolError, SUPPORTED_PROTOCOLS, parseCollectorMessage, type AgentIdentity, type AgentMessage } from '../../contract/messages.js';
import { signFrame, verifyCollectorFrame } from '../../contract/frame-signing.js';
import type { Spool } from './spool.js';

/** This process, told apart from the same agent started again (a crash, a restart): drawn once, at load. */
const AGENT_INSTANCE = randomBytes(8).toString('hex');

export interface CollectorClientOptions {
  /**
   * The collectors to use, in order of preference. With one, the agent waits for it; with several (collectors that
   * share one store), it moves to the next when one is gone and back to an earlier one once that answers again.
   */
  urls: readonly string[];
  /** While on a later collector, how often an earlier one is checked for being back (default FAILBACK_CHECK_MS). */
  failbackCheckMs?: number;
  /** Who the agent is, asked at each connection (the domid and MACs can change between two). */
  identity: () => AgentIdentity;
  /** The agent's signing key (its token file), or null for a collector run with --no-auth. */
  key: string | null;
  /** The hello's `instance` (default: this process's, drawn at load); a test gives another to play a restarted agent. */
  instance?: string;
  /** PEM CA bundle to trust for wss://, beside the system's. */
  ca?: Buffer;
  spool: Spool;
  minBackoffMs: number;
  maxBackoffMs: number;
  /** Without a frame or ping from the collector for this long, the connection is presumed dead and replaced. */
  livenessTimeoutMs: number;
  log: (line: string) => void;
  /** Each completed time exchange (all four stamps), for the agent's own view of its offset against the host. */
  onTimeExchange?: (exchange: TimeExchange) => void;
  /**
   * A harness announced a migration (signed, when the agent has a key). Unset: announcements are ignored. At most
   * MAX_ANNOUNCES_PER_MINUTE are passed on; the rest are dropped and logged.
   */
  onAnnounce?: (phase: 'starting' | 'finished', migrationId: string) => void;
  /** An established connection was lost: the guest's applications would have seen the same. */
  onConnectionLost?: (detail: string) => void;
  /**
   * The agent replaced a connection that had not failed but stalled after this guest was paused (see
   * RESUME_CHECK_MS): the guest's own TCP connections would have stalled as long, not been reset.
   */
  onConnectionReplaced?: (detail: string) => void;
  /** After a pause of the guest, how long a ping may go unanswered before the connection is replaced (ms). */
  resumeCheckMs?: number;
  /**
   * The agent is connected to another collector than before (it moved, or moved back): another host, whose clock the
   * offsets measured so far do not describe.
   */
  onCollectorChanged?: (url: string) => void;
  /** Every acknowledgement, after the spool has forgotten what it covers (tests and metrics). */
  onAck?: (seq: number) => void;
}

export const DEFAULT_LIVENESS_TIMEOUT_MS = 45_000;
/**
 * After this guest was paused or suspended, the collector's side of the connection may take a long time to speak
 * again: the data it sent into the pause is retransmitted only when its backed-off retransmission timer fires, tens of
 * seconds after a 30 s freeze, and everything it sends meanwhile (a migration's "finished", acks) waits behind it. So
 * after a pause the agent pings, and replaces a connection that does not answer within this time; the new one gets
 * the latest announcement again from the collector.
 */
export const RESUME_CHECK_MS = 5000;
/** A liveness tick this much later than due means this guest was paused (or suspended) meanwhile. */
const PAUSE_GAP_MS = 3000;
const LIVENESS_TICK_MS = 1000;
/**
 * What was not acknowledged is re-sent at most this many frames at a time, RESEND_INTERVAL_MS apart: about 1 700 a
 * second, under the collector's 2 000 a second per connection. Sent all at once, a backlog of more than the
 * collector's burst (4 000) was refused as a rate violation on every connection, and delivered only by reconnecting.
 */
export const RESEND_BATCH = 500;
export const RESEND_INTERVAL_MS = 300;

/** How often an agent on a fallback collector checks whether an earlier one is back. */
export const FAILBACK_CHECK_MS = 30_000;
/** How long a collector checked for being back has to send its challenge. */
const FAILBACK_PROBE_TIMEOUT_MS = 5000;

/** A campaign announces each migration twice (starting, finished), seconds apart; more than this is not a harness. */
export const MAX_ANNOUNCES_PER_MINUTE = 20;

/**
 * Delivers the agent's observations and reports at least once. Each goes into the on-disk spool first, is sent when a
 * connection is up and authenticated, and is forgotten only when the collector acknowledges it; every new connection
 * re-sends what is unacknowledged, oldest first, and the collector drops what it already stored. Reconnects with
 * jittered exponential backoff, and replaces a connection that has gone silent.
 */
export class CollectorClient {
  private socket: WebSocket | null = null;
  /** The nonce of the connection that has been greeted; null until then. */
  private nonce: string | null = null;
  private attempt = 0;
  /** Which of options.urls the current (or next) connection goes to. */
  private index = 0;
  /** Set while the agent closes a working connection to go back to an earlier collector: not a loss. */
  private movingBack = false;
  private failbackTimer: NodeJS.Timeout | null = null;
  private failbackProbe: WebSocket | null = null;
  /** The collector of the last greeted connection. */
  private greetedUrl: string | null = null;
  /** The highest seq written on the current connection; while the backlog is re-sent, new data waits in the spool. */
  private sentSeq = 0;
  private resendTimer: NodeJS.Timeout | null = null;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private livenessTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private failuresSinceLog = 0;
  private lastFailureLogged = '';
  /** Our half of recent exchanges, until the collector tells us when our reply arrived. */
  private readonly exchanges = new Map<number, { t1: number; t2: number; t3: number }>();
  private readonly recentAnnounces: number[] = [];

  constructor(private readonly options: CollectorClientOptions) {}

  start(): void {
    this.connect();
  }

  send(observation: Observation): void {
    // What the collector would refuse (and disconnect for, again on every resend from the spool) never enters it.
    const error = observationError(observation);
    if (error) return this.options.log(`not sent to the collector: ${error}`);
    this.deliver(this.options.spool.append({ type: 'observation', observation }));
  }

  sendReport(report: Report): void {
    this.deliver(this.options.spool.append({ type: 'report', report }));
  }

  get connected(): boolean {
    return this.nonce !== null;
  }

  close(): void {
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    this.stopFailback();
    this.stopResend();
    this.socket?.close(1000, 'agent stopping');
  }

  private deliver(message: AgentMessage & { seq: number }): void {
    // While the backlog is still going out, this waits its turn in the spool: seqs go out in order.
    if (this.nonce === null || this.resendTimer !== null) return;
    this.write(message);
    this.sentSeq = message.seq;
  }

  /** The collector the current (or next) connection goes to. */
  get url(): string {
    return this.options.urls[this.index]!;
  }

  private connect(): void {
    const socket = new WebSocket(this.url, { maxPayload: MAX_COLLECTOR_FRAME_BYTES, handshakeTimeout: 5000, ca: this.options.ca });
    this.socket = socket;
    this.nonce = null;
    let failure = '';
    let established = false;
    let lastHeard = Date.now();
    let lastCheck = Date.now();
    /** When the ping that checks the connection after a pause went out; null when no check is outstanding. */
    let checkingSince: number | null = null;
    let stalled = false;
    const heard = () => {
      lastHeard = Date.now();
      checkingSince = null;
    };
    socket.on('ping', heard);
    socket.on('pong', heard);
    socket.on('open', heard);
    const tickMs = Math.max(100, Math.min(LIVENESS_TICK_MS, Math.floor(this.options.livenessTimeoutMs / 4)));
    const resumeCheckMs = this.options.resumeCheckMs ?? RESUME_CHECK_MS;
    this.livenessTimer = setInterval(() => {
      const now = Date.now();
      const pausedMs = now - lastCheck - tickMs;
      lastCheck = now;
      // A check that comes late means this guest was paused (a migration): silence during the pause proves nothing.
      if (pausedMs > this.options.livenessTimeoutMs / 2) lastHeard = now;
      if (pausedMs > PAUSE_GAP_MS && established && checkingSince === null && socket.readyState === WebSocket.OPEN) {
        checkingSince = now;
        socket.ping();
      } else if (checkingSince !== null && now - checkingSince > resumeCheckMs) {
        stalled = true;
        failure = `no answer within ${Math.round(resumeCheckMs / 1000)} s to a ping after this guest was paused: the connection stalled`;
        socket.terminate();
      } else if (now - lastHeard > this.options.livenessTimeoutMs) {
        failure = `no frame or ping from the collector for ${Math.round((now - lastHeard) / 1000)} s`;
        socket.terminate();
      }
    }, tickMs);
    socket.on('message', (data, isBinary) => {
      const received = Date.now();
      heard();
      if (isBinary) return this.options.log('ignored a binary frame from the collector');
      try {
        const key = this.options.key;
        const nonce = this.socket === socket ? this.nonce : null;
        const message = parseCollectorMessage(data as Buffer, key === null ? null : (json, mac) => nonce !== null && verifyCollectorFrame(key, nonce, json, mac));
        switch (message.type) {
          case 'challenge':
            if (!SUPPORTED_PROTOCOLS.includes(message.protocol)) {
              failure = `the collector speaks protocol ${message.protocol}, this agent ${SUPPORTED_PROTOCOLS.join(', ')}`;
              socket.close(1002, 'protocol');
              return;
            }
            this.greet(socket, message.nonce, message.protocol);
            established = true;
            return;
          case 'ack': {
            // An ack for what was never sent would make the spool forget data nobody stored.
            const sent = this.options.spool.lastSeq;
            if (message.seq > sent) {
              this.options.log(`ignored an ack for seq ${message.seq}: only ${sent} sent`);
              return;
            }
            this.options.spool.acknowledge(message.seq);
            this.options.onAck?.(message.seq);
            return;
          }
          case 'announce':
            if (!this.options.onAnnounce) return;
            if (!this.takeAnnounce()) {
              this.options.log(`ignored an announcement (more than ${MAX_ANNOUNCES_PER_MINUTE} a minute)`);
              return;
            }
            this.options.onAnnounce(message.phase, message.migrationId);
            return;
          case 'time-probe': {
            const t3 = Date.now();
            this.write({ type: 'time-reply', id: message.id, t1: message.t1, t2: received, t3 });
            this.completeExchange(message.previous);
            this.exchanges.set(message.id, { t1: message.t1, t2: received, t3 });
            return;
          }
        }
      } catch (error) {
        if (error instanceof ProtocolError) this.options.log(`ignored a message from the collector: ${error.message}`);
        else throw error;
      }
    });
    socket.on('error', (error) => {
      failure = error.message;
    });
    socket.on('close', (code, reason) => {
      if (this.livenessTimer) clearInterval(this.livenessTimer);
      this.stopFailback();
      this.stopResend();
      if (this.socket === socket) {
        this.socket = null;
        this.nonce = null;
      }
      if (this.closed) return;
      if (this.movingBack) {
        // Our own choice, not a failure: straight to the earlier collector, which has just answered.
        this.movingBack = false;
        this.reconnectTimer = setTimeout(() => this.connect(), 0);
        return;
      }
      if (established && stalled) this.options.onConnectionReplaced?.(failure);
      else if (established) this.options.onConnectionLost?.(failure || `closed with code ${code}${reason.length ? ` (${reason.toString()})` : ''}`);
      const from = this.url;
      const delay = this.nextCollector();
      if (this.url !== from) {
        this.options.log(`collector ${from}: ${failure || `closed (${code})`}; moving to ${this.url} (${this.options.spool.unacked.length} unacknowledged)`);
        this.reconnectTimer = setTimeout(() => this.connect(), delay);
        return;
      }
      this.failuresSinceLog += 1;
      // One line for the first failure, then one every ten, so a long outage does not flood the journal; and one
      // whenever the reason changes (a collector that came back speaking another protocol is not the same outage).
      const why = failure || `closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`;
      if (this.failuresSinceLog === 1 || this.failuresSinceLog % 10 === 0 || why !== this.lastFailureLogged) {
        this.lastFailureLogged = why;
        this.options.log(`collector ${this.url}: ${why}; retrying in ${(delay / 1000).toFixed(1)} s (${this.options.spool.unacked.length} unacknowledged)`);
      }
      this.reconnectTimer = setTimeout(() => this.connect(), delay);
    });
  }

  /** Answers the challenge and re-sends everything not yet acknowledged, oldest first. */
  private greet(socket: WebSocket, nonce: string, protocol: number): void {
    if (this.socket !== socket) return;
    if (this.attempt > 0) this.options.log(`connected to ${this.url} after ${this.attempt} failed attempt(s)`);
    this.attempt = 0;
    this.failuresSinceLog = 0;
    this.nonce = nonce;
    if (this.greetedUrl !== null && this.greetedUrl !== this.url) this.options.onCollectorChanged?.(this.url);
    this.greetedUrl = this.url;
    if (this.index > 0) this.scheduleFailback();
    // In the collector's protocol: one that speaks 2 refuses a hello with a field it does not know.
    const { guest, ...identity } = this.options.identity();
    this.write({
      type: 'hello', protocol, ...identity, ...(guest && protocol >= GUEST_SYSTEM_SINCE_PROTOCOL ? { guest } : {}),
      ...(protocol >= INSTANCE_SINCE_PROTOCOL ? { instance: this.options.instance ?? AGENT_INSTANCE } : {}),
      nonce, stream: this.options.spool.streamId, spoolDropped: this.options.spool.dropped,
    });
    this.sentSeq = 0;
    this.resend();
  }

  /** Writes the next slice of what is not acknowledged (and not yet written here), and schedules the next if any is left. */
  private resend(): void {
    this.resendTimer = null;
    if (this.nonce === null) return;
    const pending = this.options.spool.unacked;
    let from = firstAfter(pending, this.sentSeq);
    for (const end = Math.min(pending.length, from + RESEND_BATCH); from < end; from += 1) {
      this.write(pending[from]!);
      this.sentSeq = pending[from]!.seq;
    }
    if (from < pending.length) this.resendTimer = setTimeout(() => this.resend(), RESEND_INTERVAL_MS);
  }

  private stopResend(): void {
    if (this.resendTimer) clearTimeout(this.resendTimer);
    this.resendTimer = null;
  }

  private takeAnnounce(): boolean {
    const now = Date.now();
    while (this.recentAnnounces.length > 0 && now - this.recentAnnounces[0]! > 60_000) this.recentAnnounces.shift();
    if (this.recentAnnounces.length >= MAX_ANNOUNCES_PER_MINUTE) return false;
    this.recentAnnounces.push(now);
    return true;
  }

  private completeExchange(previous: { id: number; t4: number } | undefined): void {
    if (previous) {
      const half = this.exchanges.get(previous.id);
      if (half) this.options.onTimeExchange?.({ ...half, t4: previous.t4 });
    }
    // Keep only the last few: a collector that never returns t4 must not grow this.
    for (const id of this.exchanges.keys()) if (this.exchanges.size > 4) this.exchanges.delete(id);
  }

  /**
   * After a failed or lost connection: the next collector in order, soon (a moment's jitter, so that a fleet whose
   * collector died does not arrive at the next one in the same millisecond); once every collector has failed in a
   * row, the first again after the usual exponential backoff.
   */
  private nextCollector(): number {
    const count = this.options.urls.length;
    if (count > 1) {
      this.index = (this.index + 1) % count;
      if (this.index !== 0) return Math.round(this.options.minBackoffMs / 2 + Math.random() * this.options.minBackoffMs / 2);
    }
    this.attempt += 1;
    return this.backoffMs();
  }

  /** On a fallback collector: now and then, see whether an earlier one answers again, and go back to it if so. */
  private scheduleFailback(): void {
    this.stopFailback();
    const every = this.options.failbackCheckMs ?? FAILBACK_CHECK_MS;
    this.failbackTimer = setTimeout(() => this.checkFailback(0), Math.round(every * (0.75 + Math.random() / 2)));
  }

  private checkFailback(candidate: number): void {
    this.failbackTimer = null;
    if (this.closed || this.nonce === null || candidate >= this.index) return this.scheduleFailback();
    const url = this.options.urls[candidate]!;
    const probe = new WebSocket(url, { maxPayload: MAX_COLLECTOR_FRAME_BYTES, handshakeTimeout: FAILBACK_PROBE_TIMEOUT_MS, ca: this.options.ca });
    this.failbackProbe = probe;
    let answered = false;
    const timer = setTimeout(() => probe.terminate(), FAILBACK_PROBE_TIMEOUT_MS);
    probe.on('error', () => undefined);
    // A collector is back when it sends its challenge: the TCP port alone could be anything.
    probe.once('message', () => {
      answered = true;
      probe.close(1000, 'checking that the collector is back');
    });
    probe.once('close', () => {
      clearTimeout(timer);
      if (this.failbackProbe === probe) this.failbackProbe = null;
      if (this.closed || this.nonce === null) return;
      if (!answered) return this.checkFailback(candidate + 1);
      this.options.log(`collector ${url} answers again; moving back from ${this.url}`);
      this.index = candidate;
      this.movingBack = true;
      this.socket?.close(1000, 'moving back to a preferred collector');
    });
  }

  private stopFailback(): void {
    if (this.failbackTimer) clearTimeout(this.failbackTimer);
    this.failbackTimer = null;
    this.failbackProbe?.terminate();
    this.failbackProbe = null;
  }

  private backoffMs(): number {
    const ceiling = Math.min(this.options.maxBackoffMs, this.options.minBackoffMs * 2 ** Math.min(this.attempt - 1, 16));
    // Full jitter keeps a fleet that lost its collector at once from reconnecting in lock step.
    return Math.round(this.options.minBackoffMs / 2 + Math.random() * (ceiling - this.options.minBackoffMs / 2));
  }

  /** Nothing is lost when a write fails: data stays in the spool until acknowledged, and the next connection re-sends it. */
  private write(message: AgentMessage): void {
    const socket = this.socket;
    const nonce = this.nonce;
    if (!socket || nonce === null || socket.readyState !== WebSocket.OPEN) return;
    const json = JSON.stringify(message);
    socket.send(this.options.key === null ? json : signFrame(this.options.key, nonce, json));
  }
}

/** The index of the first message with a seq above `seq` (messages in seq order). */
function firstAfter(messages: ReadonlyArray<{ seq: number }>, seq: number): number {
  let low = 0;
  let high = messages.length;
  while (low < high) {
    const middle = (low + high) >> 1;
    if (messages[middle]!.seq <= seq) low = middle + 1;
    else high = middle;
  }
  return low;
}
