import type { WebSocket } from 'ws';
import { ProtocolError } from '../../contract/messages.js';

/**
 * Before its hello a connection may send frames of at most this size: a real hello is under 3 KB. Only after the hello
 * is authenticated does the connection get the protocol's full MAX_FRAME_BYTES, so that unauthenticated peers holding
 * partial frames pin kilobytes, not a megabyte each.
 */
export const MAX_PRE_HELLO_FRAME_BYTES = 16 * 1024;

/** RFC 6455 close codes: a policy violation for bad frames, "try again later" when busy; ours for a replaced connection. */
export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_TRY_AGAIN_LATER = 1013;
export const CLOSE_REPLACED = 4409;

/** RFC 6455 allows 123 bytes of close reason; ws throws past that. */
const MAX_CLOSE_REASON_BYTES = 123;

/** A close reason that cannot make ws throw: printable ASCII only (anything else shown as ?), cut to the byte limit. */
export function closeReason(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, '?').slice(0, MAX_CLOSE_REASON_BYTES);
}

/**
 * ws has one maxPayload per server and no public way to change it per connection; its receiver reads it from this
 * field on every frame (ws 8, pinned; test/harness/collector/trust-regressions.test.ts fails if that changes).
 */
export function setMaxPayload(socket: WebSocket, bytes: number): void {
  const receiver = (socket as unknown as { _receiver?: { _maxPayload?: number } })._receiver;
  if (!receiver || typeof receiver._maxPayload !== 'number') throw new Error('ws internals changed: cannot raise maxPayload after the hello');
  receiver._maxPayload = bytes;
}

/** A connection's frame budget: `rate` frames a second, twice that in a burst. */
export class FrameBucket {
  private tokens: number;
  private atMs = Date.now();

  constructor(private readonly rate: number) {
    this.tokens = 2 * rate;
  }

  /** Takes one frame's token, or refuses the frame as a rate-limit violation. */
  spend(): void {
    const now = Date.now();
    this.tokens = Math.min(2 * this.rate, this.tokens + ((now - this.atMs) / 1000) * this.rate);
    this.atMs = now;
    if (this.tokens < 1) throw new ProtocolError(`more than ${this.rate} frames a second`, 'rate-limit');
    this.tokens -= 1;
  }
}
