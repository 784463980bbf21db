import { closeSync, constants, openSync, readSync, writeSync } from 'node:fs';

/**
 * Reads a character device (/dev/kmsg, /dev/xen/xenbus) without ever blocking. Node cannot poll such a device (libuv
 * treats it as a file) and a blocking read would hold a thread-pool thread that process exit then waits on forever,
 * so the device is opened O_NONBLOCK and drained on a low-rate timer: each tick reads until EAGAIN. The kernel hands
 * out one record or message per read().
 */
export class NonblockingDevice {
  private readonly fd: number;
  private readonly buffer: Buffer;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly path: string,
    mode: 'read' | 'read-write',
    bufferBytes: number,
  ) {
    this.fd = openSync(path, (mode === 'read' ? constants.O_RDONLY : constants.O_RDWR) | constants.O_NONBLOCK);
    this.buffer = Buffer.alloc(bufferBytes);
  }

  /**
   * Reads everything available now. `onOverrun` is called for EPIPE (/dev/kmsg: records were overwritten before we
   * read them; the next read returns the oldest record still there).
   */
  drain(onData: (chunk: Buffer) => void, onOverrun: () => void = () => undefined): void {
    for (;;) {
      let n: number;
      try {
        n = readSync(this.fd, this.buffer, 0, this.buffer.length, null);
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return;
        if (code === 'EPIPE') {
          onOverrun();
          continue;
        }
        throw error;
      }
      if (n <= 0) return;
      onData(Buffer.from(this.buffer.subarray(0, n)));
    }
  }

  /** Drains every `intervalMs`; errors go to onError and stop the polling. */
  poll(intervalMs: number, onData: (chunk: Buffer) => void, onError: (error: Error) => void, onOverrun?: () => void): void {
    this.timer = setInterval(() => {
      try {
        this.drain(onData, onOverrun);
      } catch (error) {
        this.stopPolling();
        onError(error as Error);
      }
    }, intervalMs);
  }

  write(data: Buffer): void {
    // xenbus takes each message in one write(); a short write would be a protocol error.
    const written = writeSync(this.fd, data, 0, data.length);
    if (written !== data.length) throw new Error(`${this.path}: short write (${written} of ${data.length} bytes)`);
  }

  stopPolling(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  close(): void {
    this.stopPolling();
    closeSync(this.fd);
  }
}
