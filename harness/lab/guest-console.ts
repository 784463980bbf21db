import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

/** ^C: the tty turns it into SIGINT, and an interactive shell drops the line it was reading. */
const INTERRUPT = '\x03';
const INTERRUPT_SETTLE_MS = 300;

export interface ConsoleResult {
  exitCode: number;
  output: string;
}

/**
 * A root shell on the lab guest's second serial port, reached through the QEMU chardev's Unix socket. It exists only in
 * lab images, so the harness can do what a person at the console would (kill a process, flush a firewall) without the
 * agent ever accepting a command. Each command's output is framed by markers carrying a sequence number, and the exit
 * status travels in the closing marker.
 */
export class GuestConsole {
  private buffer = '';
  private sequence = 0;
  private waiter: (() => void) | null = null;
  private closed = false;

  private constructor(private readonly socket: net.Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.buffer += chunk;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  static async connect(socketPath: string, timeoutMs = 10_000): Promise<GuestConsole> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        const socket = await new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect(socketPath, () => resolve(s));
          s.once('error', reject);
        });
        return new GuestConsole(socket);
      } catch (error) {
        if (Date.now() > deadline) throw new Error(`guest console ${socketPath}: ${(error as Error).message}`);
        await sleep(100);
      }
    }
  }

  /**
   * Waits until the shell answers, which it does only once the guest has booted far enough to start it.
   *
   * Each try starts with ^C. What was written before the shell opened the port is partly lost (the 8250 driver clears
   * its FIFO on open), so the shell's first line can start mid-command with an unmatched quote; the shell then waits for
   * the quote to close, and every later command, with its quotes in pairs, only extends the string: a console that
   * never answers (the CI run that failed this way waited 180 s). ^C makes the shell drop that line. The tty flushes its
   * input on the signal, so the command is written only after a pause.
   */
  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the guest console did not answer within ${timeoutMs} ms`);
      try {
        if (this.closed) throw new Error('the guest console is closed');
        this.socket.write(INTERRUPT);
        await sleep(INTERRUPT_SETTLE_MS);
        await this.run('true', Math.min(left, 3000));
        return;
      } catch (error) {
        if (this.closed) throw error;
      }
    }
  }

  async run(command: string, timeoutMs = 30_000): Promise<ConsoleResult> {
    if (this.closed) throw new Error('the guest console is closed');
    const id = ++this.sequence;
    const begin = `__flinch_begin_${id}__`;
    const end = new RegExp(`__flinch_end_${id}__ (\\d+)\\r?\\n`);
    // The markers are printed by printf from parts, so the terminal's echo of this line never contains them whole.
    this.socket.write(`printf '%s\\n' "__flinch_begin_${id}""__"; ${command}; printf '%s %s\\n' "__flinch_end_${id}""__" "$?"\n`);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const start = this.buffer.indexOf(`${begin}\n`) >= 0 ? this.buffer.indexOf(`${begin}\n`) : this.buffer.indexOf(`${begin}\r\n`);
      const match = start >= 0 ? end.exec(this.buffer.slice(start)) : null;
      if (start >= 0 && match) {
        const body = this.buffer.slice(start, start + match.index);
        this.buffer = this.buffer.slice(start + match.index + match[0].length);
        const output = body.slice(body.indexOf('\n') + 1).replace(/\r/g, '');
        return { exitCode: Number(match[1]), output: output.trimEnd() };
      }
      if (this.closed) throw new Error(`the guest console closed while running: ${command}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the guest console gave no answer to "${command}" within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  /** Runs a command that must succeed, returning its output. */
  async check(command: string, timeoutMs?: number): Promise<string> {
    const result = await this.run(command, timeoutMs);
    if (result.exitCode !== 0) throw new Error(`guest: "${command}" exited ${result.exitCode}: ${result.output.split('\n').slice(-3).join(' | ')}`);
    return result.output;
  }

  close(): void {
    this.socket.destroy();
  }
}
