// planUpgrade is a pure function of the old command line and what the host says (UpgradeFacts): these facts are
// written here because the plan is what is under test; test/e2e/qemu-upgrade.test.ts runs it against real QEMUs.
import t from 'tap';
import fc from 'fast-check';
import { planUpgrade, upgradeArguments, type UpgradeFacts } from '../../../harness/upgrade/upgrade-plan.js';
import { parseQemuArguments } from '../../../system/qemu/qemu-command-line.js';

const facts = (overrides: Partial<UpgradeFacts> = {}): UpgradeFacts => ({
  qmpSocket: '/run/vm/qmp.sock',
  machineType: 'pc-q35-7.2',
  links: new Map([['tap-vm0', { master: 'br0', mtu: 9000 }], ['tap-lone', { master: null, mtu: 1500 }]]),
  newPath: (p) => `${p.replace(/\.upgraded-\d+$/, '')}.upgraded-1`,
  newTapName: (tap) => `${tap}-u1`,
  freePorts: [40001, 40002, 40003],
  freeVncDisplays: [7, 8],
  ...overrides,
});

/** A command line as users write it: q35 by its alias, virtio-net on a tap, a qcow2 disk, QMP and serial sockets. */
const USERS = [
  '-name', 'guest=web1', '-machine', 'q35,accel=tcg', '-m', '1024', '-smp', '2', '-nodefaults', '-display', 'none',
  '-drive', 'file=/var/lib/vm/web1.qcow2,if=virtio,format=qcow2,cache=none',
  '-netdev', 'tap,id=net0,ifname=tap-vm0,script=no,downscript=no,vhost=on', '-device', 'virtio-net-pci,netdev=net0,mac=52:54:00:12:34:56',
  '-qmp', 'unix:/run/vm/qmp.sock,server=on,wait=off', '-chardev', 'socket,id=ser0,path=/run/vm/serial.sock,server=on,wait=off', '-serial', 'chardev:ser0',
  '-pidfile', '/run/vm/qemu.pid', '-daemonize', '-vnc', '127.0.0.1:0', '-S',
];

t.test('a typical command line: every shared resource moved, the machine pinned, the rest kept', async (t) => {
  const plan = planUpgrade(USERS, facts());
  t.same(plan.refusals, []);
  const args = upgradeArguments(plan, '/run/vm/qemu.pid.upgraded-1');
  const byName = (name: string) => parseQemuArguments(args).filter((o) => o.name === name).map((o) => o.value);
  t.same(byName('machine'), ['pc-q35-7.2,accel=tcg'], "the alias q35 becomes the type the guest runs: a newer QEMU's q35 is another machine");
  t.same(byName('netdev'), ['tap,id=net0,ifname=tap-vm0-u1,script=no,downscript=no,vhost=on']);
  t.same(plan.taps, [{ name: 'tap-vm0-u1', bridge: 'br0', mtu: 9000, multiQueue: false, replaces: 'tap-vm0' }], 'a second tap on the same bridge, same MTU');
  t.equal(planUpgrade(['-qmp', 'unix:/run/vm/qmp.sock,server=on', '-netdev', 'tap,id=n,ifname=tap-vm0,script=no,queues=4'], facts()).taps[0]?.multiQueue, true, 'queues=4: a multiqueue tap');
  t.same(byName('qmp'), ['unix:/run/vm/qmp.sock.upgraded-1,server=on,wait=off']);
  t.equal(plan.controlSocket, '/run/vm/qmp.sock.upgraded-1', 'flinch drives the new process through the counterpart of --qmp');
  t.same(byName('chardev'), ['socket,id=ser0,path=/run/vm/serial.sock.upgraded-1,server=on,wait=off']);
  t.same(byName('vnc'), ['127.0.0.1:7']);
  t.same(byName('drive'), ['file=/var/lib/vm/web1.qcow2,if=virtio,format=qcow2,cache=none'], 'the disk is shared: QEMU hands it over at the switch');
  t.same(byName('S'), [], '-S is dropped: the guest is already running');
  t.same(byName('pidfile'), ['/run/vm/qemu.pid.upgraded-1']);
  t.equal(plan.pidfile, '/run/vm/qemu.pid');
  t.same(byName('incoming'), ['defer']);
  t.same(byName('daemonize'), [null], 'once');
  t.same(plan.moves.map((m) => m.what), ['netdev net0 tap', '-qmp', 'chardev ser0', 'VNC display']);
});

t.test('upgrading an upgraded process does not grow its names, and finds the pid file by its first name', async (t) => {
  const again = ['-machine', 'pc-q35-7.2,accel=tcg', '-qmp', 'unix:/run/vm/qmp.sock.upgraded-1,server=on,wait=off', '-pidfile', '/run/vm/qemu.pid.upgraded-1', '-incoming', 'defer', '-daemonize'];
  const plan = planUpgrade(again, facts({ qmpSocket: '/run/vm/qmp.sock.upgraded-1', newPath: (p) => `${p.replace(/\.upgraded-\d+$/, '')}.upgraded-2` }));
  t.same(plan.refusals, []);
  t.equal(plan.controlSocket, '/run/vm/qmp.sock.upgraded-2');
  t.equal(plan.pidfile, '/run/vm/qemu.pid', 'the user\'s pid file, which the first upgrade renamed the new process\'s to');
  t.equal(plan.oldPidfile, '/run/vm/qemu.pid.upgraded-1', 'and the name the old process will remove when it quits, which the new one must not get');
  t.same(parseQemuArguments(upgradeArguments(plan, '/p')).filter((o) => o.name === 'incoming').length, 1, 'the old -incoming is not carried over');
});

