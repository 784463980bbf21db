// `flinch campaign --driver libvirt --domain NAME` against a domain flinch did not define: this test writes the
// domain's XML and starts it itself, as a user would, on a real libvirtd (started here by hand when none runs), with
// the lab guest's kernel and initramfs and the agent's key from `flinch token`. flinch must find the agent by the
// domain's MAC, migrate it, and leave it running where it was; and refuse, in one line, what it cannot use.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { labGuestImage } from '../../harness/lab/guest-initramfs.js';
import type { LabResults } from '../../harness/report/lab-results.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { freePort } from '../helpers/collector-fixtures.js';
import { ensureLibvirtd, startSecondLibvirtd, testDomainXml, virsh } from '../helpers/libvirtd.js';
import { ipIn, testNetns } from '../helpers/netns.js';
import { busyMachine } from '../helpers/exclusive.js';

await busyMachine(t);

const MAC = '52:54:00:f1:1c:0b';
const AGENT_ID = 'users-own-guest';

/**
 * What a user has before flinch runs: a fleet secret, the guest's key from `flinch token`, and the domain's XML with
 * the agent told where the collector will be. Written here, not by flinch; defined by the caller.
 */
async function usersDomain(t: Test, name: string, bridge?: { name: string; ip: string; gateway: string }) {
  const dir = mkdtempSync(path.join(os.tmpdir(), `flinch-${name}-`));
  const secret = path.join(dir, 'fleet.secret');
  writeFileSync(secret, 'a-users-fleet-secret-0123456789abcdef0123456789\n');
  chmodSync(secret, 0o600);
  const token = await runCli([FLINCH, 'token', '--fleet-secret', secret, '--agent-id', AGENT_ID]);
  t.equal(token.code, 0, 'flinch token gives the guest its key');
  const port = await freePort();
  const image = await labGuestImage('/var/cache/flinch', (line) => t.comment(line));
  const xml = path.join(dir, 'domain.xml');
  const collectorHost = bridge?.gateway ?? '10.0.2.2';
  writeFileSync(xml, testDomainXml({
    name, vmlinuz: image.kernel.vmlinuz, initrd: image.initrd, serialLog: path.join(dir, 'serial.log'), mac: MAC, ...(bridge ? { bridge } : {}),
    cmdline: `flinch.collector=ws://${collectorHost}:${port} flinch.id=${AGENT_ID} flinch.token=${token.stdout.trim()} flinch.remediate=on`,
  }));
  return { dir, secret, port, xml };
}

t.test('a campaign against your own libvirt domain', async (t) => {
  await ensureLibvirtd(t);
  const name = `users-domain-${process.pid}`;
  const { dir, secret, port, xml } = await usersDomain(t, name);
  t.equal(virsh('define', xml).status, 0, 'the test defines the domain');
  t.teardown(() => {
    virsh('destroy', name);
    virsh('undefine', name);
  });
  const own = ['--driver', 'libvirt', '--fleet-secret', secret, '--collector-listen', `127.0.0.1:${port}`];

  const unknown = await runCli([FLINCH, 'campaign', ...own, '--domain', 'no-such-domain', '--out', path.join(dir, 'unknown')]);
  t.equal(unknown.code, 2, 'an unknown domain: exit 2');
  t.match(unknown.stderr, /^flinch: libvirt domain no-such-domain at qemu:\/\/\/system: failed to get domain 'no-such-domain' \(virsh .* list --all shows the domains there\)\n$/, unknown.stderr);

  const off = await runCli([FLINCH, 'campaign', ...own, '--domain', name, '--out', path.join(dir, 'off')]);
  t.equal(off.code, 2, 'a domain that is shut off: exit 2');
  t.match(off.stderr, /^flinch: libvirt domain users-domain-\d+ is shut off, not running: flinch migrates a running domain and never starts one/, off.stderr);
  t.equal(virsh('domstate', name).stdout.trim(), 'shut off', 'and flinch did not start it');

  t.equal(virsh('start', name).status, 0, 'the user starts it');
  const out = path.join(dir, 'campaign');
  // No --agent-id: the agent is the one whose hello lists the domain's MAC.
  const run = await runCli([FLINCH, 'campaign', ...own, '--domain', name, '--faults', 'none', '--migrations', '2', '--expect', 'disrupted', '--out', out], { timeoutMs: 900_000 });
  t.equal(run.code, 0, run.stderr.split('\n').slice(-4).join('\n'));
  t.match(run.stderr, new RegExp(`agent ${AGENT_ID} on \\S+ connected`), 'found by its MAC');
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.equal(results.guest.domain, name, "results name the user's domain");
  t.equal(results.guest.memoryMiB, 512, "its memory, as libvirt has it");
  t.equal(results.migrations.length, 2);
  for (const m of results.migrations) {
    t.notOk(m.error, m.error ?? `migration ${m.index} done`);
    t.ok(typeof m.pauseMs === 'number' && m.pauseMs > m.downtimeMs!, `the pause from libvirt's events: ${m.pauseMs} ms (save's downtime ${m.downtimeMs} ms)`);
    t.equal(m.verdictSource, 'agent', `judged by the agent in the user's guest: ${m.verdict}`);
  }
  t.equal(virsh('domstate', name).stdout.trim(), 'running', 'left running');
  t.equal(virsh('dominfo', name).status, 0, 'still defined: flinch neither destroyed nor undefined it');
  t.notOk(existsSync(path.join(out, 'guest.save')), 'its save file is gone');

  const silent = await runCli([FLINCH, 'campaign', ...own, '--domain', name, '--agent-id', 'nobody-here', '--agent-timeout', '3', '--out', path.join(dir, 'silent')]);
  t.equal(silent.code, 1, 'an agent that never says hello: exit 1');
  t.match(silent.stderr, /agent nobody-here did not say hello to ws:\/\/127\.0\.0\.1:\d+ within 3 s/, silent.stderr.trim().split('\n').slice(-1)[0] ?? '');
  t.equal(virsh('domstate', name).stdout.trim(), 'running', 'and the domain is untouched, still running');
});

