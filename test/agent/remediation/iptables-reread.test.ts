// The safety net's iptables repair against another writer that refills a chain between the reading that found the
// loss and the write (kube-proxy's check-then-add, a service reload). Node cannot enter a namespace, so this file is
// also the program that runs the repair inside one: real iptables-nft, real chains, the writer's step made at the
// worst moment on purpose instead of waited for.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { testNetns } from '../../helpers/netns.js';
import { runCommand } from '../../../system/run-command.js';

const SELF = fileURLToPath(import.meta.url);

const SCRIPT = '*nat\n:KUBE-SERVICES - [0:0]\n-A PREROUTING -j KUBE-SERVICES\n-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.0.0.5:53\nCOMMIT\n';

/** In the namespace: baseline, flush, the loss read, `writer` refills, then the repair; prints what it wrote and the table. */
async function repairAfterWriter(writer: 'jump' | 'all' | 'none'): Promise<void> {
  const { captureFirewall } = await import('../../../agent/remediation/live-state.js');
  const { compareTable } = await import('../../../agent/remediation/firewall-loss.js');
  const { restoreIptablesTable } = await import('../../../agent/remediation/restore.js');
  const key = 'iptables-nft ipv4 nat';
  const baseline = (await captureFirewall()).firewall[key]!;
  await runCommand('iptables-nft', ['-t', 'nat', '-F']);
  const current = (await captureFirewall()).firewall[key];
  const change = compareTable(baseline, current);
  if (change?.shape !== 'lost') throw new Error(`expected a loss, got ${JSON.stringify(change)}`);
  if (writer === 'jump' || writer === 'all') await runCommand('iptables-nft', ['-t', 'nat', '-A', 'PREROUTING', '-j', 'KUBE-SERVICES']);
  if (writer === 'all') await runCommand('iptables-nft-restore', ['--noflush'], { input: SCRIPT.replace('-A PREROUTING -j KUBE-SERVICES\n', '') });
  const command = await restoreIptablesTable(baseline, current, change.lostChains, false);
  const { stdout } = await runCommand('iptables-nft-save', ['-t', 'nat']);
  process.stdout.write(JSON.stringify({ lostChains: change.lostChains, command, rules: stdout.split('\n').filter((l) => l.startsWith('-A ')) }));
}

if (process.argv[1] === SELF && process.argv[2] === 'repair') {
  repairAfterWriter(process.argv[3] as 'jump' | 'all' | 'none').catch((error) => {
    process.stderr.write(`${(error as Error).stack}\n`);
    process.exit(1);
  });
} else {
  const inNamespace = async (netns: string, writer: string) => new Promise<{ lostChains: string[]; command: string; rules: string[] }>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, ...process.execArgv, SELF, 'repair', writer], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`exit ${code}: ${err}`))));
  });
  const ready = async (t: Test) => {
    const netns = await testNetns(t);
    await runCommand('ip', ['netns', 'exec', netns, 'iptables-nft-restore', '--noflush'], { input: SCRIPT });
    return netns;
  };
  const JUMP = '-A PREROUTING -j KUBE-SERVICES';
  const DNAT = '-A KUBE-SERVICES -d 10.96.0.10/32 -p udp -m udp --dport 53 -j DNAT --to-destination 10.0.0.5:53';

  t.test('a jump put back by another writer after the loss was read is not appended a second time', async (t) => {
    const result = await inNamespace(await ready(t), 'jump');
    t.same(result.lostChains.sort(), ['KUBE-SERVICES', 'PREROUTING'], 'both chains read as lost');
    t.same(result.rules, [JUMP, DNAT], 'one jump (the writer\'s), and the chain the writer left empty put back');
    t.notMatch(result.command, /-A PREROUTING/, 'flinch wrote no jump');
  });

  t.test('when the other writer put everything back, nothing is written', async (t) => {
    const result = await inNamespace(await ready(t), 'all');
    t.same(result.rules, [JUMP, DNAT]);
    t.match(result.command, /^# nothing written: .*put back by another writer/);
  });

  t.test('with no other writer, every lost chain goes back once', async (t) => {
    const result = await inNamespace(await ready(t), 'none');
    t.same(result.rules, [JUMP, DNAT]);
    t.match(result.command, /--noflush/);
  });
}
