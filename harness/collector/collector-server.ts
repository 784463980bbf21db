import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import {
  MAX_FRAME_BYTES, PROTOCOL_VERSION, ProtocolError,
  type AgentMessage, type AnnounceMessage, type CollectorMessage, type HelloMessage, type RejectReason, type TimeProbeMessage,
} from '../../contract/messages.js';
import { signCollectorFrame } from '../../contract/frame-signing.js';
import { ClockOffsetTracker, type OffsetSample } from '../../contract/clock-offset.js';
import { hostNowMs } from '../host-clock.js';
import type { Report } from '../../contract/report-schema.js';
import type { AgentRecord, ReceivedObservation } from './agent-record.js';
import { CollectorMetrics } from './collector-metrics.js';
import { authenticateFrame, type AgentKeyring, type ConnectionCredentials } from './frame-authenticator.js';
import { HelloAdmission } from './hello-admission.js';
import { IngestBatch } from './ingest-batch.js';
import { RateLimitedLog } from './rate-limited-log.js';
import { CLOSE_POLICY_VIOLATION, CLOSE_REPLACED, CLOSE_TRY_AGAIN_LATER, closeReason, FrameBucket, MAX_PRE_HELLO_FRAME_BYTES, setMaxPayload } from './frame-limits.js';
import { SPREAD_TICK_MS, SpreadSchedule } from './spread-schedule.js';
import type { FleetStore } from './store.js';


export interface CollectorOptions {
  host: string;
  port: number;
  store: FleetStore;
  /** null: no authentication (a lab on a private network, or `flinch collect --no-auth`). */
  keyring: AgentKeyring | null;
  tls?: { cert: Buffer; key: Buffer };
  /** How often each connected agent is sent a time probe. */
  timeProbeIntervalMs: number;
  log: (line: string) => void;
  keepInMemory: boolean;
  helloTimeoutMs?: number;
  /** WebSocket ping interval. */
  pingIntervalMs?: number;
  /**
   * A connection that has sent nothing, not even a pong, for this long is terminated (default 120 s). Generous on
   * purpose: a guest frozen by a save/restore or a slow live migration is silent for as long as it is frozen, and its
   * TCP connection survives that; cutting it would make the collector the cause of the loss its agent then reports.
   */
  silenceLimitMs?: number;
  /** Connections allowed to wait for their hello at once; beyond, new ones are refused. */
  maxPending?: number;
  /** Connections from one source address allowed to wait for their hello at once (default 64). */
  maxPendingPerAddress?: number;
  /** TCP connections the server holds at most, authenticated or not (Node's server.maxConnections; default 20 000). */
  maxConnections?: number;
  /** Per-connection frame rate (token bucket: this many a second, twice that in a burst). */
  maxFramesPerSecond?: number;
  /** How often the store's retention bounds are applied (default 60 s). */
  pruneIntervalMs?: number;
  /**
   * How often the store learns when each connected agent was last heard from, pongs and time replies included
   * (default 30 s): an agent with nothing to report is alive, and a rollout tells it from one that went silent.
   */
  livenessIntervalMs?: number;
  metrics?: CollectorMetrics;
}

export const DEFAULT_MAX_PENDING = 1000;
export const DEFAULT_MAX_PENDING_PER_ADDRESS = 64;
export const DEFAULT_MAX_CONNECTIONS = 20_000;

export const DEFAULT_SILENCE_LIMIT_MS = 120_000;
export const DEFAULT_LIVENESS_INTERVAL_MS = 30_000;

interface Connection {
  socket: WebSocket;
  /** The peer's address, for the per-address limit on connections waiting for their hello. */
  address: string;
  credentials: ConnectionCredentials;
  agent: AgentRecord | null;
  lastSeqHere: number;
  lastReply?: { id: number; t4: number };
  /** Date.now() of the last frame or pong from the peer. */
  lastHeardMs: number;
  frames: FrameBucket;
  rejected: boolean;
  /**
   * Frames that came after the hello while the store was still registering the agent (a store over the network
   * answers later), handled in order once it has; null when none are waiting.
   */
  held: Array<{ message: AgentMessage; receivedAtMs: number }> | null;
}

