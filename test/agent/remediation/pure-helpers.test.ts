// Pure functions the safety net and the metrics endpoint rely on, on their own.
import t from 'tap';
import { splitIptablesSave } from '../../../agent/remediation/live-state.js';
import { findLosses } from '../../../agent/remediation/safety-net.js';
import { parseHostPort } from '../../../contract/command-line.js';
import { runCommand } from '../../../system/run-command.js';
import { testNetns } from '../../helpers/netns.js';

t.test('HOST:PORT and [v6]:PORT, and nothing else', async (t) => {
  t.same(parseHostPort('127.0.0.1:9431'), { host: '127.0.0.1', port: 9431 });
  t.same(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
  t.same(parseHostPort('metrics.internal:65535'), { host: 'metrics.internal', port: 65535 });
  for (const bad of ['127.0.0.1', ':9431', '127.0.0.1:65536', '127.0.0.1:-1', '::1:9431', '[::1]9431', 'a b:1', '127.0.0.1:1.5', '']) {
    t.throws(() => parseHostPort(bad), { message: /is not HOST:PORT/ }, JSON.stringify(bad));
  }
});

t.test("iptables-save output, split into one restorable block per table (iptables' own output, from a namespace)", async (t) => {
  const netns = await testNetns(t);
  const exec = (...args: string[]) => runCommand('ip', ['netns', 'exec', netns, ...args]);
  await exec('iptables-nft', '-A', 'INPUT', '-p', 'tcp', '--dport', '22', '-j', 'ACCEPT');
  await exec('iptables-nft', '-t', 'nat', '-N', 'KUBE-SERVICES');
  await exec('iptables-nft', '-t', 'nat', '-A', 'PREROUTING', '-j', 'KUBE-SERVICES');
  const { stdout } = await exec('iptables-nft-save');
  const blocks = splitIptablesSave(stdout);
  t.same([...blocks.keys()].sort(), ['filter', 'nat']);
  for (const [table, block] of blocks) {
    t.match(block, new RegExp(`^\\*${table}\\n`), `${table} starts with its header`);
    t.match(block, /\nCOMMIT\n$/, `${table} ends with COMMIT`);
    t.notMatch(block, /^#/m, 'no comment lines (they carry dates)');
  }
  t.match(blocks.get('filter'), /-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT/);
  t.match(blocks.get('nat'), /:KUBE-SERVICES - \[0:0\][\s\S]*-A PREROUTING -j KUBE-SERVICES/);
  // Each block goes back on its own: iptables-restore --test accepts it as it is.
  for (const block of blocks.values()) await runCommand('ip', ['netns', 'exec', netns, 'iptables-nft-restore', '--test'], { input: block });
  t.same([...splitIptablesSave('# only a comment\n*filter\n:INPUT ACCEPT [0:0]\n').keys()], [], 'a table cut before its COMMIT is no block');
});

t.test('findLosses: what was taken away is lost (with a repair), what somebody wrote is edited (without one)', async (t) => {
  const eth0 = { mac: '52:54:00:00:00:01', name: 'eth0', mtu: 1500, adminUp: true, addresses: ['192.0.2.10/24'], routes: [{ family: 'inet' as const, destination: 'default', gateway: '192.0.2.1' }] };
  const nft = (lines: string[]) => ({ key: 'nftables inet user', backend: 'nftables' as const, table: 'inet user', family: 'inet', text: '', lines, dynamicSets: [], hash: lines.join('|') });
  const ipt = (text: string) => ({ key: 'iptables-nft ipv4 filter', backend: 'iptables-nft' as const, table: 'filter', family: 'ipv4', text, lines: [], dynamicSets: [], hash: text });
  const iptablesBaseline = '*filter\n:INPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\n-A DOCKER-USER -j RETURN\nCOMMIT\n';
  const baseline = {
    interfaces: { [eth0.mac]: eth0, '52:54:00:00:00:02': { ...eth0, mac: '52:54:00:00:00:02', name: 'eth1', addresses: [], routes: [] } },
    firewall: { 'nftables inet user': nft(['table', 'chain input', 'rule a', 'rule b']), 'iptables-nft ipv4 filter': ipt(iptablesBaseline) },
    canaries: [],
  };
  t.same(findLosses(baseline, baseline), [], 'nothing differs, nothing is lost');

  const current = {
    interfaces: { [eth0.mac]: { ...eth0, adminUp: false, mtu: 1400, addresses: [], routes: [] } },
    firewall: {
      'nftables inet user': nft(['table', 'chain input', 'rule a']),
      'iptables-nft ipv4 filter': ipt('*filter\n:INPUT ACCEPT [0:0]\n:DOCKER-USER - [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n'),
    },
    canaries: [],
  };
  const losses = findLosses(baseline, current);
  t.same(losses.map((l) => [l.kind, l.shape, l.repair !== null]), [
    ['firewall-table', 'lost', false], // nft tables are put back in one batch, not by a repair of their own
    ['firewall-table', 'lost', true],
    ['link-down', 'lost', true],
    ['mtu', 'lost', true],
    ['address', 'lost', true],
    ['route', 'lost', true],
    ['interface-missing', 'lost', false],
  ]);
  t.match(losses[1]!.detail, /lost chain\(s\) DOCKER-USER/);

  const edited = { ...baseline, firewall: { ...baseline.firewall, 'nftables inet user': nft(['table', 'chain input', 'rule a', 'rule c']) } };
  t.same(findLosses(baseline, edited).map((l) => [l.key, l.shape]), [['firewall nftables inet user', 'edited']], 'a rule replaced by another is an edit');
});
