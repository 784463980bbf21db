import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Observation } from '../../probes/observation.js';
import { MAX_FRAME_BYTES, ProtocolError, parseAgentMessage, type TimeProbeMessage } from '../../agent/protocol/messages.js';
import { ClockOffsetTracker, type OffsetSample } from '../../probes/clock/clock-offset.js';
import { hostNowMs } from '../host-clock.js';
import type { Report } from '../../agent/report/report-schema.js';

export interface ReceivedObservation {
  /** Host time the collector received it: how the harness places it relative to a migration. */
  receivedAtMs: number;
  seq: number;
  observation: Observation;
}

export interface AgentRecord {
  agentId: string;
  hostname: string;
  agentVersion: string;
  connections: number;
  observations: ReceivedObservation[];
  reports: Array<{ receivedAtMs: number; report: Report }>;
  offsets: ClockOffsetTracker;
}

export interface CollectorOptions {
  host: string;
  port: number;
  /** How often each connected agent is sent a time probe. */
  timeProbeIntervalMs: number;
  log: (line: string) => void;
}

/** WebSocket close code for a policy violation (RFC 6455): what a malformed or oversized frame gets. */
const CLOSE_POLICY_VIOLATION = 1008;

/**
 * Receives agents' observations and measures each agent's clock against the host with NTP-style probes. It trusts
 * nothing it receives: every frame is size-limited and validated, and a bad one closes that connection only.
 */
export class CollectorServer extends EventEmitter<{
  observation: [AgentRecord, ReceivedObservation];
  offset: [AgentRecord, OffsetSample];
  hello: [AgentRecord];
  report: [AgentRecord, Report];
}> {
  readonly agents = new Map<string, AgentRecord>();
  rejected = 0;
  private server: WebSocketServer | null = null;
  private probeId = 0;
  private readonly sockets = new Map<string, WebSocket>();

  constructor(private readonly options: CollectorOptions) {
    super();
  }

  async start(): Promise<AddressInfo> {
    const server = new WebSocketServer({ host: this.options.host, port: this.options.port, maxPayload: MAX_FRAME_BYTES });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    server.on('connection', (socket) => this.accept(socket));
    return server.address() as AddressInfo;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    for (const client of server.clients) client.terminate();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.server = null;
  }

  /** Tells an agent that a migration starts or has finished (a harness does this). False if it is not connected. */
  announce(agentId: string, phase: 'starting' | 'finished', migrationId: string): boolean {
    const socket = this.sockets.get(agentId);
    if (!socket || socket.readyState !== socket.OPEN) return false;
    socket.send(JSON.stringify({ type: 'announce', phase, migrationId }));
    return true;
  }

  private accept(socket: WebSocket): void {
    let agent: AgentRecord | null = null;
    let lastReply: { id: number; t4: number } | undefined;
    const probeTimer = setInterval(() => {
      if (!agent) return;
      const probe: TimeProbeMessage = { type: 'time-probe', id: ++this.probeId, t1: hostNowMs() };
      if (lastReply) probe.previous = lastReply;
      socket.send(JSON.stringify(probe));
    }, this.options.timeProbeIntervalMs);
    socket.on('close', () => clearInterval(probeTimer));
    socket.on('error', (error) => this.options.log(`agent connection error: ${error.message}`));
    socket.on('message', (data, isBinary) => {
      const receivedAtMs = hostNowMs();
      try {
        if (isBinary) throw new ProtocolError('binary frames are not part of the protocol');
        const message = parseAgentMessage(data as Buffer);
        if (message.type === 'hello') {
          agent = this.register(message.agentId, message.hostname, message.agentVersion);
          this.sockets.set(agent.agentId, socket);
          this.emit('hello', agent);
          return;
        }
        if (!agent) throw new ProtocolError(`${message.type} before hello`);
        if (message.type === 'time-reply') {
          const sample = agent.offsets.add({ t1: message.t1, t2: message.t2, t3: message.t3, t4: receivedAtMs });
          lastReply = { id: message.id, t4: receivedAtMs };
          this.emit('offset', agent, sample);
          return;
        }
        if (message.type === 'report') {
          agent.reports.push({ receivedAtMs, report: message.report });
          this.emit('report', agent, message.report);
          return;
        }
        const received: ReceivedObservation = { receivedAtMs, seq: message.seq, observation: message.observation };
        agent.observations.push(received);
        this.emit('observation', agent, received);
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
        this.rejected += 1;
        this.options.log(`rejected a frame from ${agent?.agentId ?? 'an unidentified agent'}: ${error.message}`);
        socket.close(CLOSE_POLICY_VIOLATION, error.message.slice(0, 120));
      }
    });
  }

  private register(agentId: string, hostname: string, agentVersion: string): AgentRecord {
    let record = this.agents.get(agentId);
    if (!record) {
      record = { agentId, hostname, agentVersion, connections: 0, observations: [], reports: [], offsets: new ClockOffsetTracker() };
      this.agents.set(agentId, record);
    }
    record.connections += 1;
    return record;
  }
}
