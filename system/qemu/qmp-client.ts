import net from 'node:net';
import { EventEmitter } from 'node:events';

/** QMP broke its own protocol: a line that is not JSON, or a reply of the wrong shape. */
export class QmpProtocolError extends Error {
  constructor(message: string) {
    super(`QMP: ${message}`);
    this.name = 'QmpProtocolError';
  }
}

/** QEMU refused a command: `{"error": {"class": ..., "desc": ...}}`. */
export class QmpCommandError extends Error {
  constructor(
    readonly command: string,
    readonly errorClass: string,
    readonly description: string,
  ) {
    super(`QMP ${command}: ${errorClass}: ${description}`);
    this.name = 'QmpCommandError';
  }
}

export class QmpTimeoutError extends Error {
  constructor(what: string, timeoutMs: number) {
    super(`QMP ${what}: no answer within ${timeoutMs} ms`);
    this.name = 'QmpTimeoutError';
  }
}

export interface QmpEvent {
  event: string;
  data: Record<string, unknown>;
  /** QEMU's own host-realtime stamp of the event, in ms. */
  timestampMs: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** A reply line longer than this is not QMP talking; refuse it rather than buffer without bound. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

/**
 * A QMP client over a unix socket: greeting and capabilities negotiation, replies correlated to commands by id,
 * asynchronous events, and a timeout on every wait. Any malformed input fails every pending command with a
 * QmpProtocolError and closes the connection, because nothing after it can be trusted to line up.
 */
export class QmpClient extends EventEmitter<{ event: [QmpEvent]; close: [] }> {
  private buffer = '';
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private greetingWaiter: { resolve: (g: Record<string, unknown>) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  /** The `QMP.version` part of QEMU's greeting. */
  version: { qemu: { major: number; minor: number; micro: number }; package?: string } | null = null;

  private constructor(private readonly socket: net.Socket) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (error) => this.fail(new QmpProtocolError(`socket error: ${error.message}`)));
    socket.on('close', () => {
      this.fail(new QmpProtocolError('QEMU closed the QMP connection'));
      this.emit('close');
    });
  }

  private static openSocket(socketPath: string, timeoutMs: number): Promise<net.Socket> {
    return new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection(socketPath);
      const timer = setTimeout(() => {
        s.destroy();
        reject(new QmpTimeoutError(`connect ${socketPath}`, timeoutMs));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (error) => {
        clearTimeout(timer);
        reject(new QmpProtocolError(`cannot connect to ${socketPath}: ${error.message}`));
      });
    });
  }

  static async connect(socketPath: string, timeoutMs = 10_000): Promise<QmpClient> {
    const deadline = Date.now() + timeoutMs;
    let socket: net.Socket | null = null;
    while (!socket) {
      try {
        socket = await QmpClient.openSocket(socketPath, Math.max(1, deadline - Date.now()));
      } catch (error) {
        // QEMU creates the socket file when it binds and accepts only once it listens: between the two, a connect is
        // refused. Retry that, briefly; anything else is real.
        const refused = error instanceof QmpProtocolError && /ECONNREFUSED/.test(error.message);
        if (!refused || Date.now() > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    }
    const client = new QmpClient(socket);
    try {
      const greeting = await client.waitForGreeting(timeoutMs);
      client.version = (greeting.QMP as { version?: QmpClient['version'] })?.version ?? null;
      await client.execute('qmp_capabilities', undefined, timeoutMs);
    } catch (error) {
      client.close();
      throw error;
    }
    return client;
  }

  /** Sends one command and resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = 10_000): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const id = `flinch-${this.nextId++}`;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const message: Record<string, unknown> = { execute: command, id };
      if (args !== undefined) message.arguments = args;
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /** Resolves with the first event named `name` that satisfies `match`, or rejects after the timeout. */
  waitForEvent(name: string, timeoutMs: number, match: (event: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const onEvent = (event: QmpEvent) => {
        if (event.event !== name || !match(event)) return;
        cleanup();
        resolve(event);
      };
      const onClose = () => {
        cleanup();
        reject(this.failure ?? new QmpProtocolError('QEMU closed the QMP connection'));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new QmpTimeoutError(`waiting for event ${name}`, timeoutMs));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private waitForGreeting(timeoutMs: number): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new QmpTimeoutError('greeting', timeoutMs)), timeoutMs);
      this.greetingWaiter = {
        resolve: (g) => {
          clearTimeout(timer);
          resolve(g);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.drainLines();
    });
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_LINE_BYTES && !this.buffer.includes('\n')) {
      this.fail(new QmpProtocolError(`reply line longer than ${MAX_LINE_BYTES} bytes`));
      return;
    }
    this.drainLines();
  }

  private drainLines(): void {
    let newline: number;
    while (!this.failure && (newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).trim();
      this.buffer = this.buffer.slice(newline + 1);
      if (line) this.handleLine(line);
    }
  }

  private handleLine(line: string): void {
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch {
      return this.fail(new QmpProtocolError(`malformed reply (not JSON): ${line.slice(0, 120)}`));
    }
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      return this.fail(new QmpProtocolError(`malformed reply (not an object): ${line.slice(0, 120)}`));
    }
    const m = message as Record<string, unknown>;
    if ('QMP' in m) {
      if (!this.greetingWaiter) return; // A greeting that nobody waits for is harmless; ignore it.
      const waiter = this.greetingWaiter;
      this.greetingWaiter = null;
      return waiter.resolve(m);
    }
    if (typeof m.event === 'string') {
      const ts = m.timestamp as { seconds?: number; microseconds?: number } | undefined;
      const timestampMs = (ts?.seconds ?? 0) * 1000 + (ts?.microseconds ?? 0) / 1000;
      this.emit('event', { event: m.event, data: (m.data as Record<string, unknown>) ?? {}, timestampMs });
      return;
    }
    if (!('return' in m) && !('error' in m)) {
      return this.fail(new QmpProtocolError(`malformed reply (no return, error or event): ${line.slice(0, 120)}`));
    }
    const id = typeof m.id === 'string' ? m.id : null;
    const pending = id ? this.pending.get(id) : undefined;
    if (!pending) {
      // QEMU answers every command we send with our id; a reply we cannot place means the stream is out of step.
      return this.fail(new QmpProtocolError(`reply with unknown id ${JSON.stringify(m.id)}: ${line.slice(0, 120)}`));
    }
    this.pending.delete(id!);
    clearTimeout(pending.timer);
    if ('error' in m) {
      const error = m.error as { class?: unknown; desc?: unknown } | null;
      if (typeof error?.class !== 'string' || typeof error?.desc !== 'string') {
        pending.reject(new QmpProtocolError(`malformed error reply to ${pending.command}: ${line.slice(0, 120)}`));
      } else {
        pending.reject(new QmpCommandError(pending.command, error.class, error.desc));
      }
      return;
    }
    pending.resolve(m.return);
  }

  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    for (const [id, pending] of this.pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
      this.pending.delete(id);
    }
    this.greetingWaiter?.reject(error);
    this.greetingWaiter = null;
    this.socket.destroy();
  }
}
