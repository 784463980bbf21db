// `flinch qemu-upgrade` against a QEMU flinch did not start: this test starts Debian 12's QEMU 7.2 itself with a
// command line as users write one (q35 by its alias, virtio-net on a tap on a bridge, a qcow2 disk, QMP and serial
// sockets, a pid file, -daemonize), the lab guest's kernel and initramfs inside with its agent told where a collector
// will be. flinch must move the guest to QEMU 10.0 (Debian's bookworm-backports, fetched into the cache), have the
// guest's agent judge it, leave the new process running it, and do it again from there; and refuse, in one line and
// changing nothing, what it cannot move.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentKernelArguments, labGuestImage } from '../../harness/lab/guest-initramfs.js';
import type { LabNetwork } from '../../harness/lab/lab-network.js';
import { fetchQemuRelease } from '../../harness/lab/qemu-release.js';
import type { LabResults } from '../../harness/report/lab-results.js';
import { listLinks } from '../../system/ip.js';
import { QmpClient } from '../../system/qemu/qmp-client.js';
import { processAlive } from '../../system/unix-socket-owner.js';
import { ipIn, testNetns } from '../helpers/netns.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { busyMachine } from '../helpers/exclusive.js';

await busyMachine(t);

const CACHE = '/var/cache/flinch';
const MAC = '52:54:00:f1:1c:0c';
const AGENT_ID = 'users-own-qemu';
const COLLECTOR_PORT = 7431;
const SECRET = 'a-users-fleet-secret-0123456789abcdef0123456789';

/** The user's host: a bridge with an address, and the tap they made for their VM, in a namespace of this test's. */
async function usersHost(t: Test): Promise<LabNetwork> {
  const netns = await testNetns(t);
  const network: LabNetwork = { netns, bridge: 'br0', hostAddress: '10.0.3.1', prefixLength: 24, guestAddress: '10.0.3.10', taps: ['tapvm0', 'unused'] };
  await ipIn(netns, 'link', 'add', 'br0', 'type', 'bridge');
  await ipIn(netns, 'addr', 'add', '10.0.3.1/24', 'dev', 'br0');
  await ipIn(netns, 'link', 'set', 'br0', 'up');
  await ipIn(netns, 'tuntap', 'add', 'dev', 'tapvm0', 'mode', 'tap');
  await ipIn(netns, 'link', 'set', 'tapvm0', 'master', 'br0', 'up');
  return network;
}

/** Kills, by the PID its pid file names, the QEMU the test or flinch left running at the end. */
function killByPidfile(t: Test, pidfile: string) {
  t.teardown(async () => {
    const pid = existsSync(pidfile) ? Number(readFileSync(pidfile, 'utf8').trim()) : 0;
    if (pid > 0 && processAlive(pid)) {
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 50 && processAlive(pid); i += 1) await sleep(100);
    }
  });
}

function qemu(netns: string | null, argv: string[]) {
  const run = spawnSync(netns ? 'ip' : argv[0]!, netns ? ['netns', 'exec', netns, ...argv] : argv.slice(1), { encoding: 'utf8' });
  return run;
}

async function status(socket: string): Promise<{ status: string; machine: string; version: string }> {
  const qmp = await QmpClient.connect(socket, 10_000);
  try {
    const { status } = await qmp.execute<{ status: string }>('query-status');
    const machine = await qmp.execute<string>('qom-get', { path: '/machine', property: 'type' });
    return { status, machine, version: `${qmp.version!.qemu.major}.${qmp.version!.qemu.minor}` };
  } finally {
    qmp.close();
  }
}

