import type { Observation } from '../../probes/observation.js';
import { assertValidReport, ReportValidationError, type Report } from '../report/report-schema.js';

/**
 * The agent ↔ collector wire protocol, JSON over WebSocket. The agent sends what it saw; the collector sends only
 * time probes (and, later, acks and harness announcements). Nothing the collector sends can change the guest.
 */
export const PROTOCOL_VERSION = 1;
/** No legitimate message comes near this (a report with a full episode is a few hundred KiB); larger is refused unread. */
export const MAX_FRAME_BYTES = 1024 * 1024;

export interface HelloMessage {
  type: 'hello';
  protocol: number;
  agentId: string;
  hostname: string;
  agentVersion: string;
}

export interface ObservationMessage {
  type: 'observation';
  /** Per-connection-lifetime sequence number, so the collector can tell order and gaps. */
  seq: number;
  observation: Observation;
}

/**
 * NTP-style probe: the collector stamps t1 (host realtime, ms) when it sends. It also returns when the agent's reply
 * to the previous probe arrived (t4), so that the agent holds all four stamps of that exchange and can follow its
 * own offset against the host.
 */
export interface TimeProbeMessage {
  type: 'time-probe';
  id: number;
  t1: number;
  previous?: { id: number; t4: number };
}

/** The agent's answer: t2 when the probe arrived, t3 when the reply left, both guest CLOCK_REALTIME in ms. */
export interface TimeReplyMessage {
  type: 'time-reply';
  id: number;
  t1: number;
  t2: number;
  t3: number;
}

/** The agent's conclusion about one episode, `flinch.report/v1`. */
export interface ReportMessage {
  type: 'report';
  report: Report;
}

/**
 * A harness announcing a migration, so the agent can name the episode after it. It opens or names an episode and
 * nothing else: it cannot make the agent change the guest.
 */
export interface AnnounceMessage {
  type: 'announce';
  phase: 'starting' | 'finished';
  migrationId: string;
}

export type AgentMessage = HelloMessage | ObservationMessage | TimeReplyMessage | ReportMessage;
export type CollectorMessage = TimeProbeMessage | AnnounceMessage;

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}

function parseFrame(data: string | Buffer): Record<string, unknown> {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  if (size > MAX_FRAME_BYTES) throw new ProtocolError(`frame of ${size} bytes exceeds ${MAX_FRAME_BYTES}`);
  let value: unknown;
  try {
    value = JSON.parse(typeof data === 'string' ? data : data.toString('utf8'));
  } catch {
    throw new ProtocolError('frame is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ProtocolError('frame is not a JSON object');
  }
  return value as Record<string, unknown>;
}

function requireFiniteNumber(message: Record<string, unknown>, field: string): number {
  const value = message[field];
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw new ProtocolError(`${String(message.type)}.${field} must be a finite number`);
  }
  return value;
}

function requireString(message: Record<string, unknown>, field: string, maxLength: number): string {
  const value = message[field];
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) {
    throw new ProtocolError(`${String(message.type)}.${field} must be a string of 1..${maxLength} characters`);
  }
  return value;
}

/** Validates what the collector receives. Observations are checked for shape here and in depth by the report schema. */
export function parseAgentMessage(data: string | Buffer): AgentMessage {
  const message = parseFrame(data);
  switch (message.type) {
    case 'hello':
      if (message.protocol !== PROTOCOL_VERSION) {
        throw new ProtocolError(`unsupported protocol ${String(message.protocol)} (this collector speaks ${PROTOCOL_VERSION})`);
      }
      return {
        type: 'hello',
        protocol: PROTOCOL_VERSION,
        agentId: requireString(message, 'agentId', 128),
        hostname: requireString(message, 'hostname', 255),
        agentVersion: requireString(message, 'agentVersion', 64),
      };
    case 'observation': {
      const seq = requireFiniteNumber(message, 'seq');
      const observation = message.observation as Record<string, unknown> | undefined;
      if (typeof observation !== 'object' || observation === null || typeof observation.kind !== 'string') {
        throw new ProtocolError('observation.observation must be an object with a kind');
      }
      const at = observation.at as Record<string, unknown> | undefined;
      if (typeof at?.realtimeMs !== 'number' || typeof at?.monotonicMs !== 'number') {
        throw new ProtocolError('observation.observation.at must carry realtimeMs and monotonicMs');
      }
      return { type: 'observation', seq, observation: observation as unknown as Observation };
    }
    case 'report':
      try {
        assertValidReport(message.report);
      } catch (error) {
        if (error instanceof ReportValidationError) throw new ProtocolError(error.message);
        throw error;
      }
      return { type: 'report', report: message.report };
    case 'time-reply':
      return {
        type: 'time-reply',
        id: requireFiniteNumber(message, 'id'),
        t1: requireFiniteNumber(message, 't1'),
        t2: requireFiniteNumber(message, 't2'),
        t3: requireFiniteNumber(message, 't3'),
      };
    default:
      throw new ProtocolError(`unknown message type ${JSON.stringify(String(message.type)).slice(0, 40)}`);
  }
}

/** Validates what the agent receives: time probes and announcements, neither of which can change the guest. */
export function parseCollectorMessage(data: string | Buffer): CollectorMessage {
  const message = parseFrame(data);
  if (message.type === 'announce') {
    if (message.phase !== 'starting' && message.phase !== 'finished') throw new ProtocolError('announce.phase must be starting or finished');
    return { type: 'announce', phase: message.phase, migrationId: requireString(message, 'migrationId', 128) };
  }
  if (message.type !== 'time-probe') {
    throw new ProtocolError(`unexpected message type ${JSON.stringify(String(message.type)).slice(0, 40)} from collector`);
  }
  const probe: TimeProbeMessage = { type: 'time-probe', id: requireFiniteNumber(message, 'id'), t1: requireFiniteNumber(message, 't1') };
  if (message.previous !== undefined) {
    const previous = message.previous as Record<string, unknown> | null;
    if (typeof previous !== 'object' || previous === null) throw new ProtocolError('time-probe.previous must be an object');
    probe.previous = { id: requireFiniteNumber({ ...previous, type: 'time-probe.previous' }, 'id'), t4: requireFiniteNumber({ ...previous, type: 'time-probe.previous' }, 't4') };
  }
  return probe;
}
