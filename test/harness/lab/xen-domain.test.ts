// A user's own Xen host and domain on the command line: --xl-host/--xl-dest, what xl list and xl network-list say,
// and the one-line usage errors (exit 2). The real Xen host, reached over ssh, is test/xen-lab/xl-ssh.test.ts.
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT, UserError } from '../../../contract/command-line.js';
import { parseXenHost, parseXlList, parseXlNetworkList } from '../../../harness/lab/xen-domain.js';
import { existingGuestFrom, xenHostsFrom } from '../../../harness/lab/campaign-drivers.js';

const usage = (t: Test, fn: () => unknown, message: RegExp) => {
  try {
    fn();
    t.fail(`accepted: ${message.source}`);
  } catch (error) {
    t.ok(error instanceof UserError && error.exitCode === EXIT.usage, message.source);
    t.match((error as Error).message, message);
    t.notMatch((error as Error).message, /\n/, 'one line');
  }
};

t.test('--xl-host: local, or ssh with the user\'s own keys, a port, a user', async (t) => {
  t.same(parseXenHost('--xl-host', 'local'), { remoteShell: null, name: 'localhost', url: 'local' });
  t.same(parseXenHost('--xl-host', 'ssh://xen-1.example'), { remoteShell: ['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', 'root@xen-1.example'], name: 'root@xen-1.example', url: 'ssh://xen-1.example' });
  t.same(parseXenHost('--xl-host', 'ssh://admin@[fd00::2]:2222').remoteShell, ['ssh', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10', '-p', '2222', 'admin@fd00::2']);
  for (const bad of ['xen-1', 'http://xen-1', 'ssh://-oProxyCommand=x', 'ssh://root@xen-1:0', 'ssh://root@xen-1:70000', 'ssh://ro ot@x', 'ssh://x;reboot']) {
    usage(t, () => parseXenHost('--xl-host', bad), /--xl-host .*: give local or ssh:\/\/\[user@\]host\[:port\]/);
  }
  // Nothing that reaches ssh can be taken for one of its options.
  fc.assert(fc.property(fc.string(), (value) => {
    try {
      const host = parseXenHost('--xl-host', value);
      return host.remoteShell === null || !host.remoteShell.at(-1)!.startsWith('-');
    } catch (error) {
      return error instanceof UserError;
    }
  }), { numRuns: 2000 });
});

t.test('xl list and xl network-list, as Xen 4.17 prints them', async (t) => {
  const list = 'Name                                        ID   Mem VCPUs\tState\tTime(s)\nweb-1                                        7   512     1     -b----       9.3\n';
  t.same(parseXlList(list, 'web-1'), { domid: 7, memoryMiB: 512, state: '-b----' });
  t.equal(parseXlList(list, 'web'), null);
  const nets = 'Idx BE Mac Addr.         handle state evt-ch   tx-/rx-ring-ref BE-path\n0   0  00:16:3E:F1:1C:02  0     4     15     1280/1281         /local/domain/0/backend/vif/7/0\n';
  t.same(parseXlNetworkList(nets), ['00:16:3e:f1:1c:02']);
  t.same(parseXlNetworkList('libxl: error'), []);
});

t.test('--driver xl and its hosts', async (t) => {
  t.equal(xenHostsFrom({ driver: 'libvirt' }), null);
  t.equal(xenHostsFrom({ driver: 'xl', xlHost: 'ssh://root@h1', xlDest: 'ssh://root@h2' })!.dest!.name, 'root@h2');
  usage(t, () => xenHostsFrom({ driver: 'xl' }), /--driver xl needs --xl-host/);
  usage(t, () => xenHostsFrom({ driver: 'libvirt', xlHost: 'local' }), /--xl-host is for --driver xl/);
  usage(t, () => xenHostsFrom({ driver: 'xl', xlHost: 'ssh://root@h1', xlDest: 'ssh://root@h1' }), /--xl-dest: another Xen host than --xl-host/);
  usage(t, () => xenHostsFrom({ driver: 'xl', xlHost: 'ssh://root@h1', xlDest: 'local' }), /--xl-dest: another Xen host/);
  // ssh reads the passwd entry's ~/.ssh, not $HOME's: a configuration elsewhere is given by file, to both hosts' ssh.
  const config = path.join(mkdtempSync(path.join(os.tmpdir(), 'flinch-ssh-config-')), 'config');
  writeFileSync(config, 'Host h1\n  Port 2222\n');
  const both = xenHostsFrom({ driver: 'xl', xlHost: 'ssh://root@h1', xlDest: 'ssh://root@h2', sshConfig: config })!;
  t.same(both.host.remoteShell!.slice(0, 3), ['ssh', '-F', config]);
  t.same(both.dest!.remoteShell!.slice(0, 3), ['ssh', '-F', config]);
  usage(t, () => xenHostsFrom({ driver: 'xl', xlHost: 'ssh://root@h1', sshConfig: `${config}.missing` }), /--ssh-config .*config\.missing: not a readable file/);
  usage(t, () => xenHostsFrom({ driver: 'xl', xlHost: 'ssh://root@h1', sshConfig: path.dirname(config) }), /not a readable file/);
  usage(t, () => xenHostsFrom({ driver: 'libvirt', sshConfig: config }), /--ssh-config is for --driver xl/);
  const own = { driver: 'xl', domain: 'web-1', fleetSecret: '/etc/flinch/fleet.secret', collectorListen: '10.0.0.1:7431', xlHost: 'ssh://root@h1' };
  t.equal(existingGuestFrom(own)!.domain, 'web-1');
  usage(t, () => existingGuestFrom({ ...own, leaveOn: 'ssh://root@h2' }), /--leave-on is for live migrations: give --xl-dest too/);
  usage(t, () => existingGuestFrom({ ...own, xlDest: 'ssh://root@h2', leaveOn: 'qemu:///system' }), /--leave-on qemu:\/\/\/system: choose --xl-host or --xl-dest/);
  usage(t, () => existingGuestFrom({ ...own, driver: 'sim' }), /--domain is for --driver libvirt or xl, not sim/);
});
