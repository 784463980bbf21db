// One of the worker processes of bench/fleet-collector.ts: simulates a slice of the fleet, each agent a real WebSocket
// connection speaking the real protocol (challenge, signed hello, signed reports, acks, time replies).
import WebSocket from 'ws';
import { agentKeyFor, signFrame } from '../agent/protocol/frame-signing.js';

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
}

type Command =
  | { cmd: 'connect'; port: number; ids: string[]; secret: string; concurrency: number }
  | { cmd: 'load'; ratePerSecond: number; durationMs: number }
  | { cmd: 'stop' };

const agents: SimAgent[] = [];
let latencies: number[] = [];
let acked = 0;
let sent = 0;

function reportJsonFor(id: string): string {
  const at = { realtimeMs: Date.now(), monotonicMs: 1 };
  return JSON.stringify({
    schema: 'flinch.report/v1', agentId: id, hostname: id, agentVersion: '0.1.0',
    episode: { id: 'ep', migrationId: null, openedAt: at, closedAt: at, durationMs: 812, triggers: [{ kind: 'notify-peers', detail: 'IFLA_EVENT NOTIFY_PEERS on eth0', at }] },
    verdict: 'noticed',
    evidence: [{ severity: 'noticed', kind: 'clock-lag', detail: 'guest clock fell 83 ms behind the host', at }],
    thresholds: { clockStepMs: 50, settleMs: 3000 },
    remediation: { mode: 'dry-run', outcome: 'not-needed', timeToHealMs: null, actions: [] },
    observations: [{ kind: 'link', at }],
    observationsDropped: 0,
  });
}

function send(agent: SimAgent, json: string): void {
  agent.ws.send(signFrame(agent.key, agent.nonce!, json));
}

function open(port: number, id: string, secret: string): Promise<void> {
  return new Promise((resolve) => {
    const agent: SimAgent = { id, key: agentKeyFor(secret, id), ws: new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false }), nonce: null, seq: 0, inflight: [], welcomedAt: null, reportJson: reportJsonFor(id) };
    agents.push(agent);
    agent.ws.on('error', () => resolve());
    agent.ws.on('close', () => resolve());
    agent.ws.on('message', (data) => {
      const message = JSON.parse(data.toString()) as { type: string; nonce?: string; seq?: number; id?: number; t1?: number };
      if (message.type === 'challenge') {
        agent.nonce = message.nonce!;
        send(agent, JSON.stringify({ type: 'hello', protocol: 2, agentId: id, machineId: '', hostname: id, macs: [], xenDomid: null, agentVersion: '0.1.0', nonce: agent.nonce, stream: '0000000000000001', spoolDropped: 0 }));
      } else if (message.type === 'ack') {
        if (agent.welcomedAt === null) {
          agent.welcomedAt = Date.now();
          resolve();
        }
        const now = performance.now();
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
    while (next < command.ids.length) await open(command.port, command.ids[next++]!, command.secret);
  };
  await Promise.all(Array.from({ length: command.concurrency }, lane));
  process.send!({ type: 'connected', welcomed: agents.filter((a) => a.welcomedAt !== null).length });
}

async function load(command: Extract<Command, { cmd: 'load' }>): Promise<void> {
  latencies = [];
  acked = 0;
  sent = 0;
  const live = agents.filter((a) => a.ws.readyState === WebSocket.OPEN && a.nonce !== null);
  const tickMs = 10;
  let credit = 0;
  let cursor = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      credit += (command.ratePerSecond * tickMs) / 1000;
      while (credit >= 1) {
        credit -= 1;
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
  const drainUntil = performance.now() + 5000;
  while (live.some((a) => a.inflight.length > 0) && performance.now() < drainUntil) await new Promise((r) => setTimeout(r, 20));
  const unacked = live.reduce((sum, a) => sum + a.inflight.length, 0);
  process.send!({ type: 'loaded', sent, acked, unacked, latencies, disconnected: agents.filter((a) => a.ws.readyState !== WebSocket.OPEN).length });
}

process.on('message', (command: Command) => {
  if (command.cmd === 'connect') void connect(command);
  else if (command.cmd === 'load') void load(command);
  else {
    for (const agent of agents) agent.ws.terminate();
    process.exit(0);
  }
});