/** Frames held while a hello is being registered; an agent that sends more before its welcome is refused. */
const MAX_HELD_FRAMES = 4096;

/**
 * Receives agents' observations and reports, stores reports exactly once, acknowledges what it stored, and measures
 * each agent's clock against the host. It trusts nothing it receives: every frame is size-limited, rate-limited,
 * authenticated and validated, and a bad one closes that connection only, with a reason code, counted in
 * flinch_rejected_total and logged at a bounded rate.
 */
export class CollectorServer extends EventEmitter<{
  observation: [AgentRecord, ReceivedObservation];
  offset: [AgentRecord, OffsetSample];
  hello: [AgentRecord];
  report: [AgentRecord, Report, { receivedAtMs: number; seq: number }];
  rejected: [RejectReason, string];
  committed: [number];
}> {
  readonly agents = new Map<string, AgentRecord>();
  readonly metrics: CollectorMetrics;
  rejected = 0;
  private http: http.Server | https.Server | null = null;
  private wss: WebSocketServer | null = null;
  private probeId = 0;
  private readonly current = new Map<string, Connection>();
  private readonly connections = new WeakMap<WebSocket, Connection>();
  private readonly admission: HelloAdmission;
  private readonly batch: IngestBatch;
  private readonly rateLog: RateLimitedLog;
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly options: CollectorOptions) {
    super();
    this.metrics = options.metrics ?? new CollectorMetrics();
    this.rateLog = new RateLimitedLog(options.log);
    this.admission = new HelloAdmission(options.maxPending ?? DEFAULT_MAX_PENDING, options.maxPendingPerAddress ?? DEFAULT_MAX_PENDING_PER_ADDRESS, (n) => this.metrics.connectionsPending.set(n));
    this.batch = new IngestBatch(options.store, this.metrics, this.rateLog, {
      acknowledge: (agent) => {
        const connection = this.current.get(agent.agentId);
        if (connection && connection.socket.readyState === connection.socket.OPEN) this.send(connection, { type: 'ack', seq: agent.storedSeq });
      },
      disconnect: (agent) => this.current.get(agent.agentId)?.socket.close(1011, 'store unavailable; re-send later'),
      committed: (items) => {
        for (const item of items) {
          if (!item.report) continue;
          this.metrics.reports.inc({ verdict: item.report.verdict });
          this.emit('report', item.agent, item.report, { receivedAtMs: item.receivedAtMs, seq: item.seq });
        }
        this.emit('committed', items.length);
      },
    });
    // A lab or campaign measures from what its one agent sent; a fleet collector keeps nothing but the store.
    if (options.keepInMemory) {
      this.on('observation', (agent, received) => agent.observations.push(received));
      this.on('report', (agent, report, { receivedAtMs, seq }) => agent.reports.push({ receivedAtMs, seq, report }));
    }
  }

  async start(): Promise<AddressInfo> {
    // Node's own header and request timeouts end slow-loris connections that never finish the upgrade.
    const serverOptions = { headersTimeout: 5000, requestTimeout: 5000, connectionsCheckingInterval: 500 };
    const server = this.options.tls
      ? https.createServer({ ...serverOptions, cert: this.options.tls.cert, key: this.options.tls.key })
      : http.createServer(serverOptions);
    server.maxConnections = this.options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    server.on('request', (_request, response) => response.writeHead(426, { 'content-type': 'text/plain' }).end('flinch collector: WebSocket only\n'));
    this.http = server;
    const wss = new WebSocketServer({ server, maxPayload: MAX_PRE_HELLO_FRAME_BYTES, perMessageDeflate: false });
    this.wss = wss;
    wss.on('connection', (socket, request) => this.accept(socket, request.socket.remoteAddress ?? 'unknown'));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.options.port, this.options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Pings and time probes are spread over their interval, a slice of the connections per tick: with 10 000 agents,
    // doing them all at once stalls the event loop for long enough to show in every agent's ack latency.
    const pingEvery = this.options.pingIntervalMs ?? 15_000;
    const pings = new SpreadSchedule(pingEvery);
    const silenceLimit = this.options.silenceLimitMs ?? DEFAULT_SILENCE_LIMIT_MS;
    const probes = new SpreadSchedule(this.options.timeProbeIntervalMs);
    this.timers.push(
      setInterval(() => {
        for (const client of pings.due(wss.clients)) {
          const connection = this.connections.get(client);
          if (!connection) continue;
          if (Date.now() - connection.lastHeardMs > silenceLimit) {
            client.terminate();
            continue;
          }
          client.ping();
        }
        for (const connection of probes.due(this.current.values())) this.sendTimeProbe(connection);
      }, SPREAD_TICK_MS),
      setInterval(() => this.prune(), this.options.pruneIntervalMs ?? 60_000),
      setInterval(() => this.recordLiveness(), this.options.livenessIntervalMs ?? DEFAULT_LIVENESS_INTERVAL_MS),
    );
    this.prune();
    return server.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    await this.batch.flush();
    const wss = this.wss;
    const server = this.http;
    if (wss) {
      for (const client of wss.clients) client.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    }
    if (server) {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    this.wss = null;
    this.http = null;
    this.current.clear();
    this.metrics.agentsConnected.set(0);
    this.metrics.connectionsPending.set(0);
  }

  /** Sends `message` to the agent's current connection, signed like every frame; false when it is not connected. */
  tell(agentId: string, message: AnnounceMessage): boolean {
    const connection = this.current.get(agentId);
    if (!connection || connection.socket.readyState !== connection.socket.OPEN) return false;
    this.send(connection, message);
    return true;
  }

  get connectedAgents(): number {
    return this.current.size;
  }

  private accept(socket: WebSocket, address: string): void {
    // First of all, before any refusal: a socket's 'error' with no listener would throw out of the server (a peer
    // refused as busy that sends an oversize frame anyway).
    socket.on('error', () => undefined);
    const refusal = this.admission.admit(address);
    if (refusal !== null) {
      this.reject(null, socket, 'busy', refusal, CLOSE_TRY_AGAIN_LATER);
      return;
    }
    const connection: Connection = {
      socket, address, credentials: { nonce: randomBytes(16).toString('hex'), key: null, helloAccepted: false }, agent: null, lastSeqHere: 0, lastHeardMs: Date.now(),
      frames: new FrameBucket(this.options.maxFramesPerSecond ?? 2000), rejected: false, held: null,
    };
    this.connections.set(socket, connection);
    const helloTimer = setTimeout(() => this.reject(connection, socket, 'hello-timeout', `no hello within ${this.options.helloTimeoutMs ?? 5000} ms`), this.options.helloTimeoutMs ?? 5000);
    const heard = () => (connection.lastHeardMs = Date.now());
    socket.on('pong', heard);
    socket.on('message', heard);
    socket.on('close', () => {
      clearTimeout(helloTimer);
      if (connection.agent === null) {
        this.admission.release(address);
      } else if (this.current.get(connection.agent.agentId) === connection) {
        this.current.delete(connection.agent.agentId);
        this.metrics.agentsConnected.set(this.current.size);
        this.storeQuietly('touch', () => this.options.store.touch(connection.agent!.agentId, hostNowMs()));
      }
    });
    socket.on('error', (error: Error & { code?: string }) => {
      if (error.code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') {
        this.reject(connection, socket, 'oversize', `frame larger than ${connection.agent ? MAX_FRAME_BYTES : MAX_PRE_HELLO_FRAME_BYTES} bytes${connection.agent ? '' : ' before the hello'}`);
      }
      else if (error.code?.startsWith('WS_ERR_')) this.reject(connection, socket, 'malformed', error.message);
    });
    socket.on('message', (data, isBinary) => {
      // A refused connection is done with: what it sends after is neither parsed nor checked.
      if (connection.rejected) return;
      const receivedAtMs = hostNowMs();
      try {
        connection.frames.spend();
        if (isBinary) throw new ProtocolError('binary frames are not part of the protocol', 'binary');
        const message = authenticateFrame(this.options.keyring, connection.credentials, (data as Buffer).toString('utf8'));
        if (message.type === 'hello') {
          clearTimeout(helloTimer);
          this.welcome(connection, message);
          return;
        }
        if (connection.held) {
          if (connection.held.length >= MAX_HELD_FRAMES) throw new ProtocolError(`more than ${MAX_HELD_FRAMES} frames before the hello was answered`, 'rate-limit');
          connection.held.push({ message, receivedAtMs });
          return;
        }
        this.handle(connection, connection.agent!, message, receivedAtMs);
      } catch (error) {
        this.rejectForFrame(connection, error);
      }
    });
    socket.send(JSON.stringify({ type: 'challenge', protocol: PROTOCOL_VERSION, nonce: connection.credentials.nonce }));
  }

  /**
   * Registers the agent in the store, then tells it what is stored there. Frames that arrive meanwhile are held and
   * handled in order after; a store that cannot register the agent closes the connection, and the agent comes back.
   */
  private welcome(connection: Connection, hello: HelloMessage): void {
    connection.held = [];
    // The hello is authenticated: from here its frames are checked against the larger post-hello limit.
    setMaxPayload(connection.socket, MAX_FRAME_BYTES);
    const identity = {
      agentId: hello.agentId, machineId: hello.machineId, hostname: hello.hostname, macs: hello.macs, xenDomid: hello.xenDomid, agentVersion: hello.agentVersion,
      ...(hello.guest ? { guest: hello.guest } : {}),
    };
    Promise.resolve()
      .then(() => this.options.store.registerAgent(identity, hello.stream, hello.spoolDropped, hostNowMs()))
      .then(
        (storedSeq) => {
          if (connection.rejected || connection.socket.readyState !== connection.socket.OPEN) return;
          this.welcomed(connection, hello, storedSeq);
          const held = connection.held ?? [];
          connection.held = null;
          for (const { message, receivedAtMs } of held) {
            if (connection.rejected) return;
            try {
              this.handle(connection, connection.agent!, message, receivedAtMs);
            } catch (error) {
              this.rejectForFrame(connection, error);
            }
          }
        },
        (error: Error) => {
          this.rateLog.say('store', `store unavailable, ${hello.agentId} not registered: ${error.message}`);
          connection.socket.close(1011, 'store unavailable; re-send later');
        },
      );
  }

  private welcomed(connection: Connection, hello: HelloMessage, storedSeq: number): void {
    let record = this.agents.get(hello.agentId);
    if (!record) {
      record = { agentId: hello.agentId, hello, connections: 0, observations: [], reports: [], offsets: new ClockOffsetTracker(), appliedSeq: storedSeq, storedSeq };
      this.agents.set(hello.agentId, record);
    }
    const dropped = hello.spoolDropped - record.hello.spoolDropped;
    if (dropped > 0) this.metrics.spoolDropped.inc(dropped);
    // A new stream (a reinstalled guest) starts from the store's answer; the same stream never goes back. What was
    // received but not yet committed is not counted: if it is sent again, the store's key drops it.
    const known = record.hello.stream === hello.stream ? Math.max(record.storedSeq, storedSeq) : storedSeq;
    record.appliedSeq = known;
    record.storedSeq = known;
    record.hello = hello;
    record.connections += 1;
    const previous = this.current.get(hello.agentId);
    if (previous && previous.socket !== connection.socket) previous.socket.close(CLOSE_REPLACED, 'replaced by a newer connection of this agent');
    connection.agent = record;
    this.current.set(hello.agentId, connection);
    this.admission.release(connection.address);
    this.metrics.agentsConnected.set(this.current.size);
    // Tell the agent at once what is already stored: it may forget that before re-sending the rest.
    this.send(connection, { type: 'ack', seq: record.storedSeq });
    this.emit('hello', record);
  }

  private handle(connection: Connection, agent: AgentRecord, message: AgentMessage, receivedAtMs: number): void {
    if (message.type === 'time-reply') {
      const sample = agent.offsets.add({ t1: message.t1, t2: message.t2, t3: message.t3, t4: receivedAtMs });
      connection.lastReply = { id: message.id, t4: receivedAtMs };
      this.emit('offset', agent, sample);
      return;
    }
    if (message.type === 'hello') return;
    // Within one connection an agent never repeats a seq; across connections it re-sends what was not acknowledged.
    if (message.seq <= connection.lastSeqHere) throw new ProtocolError(`seq ${message.seq} after ${connection.lastSeqHere} on one connection`, 'seq-replay');
    connection.lastSeqHere = message.seq;
    if (message.seq <= agent.appliedSeq) {
      this.metrics.duplicates.inc();
      this.batch.acknowledgeLater(agent);
      return;
    }
    let body: string | null = null;
    if (message.type === 'report') {
      if (message.report.agentId !== agent.agentId) {
        throw new ProtocolError(`a report naming agent ${JSON.stringify(message.report.agentId)} on the connection of ${agent.agentId}`, 'schema');
      }
      // Serialised here, so that a report that cannot be stored is refused alone rather than failing the whole batch.
      try {
        body = JSON.stringify(message.report);
      } catch (error) {
        throw new ProtocolError(`report cannot be stored: ${(error as Error).message}`, 'schema');
      }
    }
    agent.appliedSeq = message.seq;
    if (message.type === 'observation') {
      this.metrics.observations.inc();
      if (message.observation.kind === 'safety-net') this.metrics.safetyNetAction(message.observation.result);
      const received: ReceivedObservation = { receivedAtMs, seq: message.seq, observation: message.observation };
      this.emit('observation', agent, received);
      this.batch.add({ agentId: agent.agentId, seq: message.seq, receivedAtMs, report: null, body: null, agent });
    } else {
      this.batch.add({ agentId: agent.agentId, seq: message.seq, receivedAtMs, report: message.report, body, agent });
    }
  }

  private prune(): void {
    this.storeQuietly('retention', async () => {
      const deleted = await this.options.store.prune(hostNowMs());
      if (deleted > 0) this.options.log(`retention: deleted ${deleted} report(s)`);
    });
  }

  private recordLiveness(): void {
    const heard = [...this.current.values()].map((c) => ({ agentId: c.agent!.agentId, heardMs: c.lastHeardMs }));
    this.storeQuietly('liveness', () => this.options.store.heard(heard));
  }

  /** Housekeeping the collector does not wait for: a failure is logged (at a bounded rate), never thrown. */
  private storeQuietly(what: string, work: () => unknown): void {
    Promise.resolve()
      .then(work)
      .catch((error: Error) => this.rateLog.say('store', `${what} failed: ${error.message}`));
  }

  private sendTimeProbe(connection: Connection): void {
    if (connection.socket.readyState !== connection.socket.OPEN) return;
    const probe: TimeProbeMessage = { type: 'time-probe', id: ++this.probeId, t1: hostNowMs() };
    if (connection.lastReply) probe.previous = connection.lastReply;
    this.send(connection, probe);
  }

  /** Everything after the challenge is signed with the agent's key, when the collector authenticates. */
  private send(connection: Connection, message: CollectorMessage): void {
    const json = JSON.stringify(message);
    const { key, nonce } = connection.credentials;
    connection.socket.send(key === null ? json : signCollectorFrame(key, nonce, json));
  }

  /** Nothing a peer sends may throw out of the collector: an unexpected failure closes this connection only. */
  private rejectForFrame(connection: Connection, error: unknown): void {
    if (error instanceof ProtocolError) this.reject(connection, connection.socket, error.reason, error.message);
    else this.reject(connection, connection.socket, 'malformed', `internal error handling a frame: ${(error as Error).message}`, 1011);
  }

  private reject(connection: Connection | null, socket: WebSocket, reason: RejectReason, detail: string, code = CLOSE_POLICY_VIOLATION): void {
    if (socket.readyState === socket.CLOSED) return;
    // ws closes by itself on protocol-level errors (oversize, bad UTF-8); those still count, once.
    if (connection) {
      if (connection.rejected) return;
      connection.rejected = true;
    }
    this.rejected += 1;
    this.metrics.reject(reason);
    this.emit('rejected', reason, detail);
    const who = connection?.agent?.agentId ?? 'an unauthenticated connection';
    this.rateLog.say(reason, `rejected ${who}: ${reason}: ${detail}`);
    if (socket.readyState === socket.OPEN) socket.close(code, closeReason(`${reason}: ${detail}`));
    // A peer that ignores the close must not hold the slot.
    setTimeout(() => socket.terminate(), 2000).unref();
  }
}
