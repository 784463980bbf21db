import t from 'tap';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { listeningInodes, processArguments, processListeningOn } from '../../system/unix-socket-owner.js';

function listen(socketPath: string): Promise<net.Server> {
  return new Promise((resolve) => {
    const server = net.createServer((c) => c.end());
    server.listen(socketPath, () => resolve(server));
  });
}

t.test('the process that listens on a unix socket, found through /proc', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch owner '));
  const socketPath = path.join(dir, 'q m p.sock');
  t.equal(processListeningOn(socketPath), null, 'nobody listens yet');
  const server = await listen(socketPath);
  t.equal(processListeningOn(socketPath), process.pid, 'this test process, found by its socket (the path has spaces)');
  const client = net.createConnection(socketPath);
  await new Promise((resolve) => client.once('connect', resolve));
  t.equal(listeningInodes(socketPath).length, 1, 'the accepted connection is not a second listener');
  client.destroy();
  await new Promise((resolve) => server.close(resolve));
  t.equal(processListeningOn(socketPath), null, 'a closed listener is nobody');
});

t.test("a process's arguments, whole even with spaces", async (t) => {
  const child = spawn('sh', ['-c', 'sleep 30', 'a name with spaces']);
  t.teardown(() => child.kill());
  await new Promise((resolve) => child.once('spawn', resolve));
  t.same(processArguments(child.pid!), ['sh', '-c', 'sleep 30', 'a name with spaces']);
});

t.test('the table is read by columns, flags included', async (t) => {
  const table = [
    'Num       RefCount Protocol Flags    Type St Inode Path',
    '0000000000000000: 00000002 00000000 00010000 0001 01 4242 /run/vm/qmp.sock',
    '0000000000000000: 00000003 00000000 00000000 0001 03 4243 /run/vm/qmp.sock',
    '0000000000000000: 00000002 00000000 00010000 0001 01 4244 @abstract',
    '0000000000000000: 00000002 00000000 00010000 0005 01 4245',
  ].join('\n');
  t.same(listeningInodes('/run/vm/qmp.sock', table), [4242], 'the listener, not its connected peer');
  t.same(listeningInodes('/run/vm/other', table), []);
});