t.test("your own QEMU, upgraded in place to QEMU 10.0 while the guest runs, judged by the guest's agent", async (t) => {
  const network = await usersHost(t);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-users-qemu-'));
  const secret = path.join(dir, 'fleet.secret');
  writeFileSync(secret, `${SECRET}\n`);
  chmodSync(secret, 0o600);
  const image = await labGuestImage(CACHE, (line) => t.comment(line));
  const newQemu = await fetchQemuRelease(CACHE, (line) => t.comment(line));
  const disk = path.join(dir, 'disk.qcow2');
  t.equal(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '256M']).status, 0, 'the user makes a qcow2 disk');
  const qmpSocket = path.join(dir, 'qmp.sock');
  const pidfile = path.join(dir, 'qemu.pid');
  killByPidfile(t, pidfile);
  const append = ['console=ttyS0', 'panic=-1', 'quiet', ...agentKernelArguments({ network, collectorPort: COLLECTOR_PORT, agentId: AGENT_ID, fleetSecret: SECRET })].join(' ');
  const start = qemu(network.netns, [
    'qemu-system-x86_64', '-name', 'guest=users-vm', '-machine', 'q35,accel=tcg', '-cpu', 'qemu64', '-m', '512', '-smp', '1', '-nodefaults', '-display', 'none',
    '-kernel', image.kernel.vmlinuz, '-initrd', image.initrd, '-append', append,
    '-drive', `file=${disk},if=virtio,format=qcow2`,
    '-netdev', 'tap,id=net0,ifname=tapvm0,script=no,downscript=no', '-device', `virtio-net-pci,netdev=net0,mac=${MAC}`,
    '-qmp', `unix:${qmpSocket},server=on,wait=off`, '-chardev', `socket,id=ser0,path=${path.join(dir, 'serial.sock')},server=on,wait=off`, '-serial', 'chardev:ser0',
    '-pidfile', pidfile, '-daemonize',
  ]);
  t.equal(start.status, 0, `the user starts QEMU 7.2 (${start.stderr.trim() || 'daemonized'})`);
  const oldPid = Number(readFileSync(pidfile, 'utf8').trim());
  t.same(await status(qmpSocket), { status: 'running', machine: 'pc-q35-7.2-machine', version: '7.2' }, 'q35 is pc-q35-7.2 on this QEMU');

  const inNetns = { prefix: ['ip', 'netns', 'exec', network.netns], timeoutMs: 900_000 };
  const dry = await runCli([FLINCH, 'qemu-upgrade', '--qmp', qmpSocket, '--to', newQemu, '--dry-run', '--out', path.join(dir, 'dry')], inNetns);
  t.equal(dry.code, 0, dry.stderr);
  t.match(dry.stdout, /would move netdev net0 tap: tapvm0 -> tapvm0-u1 \(created on br0\)/);
  t.match(dry.stdout, /-machine pc-q35-7\.2,accel=tcg .* -incoming defer -daemonize -pidfile /, 'the alias pinned in the new command line');
  t.equal(Number(readFileSync(pidfile, 'utf8')), oldPid, '--dry-run changes nothing');
  t.notOk((await listLinks({ netns: network.netns })).some((l) => l.ifname === 'tapvm0-u1'), 'and creates no tap');

  const out = path.join(dir, 'upgrade');
  const run = await runCli([FLINCH, 'qemu-upgrade', '--qmp', qmpSocket, '--to', newQemu, '--fleet-secret', secret, '--collector-listen', `${network.hostAddress}:${COLLECTOR_PORT}`,
    '--agent-timeout', '300', '--guest-address', network.guestAddress, '--out', out], inNetns);
  t.equal(run.code, 0, run.stderr.split('\n').slice(-4).join('\n'));
  t.match(run.stderr, new RegExp(`agent ${AGENT_ID} on \\S+ connected`), 'the agent found by its MAC');
  t.match(run.stdout, new RegExp(`QEMU 7\\.2\\.\\d+ \\(PID ${oldPid}\\) -> QEMU 10\\.0\\.\\d+ \\(PID \\d+\\), machine pc-q35-7\\.2: the guest paused \\d+ ms`), run.stdout);
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  const m = results.migrations[0]!;
  t.equal(results.migrations.length, 1);
  t.notOk(m.error, m.error ?? 'migrated');
  t.equal(m.verdictSource, 'agent', `judged by the agent in the user's guest: ${m.verdict} (${m.reasons.slice(0, 3).join('; ')})`);
  t.ok(typeof m.pauseMs === 'number' && m.pauseMs >= (m.downtimeMs ?? 0) && m.pauseMs > 0, `the pause from the two QEMUs' STOP and RESUME: ${m.pauseMs} ms ≥ downtime ${m.downtimeMs} ms`);
  t.equal(results.hypervisor.driver, 'qemu-upgrade');
  t.ok(m.outside && m.outside.sent > 100 && m.outside.longestGapMs > 0, `seen from outside too (--guest-address): ${m.outside?.received}/${m.outside?.sent} ICMP timestamps answered, longest gap ${m.outside?.longestGapMs} ms, clock lag ${m.outside?.clockLagMs} ms`);
  t.ok(!processAlive(oldPid), 'the old QEMU has quit');
  const newPid = Number(readFileSync(pidfile, 'utf8').trim());
  t.ok(newPid !== oldPid && processAlive(newPid), `the user's pid file names the new QEMU (PID ${newPid})`);
  t.equal(readlinkSync(`/proc/${newPid}/exe`), newQemu, 'which runs the new binary');
  const newQmp = `${qmpSocket}.upgraded-1`;
  t.same(await status(newQmp), { status: 'running', machine: 'pc-q35-7.2-machine', version: '10.0' }, 'and runs the guest, on the machine it had, behind the QMP socket handed back');
  t.ok(existsSync(path.join(dir, 'serial.sock.upgraded-1')), 'the serial socket moved beside the old one');
  const links = await listLinks({ netns: network.netns });
  t.equal(links.find((l) => l.ifname === 'tapvm0-u1')?.master, 'br0', 'the new tap is on the old one\'s bridge');
  t.ok(links.some((l) => l.ifname === 'tapvm0'), "the user's own tap is left where it was");
  const upgrade = JSON.parse(readFileSync(path.join(out, 'upgrade.json'), 'utf8')) as { new: { pid: number }; moves: unknown[] };
  t.equal(upgrade.new.pid, newPid, 'upgrade.json records it');

  const again = await runCli([FLINCH, 'qemu-upgrade', '--qmp', newQmp, '--to', newQemu, '--guest-address', network.guestAddress, '--out', path.join(dir, 'again')], inNetns);
  t.equal(again.code, 0, again.stderr);
  const outsideOnly = (JSON.parse(readFileSync(path.join(dir, 'again', 'results.json'), 'utf8')) as LabResults).migrations[0]!;
  t.equal(outsideOnly.verdictSource, 'outside', `no agent asked for: judged from outside (${outsideOnly.verdict}: ${outsideOnly.reasons.slice(0, 2).join('; ')})`);
  t.match(again.stdout, /QEMU 10\.0\.\d+ \(PID \d+\) -> QEMU 10\.0\.\d+ \(PID \d+\).*\nQMP now at .*qmp\.sock\.upgraded-2; pid file .*qemu\.pid\n/, 'upgrading the upgraded process: no agent needed, names do not grow');
  t.ok(!processAlive(newPid), 'the first upgrade\'s process has quit in turn');
  t.same((await status(`${qmpSocket}.upgraded-2`)).status, 'running');

  const silent = await runCli([FLINCH, 'qemu-upgrade', '--qmp', `${qmpSocket}.upgraded-2`, '--to', newQemu, '--fleet-secret', secret, '--collector-listen', `${network.hostAddress}:${COLLECTOR_PORT}`,
    '--agent-id', 'nobody-here', '--agent-timeout', '3', '--out', path.join(dir, 'silent')], inNetns);
  t.equal(silent.code, 1, 'an agent that never says hello: exit 1');
  t.match(silent.stderr, /agent nobody-here did not say hello to ws:\/\/10\.0\.3\.1:7431 within 3 s/, silent.stderr.trim().split('\n').slice(-1)[0] ?? '');
  t.same((await status(`${qmpSocket}.upgraded-2`)).status, 'running', 'and the guest was not moved');
});

