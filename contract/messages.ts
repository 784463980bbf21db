import { Type, type Static } from '@sinclair/typebox';
import { compiledValidator, type CompiledValidator } from './compiled-validator.js';
import * as compiled from './compiled-validators.js';
import { ObservationRef, type Observation } from './observation.js';
import { assertValidReport, IdentifierSchema, printableText, ReportValidationError, type Report } from './report-schema.js';

/**
 * The agent ↔ collector wire protocol: JSON text frames over WebSocket.
 *
 * Connection: the collector speaks first with a `challenge` (a fresh nonce). The agent answers with a `hello` naming
 * itself, then sends its spooled and live data, each data message carrying the agent's own sequence number, which
 * survives restarts. The collector acknowledges cumulatively (`ack`) once what it received is stored, so the agent can
 * forget it. Every agent frame is signed (see frame-signing.ts) with the agent's key over the connection's nonce and
 * the JSON text, so frames cannot be forged for another agent nor replayed onto another connection.
 *
 * The collector sends only challenges, acks, time probes and harness announcements. None of them can change the
 * guest: the agent has no message that does.
 */
export const PROTOCOL_VERSION = 4;
/**
 * Every protocol this side still speaks: 2 is 3 without the hello's `guest`, 3 is 4 without its `instance`. A
 * collector accepts any; an agent answers a collector's challenge in the collector's protocol if it is here, so
 * collectors and agents upgrade in either order.
 */
export const SUPPORTED_PROTOCOLS: readonly number[] = [2, 3, 4];
/** The first protocol whose hello may carry `guest`. */
export const GUEST_SYSTEM_SINCE_PROTOCOL = 3;
/** The first protocol whose hello carries `instance`. */
export const INSTANCE_SINCE_PROTOCOL = 4;

/** The guest as systeminformation sees it (osInfo(), system()): what a fleet's verdicts are broken down by. */
export const GuestSystemSchema = Type.Object(
  {
    /** /etc/os-release's NAME, e.g. "Debian GNU/Linux". */
    distro: printableText(128),
    /** e.g. "12 (bookworm)". */
    release: printableText(128),
    /** uname -r, e.g. "6.1.0-28-cloud-amd64". */
    kernel: printableText(128),
    arch: printableText(32),
    virtual: Type.Boolean(),
    /** systeminformation's virtualHost (KVM, QEMU, Xen, VMware, …); '' when it could not tell. */
    hypervisor: printableText(64),
  },
  { additionalProperties: false },
);
export type GuestSystem = Static<typeof GuestSystemSchema>;
/** No legitimate message comes near this (a report with a full episode is a few hundred KiB); larger is refused unread. */
export const MAX_FRAME_BYTES = 1024 * 1024;

const Seq = Type.Integer({ minimum: 1, maximum: Number.MAX_SAFE_INTEGER });
const Finite = Type.Number({ minimum: -1e15, maximum: 1e15 });

export const HelloSchema = Type.Object(
  {
    type: Type.Literal('hello'),
    protocol: Type.Integer(),
    agentId: IdentifierSchema,
    /** /etc/machine-id: tells two guests apart that were given the same agent id (a cloned image). */
    machineId: Type.String({ maxLength: 64, pattern: '^[0-9a-f]*$' }),
    hostname: printableText(255),
    macs: Type.Array(Type.String({ pattern: '^[0-9a-f]{2}(:[0-9a-f]{2}){5}$' }), { maxItems: 64 }),
    xenDomid: Type.Union([Type.Integer({ minimum: 0, maximum: 65535 }), Type.Null()]),
    agentVersion: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9.+~_-]+$' }),
    /** The collector's challenge, echoed: this hello was made for this connection. */
    nonce: Type.String({ minLength: 16, maxLength: 64 }),
    /** The agent's sequence stream (its spool's id): seq numbers are unique within one stream. */
    stream: Type.String({ pattern: '^[0-9a-f]{16}$' }),
    /** Entries the agent's spool dropped, oldest first, when it was full: lost on purpose, never silently. */
    spoolDropped: Type.Integer({ minimum: 0 }),
    /** Protocol 3: the guest's distribution, kernel and hypervisor, read once when the agent starts. */
    guest: Type.Optional(GuestSystemSchema),
    /**
     * Protocol 4: this agent process, new at each start. A hello with another one after a migration is an agent that
     * restarted (crashed, or was killed), not one that reconnected: it saw nothing of the migration.
     */
    instance: Type.Optional(Type.String({ pattern: '^[0-9a-f]{16}$' })),
  },
  { additionalProperties: false },
);

