import { EventEmitter } from 'node:events';
import { Duplex } from 'node:stream';
import { NonblockingDevice } from '../nonblocking-device.js';

/** Message types from xen/include/public/io/xs_wire.h. */
export const XsType = {
  DIRECTORY: 1,
  READ: 2,
  WATCH: 4,
  UNWATCH: 5,
  WRITE: 11,
  WATCH_EVENT: 15,
  ERROR: 16,
} as const;

const HEADER_BYTES = 16;
/** XENSTORE_PAYLOAD_MAX: the protocol's own limit; anything larger is a broken peer. */
export const XENSTORE_PAYLOAD_MAX = 4096;

export class XenstoreError extends Error {
  constructor(
    readonly code: string,
    readonly path: string,
  ) {
    super(`xenstore ${path}: ${code}`);
    this.name = 'XenstoreError';
  }
}

export interface XsMessage {
  type: number;
  reqId: number;
  txId: number;
  payload: Buffer;
}

export function encodeXsMessage({ type, reqId, txId, payload }: XsMessage): Buffer {
  if (payload.length > XENSTORE_PAYLOAD_MAX) throw new Error(`xenstore payload of ${payload.length} bytes exceeds ${XENSTORE_PAYLOAD_MAX}`);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(type, 0);
  header.writeUInt32LE(reqId, 4);
  header.writeUInt32LE(txId, 8);
  header.writeUInt32LE(payload.length, 12);
  return Buffer.concat([header, payload]);
}

/** Splits a byte stream into xenstore messages; keeps a partial message until the rest arrives. */
export class XsFramer {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): XsMessage[] {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const messages: XsMessage[] = [];
    while (this.pending.length >= HEADER_BYTES) {
      const len = this.pending.readUInt32LE(12);
      if (len > XENSTORE_PAYLOAD_MAX) throw new Error(`xenstore message of ${len} bytes exceeds ${XENSTORE_PAYLOAD_MAX}`);
      if (this.pending.length < HEADER_BYTES + len) break;
      messages.push({
        type: this.pending.readUInt32LE(0),
        reqId: this.pending.readUInt32LE(4),
        txId: this.pending.readUInt32LE(8),
        payload: this.pending.subarray(HEADER_BYTES, HEADER_BYTES + len),
      });
      this.pending = this.pending.subarray(HEADER_BYTES + len);
    }
    return messages;
  }
}

/** NUL-terminated strings, as xenstore payloads carry them. */
export function xsStrings(...parts: string[]): Buffer {
  return Buffer.from(parts.map((p) => `${p}\0`).join(''));
}

export function splitXsStrings(payload: Buffer): string[] {
  const text = payload.toString('utf8');
  return (text.endsWith('\0') ? text.slice(0, -1) : text).split('\0');
}

/**
 * A xenstore client speaking the wire protocol itself, as the guest kernel's /dev/xen/xenbus expects it: requests
 * correlated by req_id, and watch events delivered as they come. Paths without a leading slash are relative to the
 * guest's own /local/domain/<domid>, which is what makes them survive a migration to a new domid.
 *
 * A WATCH is written only when no other request is unanswered. Linux's /dev/xen/xenbus deadlocks otherwise (seen in
 * the nested Xen lab: the `xenbus` kernel thread and the agent both "blocked for more than 120 seconds" at boot): a
 * WATCH write holds the file's msgbuffer_mutex while it waits for xenstored's answer, and the xenbus thread, which
 * must deliver that answer, first needs the same mutex to queue the reply of any earlier request still outstanding
 * (drivers/xen/xenbus/xenbus_dev_frontend.c, xenbus_write_watch and xenbus_dev_queue_reply). Reads are answered
 * without holding it, so they may overlap one another: a read that waited behind the others would see a vif's
 * states after they had changed again.
 */
export class XenstoreClient extends EventEmitter<{ watch: [{ path: string; token: string }]; error: [Error] }> {
  private nextReqId = 1;
  private readonly framer = new XsFramer();
  private readonly pending = new Map<number, { path: string; resolve: (m: XsMessage) => void; reject: (e: Error) => void }>();
  /** Settles when the last WATCH queued has its answer: requests made after it are written only then. */
  private watchDone: Promise<unknown> = Promise.resolve();
  /** Every request written or queued and not yet answered. */
  private readonly unanswered = new Set<Promise<unknown>>();

