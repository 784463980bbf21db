// One of the worker processes of bench/fleet-collector.ts: simulates a slice of the fleet, each agent a real WebSocket
// connection speaking the real protocol (challenge, signed hello, signed reports, acks, time replies).
import net from 'node:net';
import WebSocket from 'ws';
import { agentKeyFor, signFrame, verifyCollectorFrame } from '../contract/frame-signing.js';
import { collectorOrder } from '../agent/transport/shard.js';

interface SimAgent {
  id: string;
  key: string;
  ws: WebSocket;
  nonce: string | null;
  seq: number;
  /** Sent and not yet acknowledged, oldest first: [seq, sentAt]. */
  inflight: Array<[number, number]>;
  welcomedAt: number | null;
  reportJson: string;
  /** The collectors' ports in this agent's rendezvous order (--collector-failover), and which one it is on. */
  ports: number[];
  index: number;
  /** When its connection was lost (performance.now()), until it is welcomed by the next collector. */
  lostAt: number | null;
}

type Command =
  | { cmd: 'connect'; port: number; ids: string[]; secret: string; concurrency: number; failoverPorts?: number[] }
  | { cmd: 'hostile'; port: number; count: number; address: string; reopenMs: number }
  | { cmd: 'load'; ratePerSecond: number; durationMs: number; drainMs?: number }
  | { cmd: 'stop' };

const agents: SimAgent[] = [];
let latencies: number[] = [];
let acked = 0;
let sent = 0;
let badFrames = 0;
/** Per agent that lost its collector: ms from the loss to the next collector's welcome. */
const moves: number[] = [];

function reportJsonFor(id: string): string {
  const at = { realtimeMs: Date.now(), monotonicMs: 1 };
  return JSON.stringify({
    schema: 'flinch.report/v1', agentId: id, hostname: id, agentVersion: '0.1.0',
    episode: { id: 'ep', migrationId: null, openedAt: at, closedAt: at, durationMs: 812, triggers: [{ kind: 'notify-peers', detail: 'IFLA_EVENT NOTIFY_PEERS on eth0', at }] },
    verdict: 'noticed',
    evidence: [{ severity: 'noticed', kind: 'clock-lag', detail: 'guest clock fell 83 ms behind the host', at }],
    thresholds: { clockStepMs: 50, settleMs: 3000 },
    remediation: { mode: 'dry-run', outcome: 'not-needed', timeToHealMs: null, actions: [] },
    // A whole link observation, as the contract checks every observation in full.
    observations: [{
      kind: 'link', action: 'new', event: 'notify-peers', at,
      link: { ifindex: 2, name: 'eth0', mac: '52:54:00:12:34:56', mtu: 1500, adminUp: true, lowerUp: true, running: true, operstate: 'up', carrier: 1, carrierChanges: 2, carrierUpCount: 1, carrierDownCount: 1 },
    }],
    observationsDropped: 0,
  });
}

function send(agent: SimAgent, json: string): void {
  // Between two collectors: kept in flight, sent once the next one has welcomed it.
  if (agent.nonce === null || agent.ws.readyState !== WebSocket.OPEN) return;
  agent.ws.send(signFrame(agent.key, agent.nonce, json));
}

/** Each simulated guest connects from an address of its own in 127.0.0.0/8, as each guest of a fleet has its own. */
function addressOf(id: string): string {
  const n = Number(id.replace(/\D/g, ''));
  return `127.${1 + ((n >> 16) & 0xff)}.${(n >> 8) & 0xff}.${n & 0xff || 1}`;
}

function open(ports: number[], id: string, secret: string): Promise<void> {
  const agent: SimAgent = {
    id, key: agentKeyFor(secret, id), ws: null as unknown as WebSocket, nonce: null, seq: 0, inflight: [], welcomedAt: null, reportJson: reportJsonFor(id), ports, index: 0, lostAt: null,
  };
  agents.push(agent);
  return attach(agent);
}

