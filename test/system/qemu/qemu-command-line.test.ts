import t from 'tap';
import fc from 'fast-check';
import { formatKeyval, formatQemuArguments, keyvalGet, keyvalSet, parseKeyval, parseQemuArguments, QemuCommandLineError } from '../../../system/qemu/qemu-command-line.js';

t.test('options: flags, options with values, -- spellings and a bare disk image', async (t) => {
  const argv = ['-nodefaults', '--m', '512', '-machine', 'q35,accel=tcg', 'disk.img', '-S', '-append', 'console=ttyS0 quiet'];
  t.same(parseQemuArguments(argv), [
    { name: 'nodefaults', value: null }, { name: 'm', value: '512' }, { name: 'machine', value: 'q35,accel=tcg' },
    { name: 'hda', value: 'disk.img' }, { name: 'S', value: null }, { name: 'append', value: 'console=ttyS0 quiet' },
  ]);
  t.throws(() => parseQemuArguments(['-m']), QemuCommandLineError, 'an option missing its argument is refused, not read past the end');
});

t.test('key=value lists: implied key, bare flags, ,, escapes', async (t) => {
  const list = parseKeyval('socket,id=c0,path=/tmp/a,,b,server=on,wait=off', 'backend');
  t.same(list, [['backend', 'socket'], ['id', 'c0'], ['path', '/tmp/a,b'], ['server', 'on'], ['wait', 'off']]);
  t.equal(formatKeyval(list, 'backend'), 'socket,id=c0,path=/tmp/a,,b,server=on,wait=off');
  t.equal(keyvalGet(parseKeyval('tcp:host:4444,server,nowait', 'address'), 'server'), 'on', 'a bare flag is on');
  t.same(keyvalSet(list, 'path', '/x'), [['backend', 'socket'], ['id', 'c0'], ['path', '/x'], ['server', 'on'], ['wait', 'off']], 'set keeps the position');
  t.same(keyvalSet([['a', '1']], 'b', '2'), [['a', '1'], ['b', '2']]);
});

t.test('generated lists and command lines read back as they were written', async (t) => {
  const word = fc.string({ unit: fc.constantFrom('a', 'b', ',', '=', '/', ' ', ':', '-', '1'), maxLength: 12 });
  const key = fc.string({ unit: fc.constantFrom('a', 'b', 'c', '-'), minLength: 1, maxLength: 6 });
  fc.assert(fc.property(fc.array(fc.tuple(key, word), { minLength: 1, maxLength: 6 }), (pairs) => {
    const list = pairs.map(([k, v]): [string, string] => [k, v]);
    const text = formatKeyval(list, null);
    if (JSON.stringify(parseKeyval(text, null)) !== JSON.stringify(list)) throw new Error(`${text} did not read back`);
  }));
  t.pass('key=value lists read back');
  const option = fc.oneof(
    fc.constantFrom('nodefaults', 'S', 'daemonize', 'snapshot').map((name) => ({ name, value: null as string | null })),
    fc.tuple(fc.constantFrom('m', 'machine', 'device', 'netdev', 'chardev'), fc.string({ maxLength: 20 })).map(([name, value]) => ({ name, value: value as string | null })),
  );
  fc.assert(fc.property(fc.array(option, { maxLength: 10 }), (options) => {
    if (JSON.stringify(parseQemuArguments(formatQemuArguments(options))) !== JSON.stringify(options)) throw new Error('did not read back');
  }));
  t.pass('command lines read back');
});