t.test('what qemu-upgrade refuses: one line, exit 2, the QEMU untouched', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-upgrade-refusals-'));
  const qmpSocket = path.join(dir, 'qmp.sock');
  const pidfile = path.join(dir, 'qemu.pid');
  killByPidfile(t, pidfile);
  // No guest needed to be refused: a machine with firmware only, its disk behind -snapshot.
  const disk = path.join(dir, 'disk.qcow2');
  spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '64M']);
  const start = qemu(null, ['qemu-system-x86_64', '-machine', 'pc,accel=tcg', '-m', '128', '-nodefaults', '-display', 'none', '-drive', `file=${disk},if=virtio,format=qcow2`, '-snapshot',
    '-object', 'memory-backend-memfd,id=mem,size=128M,share=on', '-machine', 'memory-backend=mem', '-qmp', `unix:${qmpSocket},server=on,wait=off`, '-pidfile', pidfile, '-daemonize']);
  t.equal(start.status, 0, start.stderr);
  const pid = Number(readFileSync(pidfile, 'utf8').trim());
  const upgrade = (...args: string[]) => runCli([FLINCH, 'qemu-upgrade', ...args, '--out', path.join(dir, 'out')]);

  const refused = await upgrade('--qmp', qmpSocket, '--to', 'qemu-system-x86_64');
  t.equal(refused.code, 2, 'an option that cannot move: exit 2');
  t.match(refused.stderr, /^flinch: cannot upgrade QEMU PID \d+ in place: -snapshot: .*lost; -object memory-backend-memfd\S*: shared guest memory would be mapped by both processes at once\n$/, refused.stderr);
  t.ok(processAlive(pid) && (await status(qmpSocket)).status === 'running', 'the QEMU runs on, untouched');

  const missing = await upgrade('--qmp', path.join(dir, 'nothing.sock'), '--to', 'qemu-system-x86_64');
  t.equal(missing.code, 2);
  t.match(missing.stderr, /^flinch: --qmp .*nothing\.sock: no such socket\n$/);

  const notQemu = path.join(dir, 'not-qemu.sock');
  const server = createServer((c) => c.end());
  await new Promise<void>((resolve) => server.listen(notQemu, resolve));
  t.teardown(() => server.close());
  const other = await upgrade('--qmp', notQemu, '--to', 'qemu-system-x86_64');
  t.equal(other.code, 2);
  t.match(other.stderr, /^flinch: --qmp .*not-qemu\.sock: held by PID \d+ \(node\), not a QEMU system emulator\n$/, other.stderr);

  const noBinary = await upgrade('--qmp', qmpSocket, '--to', path.join(dir, 'no-such-qemu'));
  t.equal(noBinary.code, 2);
  t.match(noBinary.stderr, /^flinch: --to .*no-such-qemu: not an executable\n$/);
  const notABinary = await upgrade('--qmp', qmpSocket, '--to', '/bin/true');
  t.equal(notABinary.code, 2);
  t.match(notABinary.stderr, /^flinch: --to \/bin\/true: not a QEMU/, notABinary.stderr);

  const stray = await upgrade('--qmp', qmpSocket, '--to', 'qemu-system-x86_64', '--collector-listen', '127.0.0.1:1');
  t.equal(stray.code, 2);
  t.match(stray.stderr, /^flinch: --collector-listen is for measuring with the guest's agent: give --fleet-secret FILE too\n$/);
  const settle = await upgrade('--qmp', qmpSocket, '--to', 'qemu-system-x86_64', '--settle', '500');
  t.equal(settle.code, 2);
  t.match(settle.stderr, /^flinch: --settle is for a measured upgrade: give --fleet-secret or --guest-address too\n$/);
  const address = await upgrade('--qmp', qmpSocket, '--to', 'qemu-system-x86_64', '--guest-address', 'web1');
  t.equal(address.code, 2);
  t.match(address.stderr, /^flinch: --guest-address web1: an IPv4 or IPv6 address\n$/);
  t.ok(processAlive(pid), 'after all of it, the QEMU still runs');
});
