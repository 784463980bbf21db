// `flinch-agent snapshot --json` in a namespace with real state: every probe answers, and nothing is changed.
import t from 'tap';
import { runCommand } from '../../system/run-command.js';
import { ipIn, testNetns } from '../helpers/netns.js';
import { FLINCH_AGENT, runCli } from '../helpers/run-cli.js';

t.test('snapshot shows every probe', async (t) => {
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb');
  await ipIn(netns, 'addr', 'add', '192.0.2.10/24', 'dev', 'va');
  await ipIn(netns, 'link', 'set', 'va', 'up');
  await runCommand('ip', ['netns', 'exec', netns, 'nft', 'add table inet user; add chain inet user input { type filter hook input priority 0; }; add rule inet user input iif va drop']);
  await runCommand('ip', ['netns', 'exec', netns, 'iptables-legacy', '-A', 'INPUT', '-j', 'ACCEPT']);
  const result = await runCli([FLINCH_AGENT, 'snapshot', '--json'], { prefix: ['ip', 'netns', 'exec', netns] });
  t.equal(result.code, 0, result.stderr);
  t.equal(result.stdout.trimEnd().split('\n').length, 1, 'one JSON line');
  const snapshot = JSON.parse(result.stdout);
  t.equal(snapshot.type, 'snapshot');
  t.equal(snapshot.schema, 'flinch.snapshot/v1');
  const { link, addressing, nftables, iptables, clock, kmsg, xen } = snapshot.probes;
  t.same(link.links.map((l: { name: string }) => l.name).sort(), ['lo', 'va', 'vb']);
  t.ok(addressing.addresses.some((a: { address: string }) => a.address === '192.0.2.10'));
  t.equal(nftables.rules.length, 1);
  t.match(nftables.hash, /^[0-9a-f]{16}$/);
  t.same(nftables.canaries, [], 'a snapshot installs no canaries');
  t.equal(iptables['iptables-legacy ipv4'].rules.length, 1);
  t.type(clock.sample.boottimeMs, 'number');
  t.type(clock.clocksource, 'string');
  t.type(kmsg.lastSeq, 'number');
  t.same(xen, { unavailable: 'not a Xen guest' });
  const human = await runCli([FLINCH_AGENT, 'snapshot'], { prefix: ['ip', 'netns', 'exec', netns] });
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^link\s+links: 3\b/m, 'without --json, a line a probe, counted');
  t.match(human.stdout, /^xen\s+unavailable: not a Xen guest$/m);
  const tables = await runCommand('ip', ['netns', 'exec', netns, 'nft', 'list', 'tables']);
  t.notMatch(tables.stdout, /flinch_canary/, 'and the system is as it was');
});