  constructor(private readonly stream: Duplex) {
    super();
    stream.on('data', (chunk: Buffer) => {
      let messages: XsMessage[];
      try {
        messages = this.framer.push(chunk);
      } catch (error) {
        this.failAll(error as Error);
        return;
      }
      for (const message of messages) this.dispatch(message);
    });
    stream.on('error', (error) => this.failAll(error));
  }

  async read(path: string): Promise<string | null> {
    try {
      return (await this.request(XsType.READ, xsStrings(path), path)).payload.toString('utf8');
    } catch (error) {
      if (error instanceof XenstoreError && error.code === 'ENOENT') return null;
      throw error;
    }
  }

  async directory(path: string): Promise<string[]> {
    try {
      return splitXsStrings((await this.request(XsType.DIRECTORY, xsStrings(path), path)).payload).filter(Boolean);
    } catch (error) {
      if (error instanceof XenstoreError && error.code === 'ENOENT') return [];
      throw error;
    }
  }

  /** Registers a watch; xenstored fires it once at once, then on every change below `path`. */
  async watch(path: string, token: string): Promise<void> {
    await this.request(XsType.WATCH, xsStrings(path, token), path);
  }

  async unwatch(path: string, token: string): Promise<void> {
    await this.request(XsType.UNWATCH, xsStrings(path, token), path);
  }

  close(): void {
    this.stream.destroy();
  }

  private request(type: number, payload: Buffer, path: string): Promise<XsMessage> {
    const send = () =>
      new Promise<XsMessage>((resolve, reject) => {
        if (this.stream.destroyed) return reject(new Error(`xenstore connection closed (${path})`));
        const reqId = this.nextReqId++;
        this.pending.set(reqId, { path, resolve, reject });
        this.stream.write(encodeXsMessage({ type, reqId, txId: 0, payload }));
      });
    const isWatch = type === XsType.WATCH || type === XsType.UNWATCH;
    const ready = isWatch ? Promise.allSettled([this.watchDone, ...this.unanswered]) : this.watchDone;
    const answer = ready.then(send);
    const settled = answer.catch(() => undefined);
    if (isWatch) this.watchDone = settled;
    this.unanswered.add(settled);
    void settled.then(() => this.unanswered.delete(settled));
    return answer;
  }

  private dispatch(message: XsMessage): void {
    if (message.type === XsType.WATCH_EVENT) {
      const [path = '', token = ''] = splitXsStrings(message.payload);
      this.emit('watch', { path, token });
      return;
    }
    const waiter = this.pending.get(message.reqId);
    if (!waiter) return;
    this.pending.delete(message.reqId);
    if (message.type === XsType.ERROR) waiter.reject(new XenstoreError(splitXsStrings(message.payload)[0] ?? 'EIO', waiter.path));
    else waiter.resolve(message);
  }

  private failAll(error: Error): void {
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
    if (this.listenerCount('error') > 0) this.emit('error', error);
  }
}

/**
 * /dev/xen/xenbus as a stream: opened non-blocking and drained on a short timer (see NonblockingDevice), because a
 * blocking read would pin a thread-pool thread that process exit then waits for. Each write() is one whole message.
 */
export function openXenbusDevice(path: string, pollMs = 50): Duplex {
  const device = new NonblockingDevice(path, 'read-write', HEADER_BYTES + XENSTORE_PAYLOAD_MAX);
  const stream: Duplex = new Duplex({
    read() {
      // data is pushed by the poller
    },
    write(chunk: Buffer, _encoding, callback) {
      try {
        device.write(chunk);
        callback();
      } catch (error) {
        callback(error as Error);
      }
    },
    destroy(error, callback) {
      device.close();
      callback(error);
    },
  });
  device.poll(pollMs, (chunk) => stream.push(chunk), (error) => stream.destroy(error));
  return stream;
}
