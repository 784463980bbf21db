// QMP framing and correlation against an in-process fake QMP server on a unix socket. A fake is the point here: real
// QEMU never sends the malformed or out-of-order replies these tests need. Real QEMU is exercised by the e2e lab test.
import t, { type Test } from 'tap';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { QmpClient, QmpCommandError, QmpProtocolError, QmpTimeoutError } from '../../../system/qemu/qmp-client.js';

type Handler = (
  command: { execute: string; id?: string; arguments?: unknown },
  reply: (line: string) => void,
  writeRaw: (bytes: string) => void,
) => void;

const GREETING = JSON.stringify({ QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: 'test' }, capabilities: [] } });

/** Speaks QMP's greeting and capabilities handshake, then hands each command to `handler`. */
async function fakeQmp(t: Test, handler: Handler, greeting = GREETING): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-qmp-'));
  const socketPath = path.join(dir, 'qmp.sock');
  const server = net.createServer((socket) => {
    socket.write(`${greeting}\r\n`);
    let buffer = '';
    socket.on('data', (chunk) => {
      buffer += chunk.toString();
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const command = JSON.parse(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        const reply = (line: string) => socket.write(`${line}\r\n`);
        if (command.execute === 'qmp_capabilities') reply(JSON.stringify({ return: {}, id: command.id }));
        else handler(command, reply, (bytes) => socket.write(bytes));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  t.teardown(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return socketPath;
}

t.test('negotiates capabilities and reads the version from the greeting', async (t) => {
  const socket = await fakeQmp(t, (c, reply) => reply(JSON.stringify({ return: { status: 'running' }, id: c.id })));
  const qmp = await QmpClient.connect(socket);
  t.teardown(() => qmp.close());
  t.same(qmp.version?.qemu, { major: 7, minor: 2, micro: 22 });
  t.same(await qmp.execute('query-status'), { status: 'running' });
});

t.test('replies are matched to commands by id even when they come back out of order', async (t) => {
  const held: Array<() => void> = [];
  const socket = await fakeQmp(t, (c, reply) => {
    held.push(() => reply(JSON.stringify({ return: c.execute, id: c.id })));
    if (held.length === 2) {
      held[1]!();
      held[0]!();
    }
  });
  const qmp = await QmpClient.connect(socket);
  t.teardown(() => qmp.close());
  const [a, b] = await Promise.all([qmp.execute('first'), qmp.execute('second')]);
  t.equal(a, 'first');
  t.equal(b, 'second');
});

t.test('a reply split across packets and interleaved events are handled', async (t) => {
  const socket = await fakeQmp(t, (c, reply, writeRaw) => {
    const line = JSON.stringify({ return: { ok: true }, id: c.id });
    writeRaw(line.slice(0, 7));
    reply(JSON.stringify({ event: 'STOP', data: {}, timestamp: { seconds: 10, microseconds: 500000 } }));
    setTimeout(() => writeRaw(`${line.slice(7)}\r\n`), 50);
  });
  const qmp = await QmpClient.connect(socket);
  t.teardown(() => qmp.close());
  const events: string[] = [];
  qmp.on('event', (e) => events.push(e.event));
  // The event lands in the middle of an unfinished reply line; framing is by newline, so that line is corrupt.
  const result = await qmp.execute('partial', undefined, 2000).catch((e: Error) => e);
  t.type(result, QmpProtocolError, 'an event spliced into the middle of a reply line makes that line malformed');
  t.same(events, [], 'no event is emitted from a corrupted line');
});

t.test('a reply split across writes, with an event line before it, is reassembled', async (t) => {
  const socket = await fakeQmp(t, (c, reply, writeRaw) => {
    reply(JSON.stringify({ event: 'RESUME', data: {}, timestamp: { seconds: 10, microseconds: 500000 } }));
    const line = JSON.stringify({ return: { ok: true }, id: c.id });
    writeRaw(line.slice(0, 7));
    setTimeout(() => writeRaw(`${line.slice(7)}\r\n`), 50);
  });
  const qmp = await QmpClient.connect(socket);
  t.teardown(() => qmp.close());
  const event = qmp.waitForEvent('RESUME', 2000);
  t.same(await qmp.execute('partial', undefined, 2000), { ok: true });
  t.equal((await event).timestampMs, 10_500);
});

t.test('a QEMU error reply becomes a QmpCommandError with class and description', async (t) => {
  const socket = await fakeQmp(t, (c, reply) =>
    reply(JSON.stringify({ error: { class: 'GenericError', desc: 'no such device' }, id: c.id })),
  );
  const qmp = await QmpClient.connect(socket);
  t.teardown(() => qmp.close());
  const error = await qmp.execute('device_del', { id: 'nic9' }).catch((e: unknown) => e);
  t.type(error, QmpCommandError);
  t.equal((error as QmpCommandError).errorClass, 'GenericError');
  t.match((error as Error).message, /device_del: GenericError: no such device/);
});

t.test('a malformed reply fails every pending command and the connection', async (t) => {
  const socket = await fakeQmp(t, (c, reply) => {
    if (c.execute === 'second') reply('{"return": {}, "id": this is not json');
  });
  const qmp = await QmpClient.connect(socket);
  const first = qmp.execute('first', undefined, 5000);
  const second = qmp.execute('second', undefined, 5000);
  await t.rejects(first, { name: 'QmpProtocolError', message: /malformed reply \(not JSON\)/ });
  await t.rejects(second, QmpProtocolError);
  await t.rejects(qmp.execute('third'), QmpProtocolError, 'nothing more is sent once the stream is out of step');
});

t.test('replies of the wrong shape are protocol errors too', async (t) => {
  for (const bad of ['[1,2,3]', '{"id":"flinch-2"}', '{"return":{},"id":"someone-else"}', '{"error":"oops","id":"flinch-2"}']) {
    const socket = await fakeQmp(t, (_c, reply) => reply(bad));
    const qmp = await QmpClient.connect(socket);
    await t.rejects(qmp.execute('query-status', undefined, 2000), QmpProtocolError, bad);
    qmp.close();
  }
});

t.test('a command nobody answers times out', async (t) => {
  const socket = await fakeQmp(t, () => undefined);
  const qmp = await QmpClient.connect(socket);
  t.teardown(() => qmp.close());
  await t.rejects(qmp.execute('migrate', { uri: 'tcp:127.0.0.1:1' }, 100), QmpTimeoutError);
});

t.test('no greeting, or a socket that is not there, fails with a clear error', async (t) => {
  const silent = await fakeQmp(t, () => undefined, '');
  await t.rejects(QmpClient.connect(silent, 200), QmpTimeoutError);
  await t.rejects(QmpClient.connect('/nonexistent/qmp.sock', 200), { message: /cannot connect to \/nonexistent\/qmp.sock/ });
});