t.test('no -machine at all: the default machine is pinned too', async (t) => {
  const plan = planUpgrade(['-qmp', 'unix:/run/vm/qmp.sock,server=on'], facts({ machineType: 'pc-i440fx-7.2' }));
  t.same(plan.options[0], { name: 'machine', value: 'pc-i440fx-7.2' });
});

t.test('what cannot move is refused, each with its reason', async (t) => {
  const qmp = ['-qmp', 'unix:/run/vm/qmp.sock,server=on'];
  const cases: Array<[string[], RegExp]> = [
    [['-snapshot'], /-snapshot: .*lost/],
    [['-drive', 'file=a.qcow2,snapshot=on'], /snapshot=on/],
    [['-netdev', 'tap,id=n0,fd=3'], /fd=: a file descriptor/],
    [['-chardev', 'socket,id=charmonitor,fd=29,server=on,wait=off'], /libvirt/],
    [['-netdev', 'tap,id=n0,ifname=tap-lone,script=no'], /on no bridge/],
    [['-netdev', 'tap,id=n0,ifname=tap-gone,script=no'], /does not exist in this network namespace/],
    [['-netdev', 'user,id=n0,hostfwd=tcp::2222-:22'], /hostfwd/],
    [['-net', 'nic'], /legacy -net/],
    [['-serial', 'stdio'], /terminal/],
    [['-serial', 'mon:stdio'], /terminal/],
    [['-nographic'], /terminal/],
    [['-chardev', 'stdio,id=c'], /terminal/],
    [['-device', 'vfio-pci,host=01:00.0'], /passed-through/],
    [['-device', 'vhost-user-fs-pci,chardev=c'], /vhost-user/],
    [['-object', 'memory-backend-memfd,id=m,size=1G,share=on'], /shared guest memory/],
    [['-readconfig', 'vm.cfg'], /configuration file/],
    [['-add-fd', 'fd=3,set=1'], /file descriptors/],
    [['-display', 'gtk'], /window/],
    [['-vnc', ':0,websocket=5700'], /websocket/],
    [['-m'], /needs an argument/],
  ];
  for (const [options, why] of cases) {
    const plan = planUpgrade([...qmp, ...options], facts());
    t.match(plan.refusals.join('; '), why, `${options.join(' ')}: ${plan.refusals.join('; ')}`);
  }
  t.match(planUpgrade(['-m', '512'], facts()).refusals.join(''), /not a QMP socket on this QEMU's command line/, 'a --qmp socket the command line does not name');
  t.same(planUpgrade([...qmp, '-netdev', 'user,id=n0', '-netdev', 'bridge,id=n1,br=br0', '-chardev', 'pty,id=p'], facts()).refusals, [], 'user networking, the bridge helper and a pty move by themselves');
});

t.test('legacy sockets, TCP listeners, SPICE and file logs', async (t) => {
  const plan = planUpgrade([
    '-qmp', 'unix:/run/vm/qmp.sock,server,nowait', '-monitor', 'tcp:127.0.0.1:4444,server,nowait', '-serial', 'file:/var/log/vm.log',
    '-chardev', 'socket,id=m2,host=0.0.0.0,port=5555,server=on', '-spice', 'port=5930,addr=127.0.0.1,disable-ticketing=on', '-chardev', 'file,id=f,path=/var/log/x',
  ], facts());
  t.same(plan.refusals, []);
  const args = upgradeArguments(plan, '/p');
  t.ok(args.includes('unix:/run/vm/qmp.sock.upgraded-1,server=on,nowait=on') || args.includes('unix:/run/vm/qmp.sock.upgraded-1,server,nowait'), args.join(' '));
  t.ok(args.includes('tcp:127.0.0.1:40001,server,nowait'), 'the monitor port moves to a free one');
  t.ok(args.includes('file,id=upgrade-serial0,path=/var/log/vm.log,append=on') && args.includes('chardev:upgrade-serial0'), 'a serial log is appended to, not truncated');
  t.ok(args.includes('socket,id=m2,host=0.0.0.0,port=40002,server=on'));
  t.ok(args.includes('port=40003,addr=127.0.0.1,disable-ticketing=on'));
  t.ok(args.includes('file,id=f,path=/var/log/x,append=on'));
});

t.test('any command line: a plan or refusals, never a crash, and a plan that reads back', async (t) => {
  const word = fc.oneof(
    fc.constantFrom('-netdev', '-chardev', '-qmp', '-serial', '-vnc', '-spice', '-machine', '-drive', '-device', '-object', '-pidfile', '-incoming', '-S', '-snapshot', '-display', '-monitor', '-nic', '-D'),
    fc.constantFrom('tap,id=n0,ifname=tap-vm0,script=no', 'unix:/run/vm/qmp.sock,server=on', 'socket,id=c,path=/x,server=on', ':0', 'port=1', 'q35', 'stdio', 'tcp:h:1,server', 'file:/l', 'defer', ',,,', '=', 'unix:', 'tcp:', 'vnc=:1'),
    fc.string({ maxLength: 12 }),
  );
  fc.assert(fc.property(fc.array(word, { maxLength: 16 }), (argv) => {
    const plan = planUpgrade(argv, facts());
    if (plan.refusals.length > 0) return;
    const again = parseQemuArguments(upgradeArguments(plan, '/p'));
    if (again.filter((o) => o.name === 'incoming').length !== 1) throw new Error(`not one -incoming: ${argv.join(' ')}`);
    if (again.filter((o) => o.name === 'machine').length < 1) throw new Error(`no machine: ${argv.join(' ')}`);
  }), { numRuns: 2000 });
  t.pass('2000 generated command lines');
});