export const ObservationMessageSchema = Type.Object(
  { type: Type.Literal('observation'), seq: Seq, observation: ObservationRef },
  { additionalProperties: false },
);

export const ReportMessageSchema = Type.Object(
  // The report itself is checked against flinch.report/v1 after the envelope.
  { type: Type.Literal('report'), seq: Seq, report: Type.Object({}, { additionalProperties: true }) },
  { additionalProperties: false },
);

/** The agent's answer to a time probe: t2 when it arrived, t3 when the reply left, both guest CLOCK_REALTIME in ms. */
export const TimeReplySchema = Type.Object(
  { type: Type.Literal('time-reply'), id: Type.Integer({ minimum: 0 }), t1: Finite, t2: Finite, t3: Finite },
  { additionalProperties: false },
);

export const ChallengeSchema = Type.Object(
  { type: Type.Literal('challenge'), protocol: Type.Integer(), nonce: Type.String({ minLength: 16, maxLength: 64 }) },
  { additionalProperties: false },
);

/** Everything up to and including `seq` is stored; the agent may forget it. */
export const AckSchema = Type.Object({ type: Type.Literal('ack'), seq: Type.Integer({ minimum: 0 }) }, { additionalProperties: false });

/**
 * NTP-style probe: the collector stamps t1 (host realtime, ms) when it sends. It also returns when the agent's reply
 * to the previous probe arrived (t4), so that the agent holds all four stamps of that exchange.
 */
export const TimeProbeSchema = Type.Object(
  {
    type: Type.Literal('time-probe'),
    id: Type.Integer({ minimum: 0 }),
    t1: Finite,
    previous: Type.Optional(Type.Object({ id: Type.Integer({ minimum: 0 }), t4: Finite }, { additionalProperties: false })),
  },
  { additionalProperties: false },
);

/** A harness announcing a migration, so the agent can name the episode after it. It cannot make the agent change anything. */
export const AnnounceSchema = Type.Object(
  { type: Type.Literal('announce'), phase: Type.Union([Type.Literal('starting'), Type.Literal('finished')]), migrationId: IdentifierSchema },
  { additionalProperties: false },
);

export type HelloMessage = Static<typeof HelloSchema>;
/** Who an agent is, as its hello says and the collector keeps it: the one identity type of both halves. */
export type AgentIdentity = Omit<HelloMessage, 'type' | 'protocol' | 'nonce' | 'spoolDropped' | 'stream'>;
export type ObservationMessage = { type: 'observation'; seq: number; observation: Observation };
export type ReportMessage = { type: 'report'; seq: number; report: Report };
export type DataMessage = ObservationMessage | ReportMessage;
export type TimeReplyMessage = Static<typeof TimeReplySchema>;
export type ChallengeMessage = Static<typeof ChallengeSchema>;
export type AckMessage = Static<typeof AckSchema>;
export type TimeProbeMessage = Static<typeof TimeProbeSchema>;
export type AnnounceMessage = Static<typeof AnnounceSchema>;

export type AgentMessage = HelloMessage | DataMessage | TimeReplyMessage;
export type CollectorMessage = ChallengeMessage | AckMessage | TimeProbeMessage | AnnounceMessage;

/**
 * Why a frame was refused. These are the `reason` label of flinch_rejected_total and the first word of the close
 * reason, so an operator can tell a misconfigured agent from an attack.
 */
export type RejectReason =
  | 'oversize'
  | 'binary'
  | 'malformed'
  | 'schema'
  | 'unsigned'
  | 'bad-signature'
  | 'unknown-agent'
  | 'no-hello'
  | 'hello-timeout'
  | 'protocol'
  | 'seq-replay'
  | 'rate-limit'
  | 'busy';