/** One connection of an agent; with several collectors, a lost one is replaced by the next's, and the unacknowledged re-sent. */
function attach(agent: SimAgent): Promise<void> {
  const { id } = agent;
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${agent.ports[agent.index]}`, { perMessageDeflate: false, localAddress: addressOf(id) });
    agent.ws = ws;
    agent.nonce = null;
    ws.on('error', () => resolve());
    ws.on('close', () => {
      resolve();
      if (stopping || agent.ports.length < 2 || agent.ws !== ws) return;
      agent.lostAt ??= performance.now();
      agent.index = (agent.index + 1) % agent.ports.length;
      setTimeout(() => void attach(agent), 50 + Math.random() * 200);
    });
    ws.on('message', (data) => {
      // After the challenge every collector frame is signed; a real agent checks each, and so does this one.
      const text = data.toString();
      const signed = /^[0-9a-f]{64} /.test(text);
      const json = signed ? text.slice(65) : text;
      const message = JSON.parse(json) as { type: string; nonce?: string; seq?: number; id?: number; t1?: number };
      if (message.type !== 'challenge' && (!signed || !verifyCollectorFrame(agent.key, agent.nonce!, json, text.slice(0, 64)))) {
        badFrames += 1;
        return;
      }
      if (message.type === 'challenge') {
        agent.nonce = message.nonce!;
        send(agent, JSON.stringify({ type: 'hello', protocol: 2, agentId: id, machineId: '', hostname: id, macs: [], xenDomid: null, agentVersion: '0.1.0', nonce: agent.nonce, stream: '0000000000000001', spoolDropped: 0 }));
        // As the agent's spool does: right after the hello, what no collector has acknowledged, oldest first, before
        // anything new (a collector takes an agent's seqs as they come: one sent out of order would be refused).
        for (const [seq] of agent.inflight) send(agent, `{"type":"report","seq":${seq},"report":${agent.reportJson}}`);
      } else if (message.type === 'ack') {
        const now = performance.now();
        if (agent.welcomedAt === null || agent.lostAt !== null) {
          agent.welcomedAt ??= Date.now();
          if (agent.lostAt !== null) moves.push(now - agent.lostAt);
          agent.lostAt = null;
          resolve();
        }
        while (agent.inflight.length > 0 && agent.inflight[0]![0] <= message.seq!) {
          latencies.push(now - agent.inflight.shift()![1]);
          acked += 1;
        }
      } else if (message.type === 'time-probe') {
        const t = Date.now();
        send(agent, JSON.stringify({ type: 'time-reply', id: message.id, t1: message.t1, t2: t, t3: t }));
      }
    });
  });
}

async function connect(command: Extract<Command, { cmd: 'connect' }>): Promise<void> {
  let next = 0;
  const lane = async () => {
    while (next < command.ids.length) {
      const id = command.ids[next++]!;
      const ports = command.failoverPorts ? collectorOrder(id, command.failoverPorts.map(String)).map(Number) : [command.port];
      await open(ports, id, command.secret);
    }
  };
  await Promise.all(Array.from({ length: command.concurrency }, lane));
  process.send!({ type: 'connected', welcomed: agents.filter((a) => a.welcomedAt !== null).length });
}

async function load(command: Extract<Command, { cmd: 'load' }>): Promise<void> {
  latencies = [];
  acked = 0;
  sent = 0;
  moves.length = 0;
  const live = agents.filter((a) => a.ws.readyState === WebSocket.OPEN && a.nonce !== null);
  const tickMs = 10;
  let cursor = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      // Owed by the clock, not by the number of ticks: a busy event loop ticks late, and must not offer less for it.
      const owed = Math.floor((command.ratePerSecond * Math.min(performance.now() - started, command.durationMs)) / 1000) - sent;
      for (let i = 0; i < owed; i += 1) {
        const agent = live[cursor++ % live.length]!;
        agent.seq += 1;
        agent.inflight.push([agent.seq, performance.now()]);
        send(agent, `{"type":"report","seq":${agent.seq},"report":${agent.reportJson}}`);
        sent += 1;
      }
      if (performance.now() - started >= command.durationMs) {
        clearInterval(timer);
        resolve();
      }
    }, tickMs);
  });
  // Let the last acks arrive.
  const drainUntil = performance.now() + (command.drainMs ?? 5000);
  while (live.some((a) => a.inflight.length > 0) && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  const unacked = live.reduce((sum, a) => sum + a.inflight.length, 0);
  process.send!({ type: 'loaded', sent, acked, unacked, latencies, badFrames, disconnected: agents.filter((a) => a.ws.readyState !== WebSocket.OPEN).length, moves });
}

/**
 * Hostile connections from one address, held open for the whole run: a third idle (TCP only, never an upgrade), a
 * third slow (upgraded, then a frame header and a trickle), a third holding a partial large frame. Each one the
 * collector closes is opened again reopenMs later.
 */
function hostile(command: Extract<Command, { cmd: 'hostile' }>): void {
  let opened = 0;
  const openOne = (kind: number) => {
    const socket = net.connect({ host: '127.0.0.1', port: command.port, localAddress: command.address });
    opened += 1;
    socket.on('error', () => undefined);
    socket.once('close', () => {
      if (!stopping) setTimeout(() => openOne(kind), command.reopenMs);
    });
    socket.once('connect', () => {
      if (kind === 0) return;
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n');
      socket.once('data', () => {
        const header = Buffer.from([0x81, 0xff, 0, 0, 0, 0, 0, 0x10, 0, 0, 1, 2, 3, 4]); // masked text, 1 MiB announced
        socket.write(Buffer.concat([header, Buffer.alloc(kind === 1 ? 8 : 12 * 1024, 0x61)]));
        if (kind === 1) {
          const trickle = setInterval(() => (socket.writable ? socket.write('a') : clearInterval(trickle)), 500);
          socket.once('close', () => clearInterval(trickle));
        }
      });
    });
  };
  for (let i = 0; i < command.count; i += 1) openOne(i % 3);
  setInterval(() => process.send!({ type: 'hostile-status', opened }), 1000).unref();
  process.send!({ type: 'hostile-started', count: command.count });
}

let stopping = false;

process.on('message', (command: Command) => {
  if (command.cmd === 'connect') void connect(command);
  else if (command.cmd === 'hostile') hostile(command);
  else if (command.cmd === 'load') void load(command);
  else {
    stopping = true;
    for (const agent of agents) agent.ws.terminate();
    process.exit(0);
  }
});
