// Pure functions the safety net and the metrics endpoint rely on, on their own.
import t from 'tap';
import { splitIptablesSave } from '../../../agent/remediation/live-state.js';
import { parseHostPort } from '../../../agent/metrics/agent-metrics.js';
import { runCommand } from '../../../agent/system/run-command.js';
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