t.test('your own domain, live to a second libvirtd: back where it was found, or on --leave-on', async (t) => {
  await ensureLibvirtd(t);
  const second = await startSecondLibvirtd(t);
  const virshThere = (...args: string[]) => spawnSync('virsh', ['-c', second, ...args], { encoding: 'utf8' });
  const name = `users-live-${process.pid}`;
  const { dir, secret, port, xml } = await usersDomain(t, name);
  t.equal(virsh('define', xml).status, 0, 'defined (persistent) on the first libvirtd');
  t.teardown(() => {
    for (const run of [virsh, virshThere]) {
      run('destroy', name);
      run('undefine', name);
    }
  });
  t.equal(virsh('start', name).status, 0, 'started there');
  const live = [FLINCH, 'campaign', '--driver', 'libvirt', '--domain', name, '--fleet-secret', secret, '--collector-listen', `127.0.0.1:${port}`,
    '--libvirt-dest', second, '--libvirt-migrate-uri', 'tcp://127.0.0.1:49300', '--faults', 'none', '--migrations', '1', '--expect', 'disrupted'];
  const there = await runCli([...live, '--agent-id', AGENT_ID, '--out', path.join(dir, 'back')], { timeoutMs: 900_000 });
  t.equal(there.code, 0, there.stderr.split('\n').slice(-4).join('\n'));
  const results = JSON.parse(readFileSync(path.join(dir, 'back', 'results.json'), 'utf8')) as LabResults;
  t.equal(results.migrations[0]?.to, second, 'one live migration, to the second libvirtd');
  t.equal(virsh('domstate', name).stdout.trim(), 'running', 'and migrated back: running on the first again');
  t.match(virsh('dominfo', name).stdout, /Persistent:\s+yes/, 'defined there once more, as it was');
  t.not(virshThere('dominfo', name).status, 0, 'nothing left on the second');

  const stay = await runCli([...live, '--leave-on', second, '--out', path.join(dir, 'stay')], { timeoutMs: 900_000 });
  t.equal(stay.code, 0, stay.stderr.split('\n').slice(-4).join('\n'));
  t.equal(virshThere('domstate', name).stdout.trim(), 'running', '--leave-on: left running on the second libvirtd');
  t.not(virsh('dominfo', name).status, 0, 'and gone from the first, definition and all');
});

