// A user's own guest on the command line: what `virsh domiflist` says of its interfaces, and the one-line usage errors
// (exit 2) for --domain and the options that go with it. The real domain and libvirtd are in test/e2e/libvirt-domain.
import t from 'tap';
import { EXIT, UserError } from '../../../contract/command-line.js';
import { existingGuestFrom, libvirtMigrateFlagsFrom } from '../../../harness/lab/campaign-drivers.js';
import { parseDomIfList } from '../../../harness/lab/libvirt-domain.js';

t.test('virsh -q domiflist, as libvirt 9.0 prints it', async (t) => {
  const text = ' vnet3      bridge   virbr0    virtio   52:54:00:AB:cd:01\n -          user     -         virtio   52:54:00:f1:1c:0b\n\n';
  t.same(parseDomIfList(text), [
    { type: 'bridge', source: 'virbr0', mac: '52:54:00:ab:cd:01' },
    { type: 'user', source: '-', mac: '52:54:00:f1:1c:0b' },
  ], 'MACs lower-cased as the agent reports them');
  t.same(parseDomIfList('error: failed to get domain'), []);
});

t.test('--domain and its companions', async (t) => {
  const ok = { driver: 'libvirt', domain: 'web-1', fleetSecret: '/etc/flinch/fleet.secret', collectorListen: '192.168.122.1:7431' };
  t.same(existingGuestFrom(ok), { domain: 'web-1', agentId: null, fleetSecretFile: '/etc/flinch/fleet.secret', collectorHost: '192.168.122.1', collectorPort: 7431, leaveOn: null, guestAddress: null });
  t.equal(existingGuestFrom({ driver: 'qmp' }), null, 'no --domain: the lab builds the guest');
  const usage = (flags: Parameters<typeof existingGuestFrom>[0], message: RegExp) => {
    try {
      existingGuestFrom(flags);
      t.fail(`accepted: ${message.source}`);
    } catch (error) {
      t.ok(error instanceof UserError, message.source);
      t.equal((error as UserError).exitCode, EXIT.usage);
      t.match((error as Error).message, message);
      t.notMatch((error as Error).message, /\n/, 'one line');
    }
  };
  usage({ ...ok, driver: 'qmp' }, /--domain is for --driver libvirt or xl, not qmp/);
  usage({ ...ok, fleetSecret: undefined }, /--domain needs --fleet-secret FILE/);
  usage({ ...ok, collectorListen: undefined }, /--domain needs --collector-listen HOST:PORT/);
  usage({ ...ok, collectorListen: '7431' }, /--collector-listen: "7431" is not HOST:PORT/);
  usage({ ...ok, collectorListen: '0.0.0.0:0' }, /not 0/);
  usage({ ...ok, leaveOn: 'qemu:///system' }, /--leave-on is for live migrations/);
  usage({ ...ok, agentId: 'bad id\u001b[2J' }, /--agent-id may hold only/);
  usage({ ...ok, domain: 'a/b' }, /--domain: a libvirt domain name/);
  usage({ ...ok, domain: 'x\u0007' }, /--domain: a libvirt domain name/);
  usage({ driver: 'libvirt', agentId: 'a' }, /--agent-id is for your own guest/);
  usage({ driver: 'libvirt', collectorListen: '1.2.3.4:5' }, /--collector-listen is for your own guest/);
  t.same(existingGuestFrom({ driver: 'libvirt', domain: 'web-1', agentless: true, guestAddress: '10.1.2.3' }), {
    domain: 'web-1', agentId: null, fleetSecretFile: null, collectorHost: '127.0.0.1', collectorPort: 0, leaveOn: null, guestAddress: '10.1.2.3',
  }, '--agentless: measured from outside, no agent, nothing of its collector');
  t.equal(existingGuestFrom({ ...ok, guestAddress: 'fd00::7' })?.guestAddress, 'fd00::7', 'beside the agent, IPv6 too');
  usage({ driver: 'libvirt', domain: 'web-1', agentless: true }, /--agentless with --domain measures from outside only: give --guest-address IP/);
  usage({ ...ok, agentless: true, guestAddress: '10.1.2.3' }, /--fleet-secret is for the guest's agent, and --agentless says it has none/);
  usage({ ...ok, guestAddress: 'web-1.example' }, /--guest-address web-1\.example: an IPv4 or IPv6 address/);
  usage({ driver: 'libvirt', guestAddress: '10.1.2.3' }, /--guest-address is for your own guest/);
});

t.test('--libvirt-migrate-flags: a known list, each once, only for a live migration', async (t) => {
  t.same(libvirtMigrateFlagsFrom(undefined, 'qmp', undefined), []);
  t.same(libvirtMigrateFlagsFrom('unsafe,--auto-converge', 'libvirt', 'qemu+ssh://b/system'), ['unsafe', 'auto-converge']);
  for (const [value, driver, dest, message] of [
    ['unsafe', 'libvirt', undefined, /is for live migrations/],
    ['unsafe', 'sim', 'x', /is for live migrations/],
    ['unsafe,rm -rf', 'libvirt', 'x', /choose from unsafe, copy-storage-all.* \(not rm -rf\)/],
    ['unsafe,unsafe', 'libvirt', 'x', /each flag once/],
    [',', 'libvirt', 'x', /choose from/],
  ] as const) {
    t.throws(() => libvirtMigrateFlagsFrom(value, driver, dest), message);
  }
});