export class ProtocolError extends Error {
  constructor(
    message: string,
    readonly reason: RejectReason = 'schema',
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

/** Each message's schema, compiled ahead of time (packaging/validators/generate-validators.ts). */
const VALIDATORS: Readonly<Record<string, CompiledValidator<unknown>>> = Object.fromEntries(Object.entries({
  hello: compiled.validateHelloMessage,
  observation: compiled.validateObservationMessage,
  report: compiled.validateReportMessage,
  'time-reply': compiled.validateTimeReplyMessage,
  challenge: compiled.validateChallengeMessage,
  ack: compiled.validateAckMessage,
  'time-probe': compiled.validateTimeProbeMessage,
  announce: compiled.validateAnnounceMessage,
}).map(([type, generated]) => [type, compiledValidator<unknown>(generated)]));

/** No message of the protocol nests deeper than this; a deeper one is refused before it is parsed. */
export const MAX_JSON_DEPTH = 64;

/**
 * How deeply a JSON text nests its arrays and objects, counted without parsing (brackets inside strings skipped), so
 * that a frame nested 200 000 levels deep is refused before JSON.parse builds it and JSON.stringify chokes on it.
 * Stops counting once past `limit`.
 */
export function jsonDepthExceeds(text: string, limit: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i += 1; // a backslash escapes the next character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b || c === 0x5b) {
      depth += 1;
      if (depth > limit) return true;
    } else if (c === 0x7d || c === 0x5d) depth -= 1;
  }
  return false;
}

/** Parses one JSON text (already size-checked) into an object with a string `type`. */
export function parseJsonObject(text: string): Record<string, unknown> & { type: string } {
  if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) throw new ProtocolError(`frame nests deeper than ${MAX_JSON_DEPTH} levels`, 'malformed');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ProtocolError('frame is not JSON', 'malformed');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ProtocolError('frame is not a JSON object', 'malformed');
  const type = (value as { type?: unknown }).type;
  if (typeof type !== 'string') throw new ProtocolError('frame has no type', 'schema');
  return value as Record<string, unknown> & { type: string };
}

function check<T>(message: Record<string, unknown> & { type: string }, allowed: readonly string[], from: string): T {
  if (!allowed.includes(message.type)) {
    throw new ProtocolError(`unexpected message type ${JSON.stringify(message.type).slice(0, 40)} from ${from}`, 'schema');
  }
  const type = message.type;
  const validate = VALIDATORS[type]!;
  if (!validate(message)) {
    const error = validate.errors?.[0];
    throw new ProtocolError(`${type}${error?.instancePath ?? ''} ${error?.message ?? 'is invalid'}`, 'schema');
  }
  return message as unknown as T;
}

/** Validates a message from an agent: envelope by schema, a report in depth against flinch.report/v1. */
export function validateAgentMessage(message: Record<string, unknown> & { type: string }): AgentMessage {
  // Before the schema: a newer agent's hello may carry fields this collector does not know, and the answer it needs is
  // which protocols are spoken here, not which field is unknown.
  if (message.type === 'hello' && typeof message.protocol === 'number' && !SUPPORTED_PROTOCOLS.includes(message.protocol)) {
    throw new ProtocolError(`unsupported protocol ${message.protocol} (this collector speaks ${SUPPORTED_PROTOCOLS.join(', ')})`, 'protocol');
  }
  const checked = check<AgentMessage>(message, ['hello', 'observation', 'report', 'time-reply'], 'an agent');
  if (checked.type === 'report') {
    try {
      assertValidReport(checked.report);
    } catch (error) {
      if (error instanceof ReportValidationError) throw new ProtocolError(error.message, 'schema');
      throw error;
    }
  }
  return checked;
}

/** No collector message comes near this: challenges, acks, time probes and announcements are all under 1 KiB. */
export const MAX_COLLECTOR_FRAME_BYTES = 16 * 1024;

/**
 * Validates what the agent receives: challenges, acks, time probes and announcements, none of which change the guest
 * directly. `verify`, when the agent has a key, checks the frame's signature (given the JSON and its MAC) and is
 * passed every frame but a challenge, which only carries the nonce.
 */
export function parseCollectorMessage(data: string | Buffer, verify: ((json: string, mac: string) => boolean) | null = null): CollectorMessage {
  const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
  if (size > MAX_COLLECTOR_FRAME_BYTES) throw new ProtocolError(`frame of ${size} bytes exceeds ${MAX_COLLECTOR_FRAME_BYTES}`, 'oversize');
  const text = typeof data === 'string' ? data : data.toString('utf8');
  const signed = /^[0-9a-f]{64} /.test(text);
  const json = signed ? text.slice(65) : text;
  const message = parseJsonObject(json);
  if (verify && message.type !== 'challenge') {
    if (!signed) throw new ProtocolError(`unsigned ${JSON.stringify(message.type).slice(0, 40)} frame`, 'unsigned');
    if (!verify(json, text.slice(0, 64))) throw new ProtocolError(`bad signature on a ${JSON.stringify(message.type).slice(0, 40)} frame`, 'bad-signature');
  }
  return check<CollectorMessage>(message, ['challenge', 'ack', 'time-probe', 'announce'], 'the collector');
}
