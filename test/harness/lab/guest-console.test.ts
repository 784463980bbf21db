// The lab console against a real interactive shell on a real pty (util-linux `script`). The stand-in is the serial
// port between them, which cannot be had here without booting a guest: what arrives before the port is opened is lost
// (the shell starts a second after the connection), and so are the first bytes after it (the 8250 driver clears its
// 16-byte FIFO on open; one more here, so that the cut falls inside a quoted marker).
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { GuestConsole } from '../../../harness/lab/guest-console.js';

const PORT_OPENS_AFTER_MS = 1000;

function shellBehindSerialPort(t: Test, lostOnOpen: number): string {
  const socketPath = path.join(mkdtempSync(path.join(os.tmpdir(), 'flinch-console-')), 'console.sock');
  const server = net.createServer((socket) => {
    let shell: ReturnType<typeof spawn> | null = null;
    let lost = 0;
    const opening = setTimeout(() => {
      shell = spawn('script', ['-qfec', 'env PS1= sh -i', '/dev/null'], { stdio: ['pipe', 'pipe', 'ignore'] });
      shell.stdout!.pipe(socket);
    }, PORT_OPENS_AFTER_MS);
    socket.on('data', (chunk: Buffer) => {
      if (!shell) return;
      const kept = chunk.subarray(Math.min(chunk.length, lostOnOpen - lost));
      lost += chunk.length - kept.length;
      if (kept.length > 0) shell.stdin!.write(kept);
    });
    const end = () => {
      clearTimeout(opening);
      shell?.kill('SIGKILL');
    };
    socket.on('close', end);
    socket.on('error', () => undefined);
    t.teardown(end);
  });
  server.listen(socketPath);
  t.teardown(() => server.close());
  return socketPath;
}

t.test('a first command cut mid-quote (the FIFO cleared on open) does not leave the console hung', async (t) => {
  const guest = await GuestConsole.connect(shellBehindSerialPort(t, 17));
  t.teardown(() => guest.close());
  await guest.waitReady(15_000);
  t.equal(await guest.check('echo "it answers"'), 'it answers');
  const failed = await guest.run('false');
  t.equal(failed.exitCode, 1, 'the exit status travels in the closing marker');
});

t.test('an intact console answers at once, and the interrupt harms nothing', async (t) => {
  const guest = await GuestConsole.connect(shellBehindSerialPort(t, 0));
  t.teardown(() => guest.close());
  await guest.waitReady(15_000);
  t.equal(await guest.check('printf "%s-%s" a b'), 'a-b');
});