t.test('a bridged domain seen from outside: --guest-address beside its agent, and --agentless with nothing but its address', async (t) => {
  // The libvirtd runs in a namespace of the test's own, where the domain's bridge is, and flinch runs there too: the
  // guest's address is reachable from flinch as a bridged guest's is from its host.
  const netns = await testNetns(t);
  await ipIn(netns, 'link', 'set', 'lo', 'up');
  await ipIn(netns, 'link', 'add', 'flbr0', 'type', 'bridge');
  await ipIn(netns, 'addr', 'add', '10.199.0.1/24', 'dev', 'flbr0');
  await ipIn(netns, 'link', 'set', 'flbr0', 'up');
  const uri = await startSecondLibvirtd(t, netns);
  const virshThere = (...args: string[]) => spawnSync('virsh', ['-c', uri, ...args], { encoding: 'utf8' });
  const name = `users-bridged-${process.pid}`;
  const { dir, secret, port, xml } = await usersDomain(t, name, { name: 'flbr0', ip: '10.199.0.10/24', gateway: '10.199.0.1' });
  t.equal(virshThere('define', xml).status, 0, 'defined on the libvirtd of the namespace');
  t.teardown(() => {
    virshThere('destroy', name);
    virshThere('undefine', name);
  });
  const started = virshThere('start', name);
  t.equal(started.status, 0, `and started ${started.stderr}`);
  const inNamespace = { prefix: ['ip', 'netns', 'exec', netns], timeoutMs: 900_000 };
  const base = [FLINCH, 'campaign', '--driver', 'libvirt', '--libvirt-uri', uri, '--domain', name, '--faults', 'none', '--migrations', '1', '--expect', 'disrupted'];

  const withAgent = await runCli([...base, '--fleet-secret', secret, '--collector-listen', `10.199.0.1:${port}`, '--guest-address', '10.199.0.10', '--out', path.join(dir, 'with-agent')], inNamespace);
  t.equal(withAgent.code, 0, withAgent.stderr.split('\n').slice(-4).join('\n'));
  const measured = (JSON.parse(readFileSync(path.join(dir, 'with-agent', 'results.json'), 'utf8')) as LabResults).migrations[0]!;
  t.equal(measured.verdictSource, 'agent', `the agent judged: ${measured.verdict}`);
  t.ok(measured.outside && measured.outside.received > 0, `and the outside view saw the guest answer (${measured.outside?.received} of ${measured.outside?.sent} ICMP timestamps)`);
  t.ok(measured.outside!.longestGapMs >= measured.pauseMs! - 50, `its longest gap, ${measured.outside!.longestGapMs} ms, covers the save/restore's pause (${measured.pauseMs} ms)`);

  const agentless = await runCli([...base, '--agentless', '--guest-address', '10.199.0.10', '--out', path.join(dir, 'agentless')], inNamespace);
  t.equal(agentless.code, 0, agentless.stderr.split('\n').slice(-4).join('\n'));
  const outside = (JSON.parse(readFileSync(path.join(dir, 'agentless', 'results.json'), 'utf8')) as LabResults).migrations[0]!;
  t.equal(outside.verdictSource, 'outside', `judged from outside alone: ${outside.verdict} (${outside.reasons.slice(0, 2).join('; ')})`);
  t.notOk(outside.error, outside.error ?? 'migrated');
  t.equal(virshThere('domstate', name).stdout.trim(), 'running', 'left running');

  for (const [args, pattern] of [
    [['--agentless'], /^flinch: --agentless with --domain measures from outside only: give --guest-address IP\n$/],
    [['--agentless', '--guest-address', '10.199.0.10', '--fleet-secret', secret], /^flinch: --fleet-secret is for the guest's agent, and --agentless says it has none\n$/],
    [['--guest-address', 'not-an-ip', '--fleet-secret', secret, '--collector-listen', `10.199.0.1:${port}`], /^flinch: --guest-address not-an-ip: an IPv4 or IPv6 address\n$/],
  ] as const) {
    const bad = await runCli([...base, ...args, '--out', path.join(dir, 'never')]);
    t.equal(bad.code, 2, `${args.join(' ')}: exit 2`);
    t.match(bad.stderr, pattern);
  }
  const stray = await runCli([FLINCH, 'campaign', '--driver', 'libvirt', '--guest-address', '10.199.0.10', '--out', path.join(dir, 'never')]);
  t.match(stray.stderr, /^flinch: --guest-address is for your own guest: give it with --domain NAME\n$/);
});
