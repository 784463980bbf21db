// Proof on a guest flinch did not shape: a Debian 12 disk image built the way a user builds one
// (test/fixtures/build-debian-cloud-image.sh: mmdebstrap, systemd, Debian's cloud kernel and initramfs, cloud-init with
// ifupdown, extlinux), booted by libvirt from a definition this test writes, enrolled with the NoCloud seed
// `flinch enroll --seed-image --deb` makes (cloud-init installs the .deb at first boot and starts the agent), then
// measured by domain name: save/restore, and live to a second libvirtd and back.
import t from 'tap';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { LabResults } from '../../harness/report/lab-results.js';
import { projectRoot } from '../../harness/project-paths.js';
import { EXIT } from '../../contract/command-line.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { freePort } from '../helpers/collector-fixtures.js';
import { ensureLibvirtd, startSecondLibvirtd, virsh } from '../helpers/libvirtd.js';
import { debianCloudImage } from '../helpers/debian-cloud-image.js';
import { busyMachine } from '../helpers/exclusive.js';

await busyMachine(t);

const MAC = '52:54:00:f1:1c:0d';
const AGENT_ID = 'debian-cloud-image';
const DEB = path.join(projectRoot(), 'build', 'deb', 'flinch-agent_0.1.0_amd64.deb');

/** The domain as its user would define it: their disk (a qcow2 over the image), the seed as a CD-ROM, user networking. */
function domainXml(d: { name: string; disk: string; seed: string; serialLog: string }): string {
  return `<domain type='qemu'>
  <name>${d.name}</name>
  <memory unit='MiB'>768</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <cpu mode='custom' match='exact'><model>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'><driver name='qemu' type='qcow2' cache='none'/><source file='${d.disk}'/><target dev='vda' bus='virtio'/></disk>
    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><source file='${d.seed}'/><target dev='hdc' bus='ide'/><readonly/></disk>
    <serial type='file'><source path='${d.serialLog}' append='on'/></serial>
    <interface type='user'><mac address='${MAC}'/><model type='virtio'/></interface>
  </devices>
</domain>
`;
}

t.test('a Debian 12 cloud image flinch did not build, enrolled by its NoCloud seed, measured by domain name', async (t) => {
  t.ok(existsSync(DEB), `the agent's package is built (${DEB})`);
  await ensureLibvirtd(t);
  const second = await startSecondLibvirtd(t);
  const virshThere = (...args: string[]) => spawnSync('virsh', ['-c', second, ...args], { encoding: 'utf8' });
  const image = await debianCloudImage('/var/cache/flinch', (line) => t.comment(line));
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-debian-image-'));
  // libvirt's QEMU runs as libvirt-qemu: it must reach the disk and the seed in here, as in any images folder.
  chmodSync(dir, 0o755);
  const secret = path.join(dir, 'fleet.secret');
  writeFileSync(secret, 'a-users-fleet-secret-for-the-cloud-image-0123456789\n');
  chmodSync(secret, 0o600);
  const port = await freePort();

  const seed = path.join(dir, 'seed.iso');
  const enroll = await runCli([FLINCH, 'enroll', '--agent-id', AGENT_ID, '--fleet-secret', secret, '--collector', `ws://10.0.2.2:${port}`, '--remediate', 'on', '--seed-image', seed, '--deb', DEB]);
  t.equal(enroll.code, 0, `flinch enroll writes the seed: ${enroll.stderr}`);
  const disk = path.join(dir, 'disk.qcow2');
  t.equal(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', '-b', image, '-F', 'raw', disk]).status, 0, "the user's disk, over the image");
  const name = `debian-cloud-${process.pid}`;
  const serialLog = path.join(dir, 'serial.log');
  const xml = path.join(dir, 'domain.xml');
  writeFileSync(xml, domainXml({ name, disk, seed, serialLog }));
  t.equal(virsh('define', xml).status, 0, 'defined by the test');
  t.teardown(() => {
    for (const run of [virsh, virshThere]) {
      run('destroy', name);
      run('undefine', name);
    }
  });
  const started = virsh('start', name);
  t.equal(started.status, 0, `and started ${started.stderr}`);

  const own = ['--driver', 'libvirt', '--domain', name, '--fleet-secret', secret, '--collector-listen', `127.0.0.1:${port}`, '--agent-timeout', '900', '--faults', 'none', '--expect', 'disrupted'];
  const saved = await runCli([FLINCH, 'campaign', ...own, '--migrations', '2', '--out', path.join(dir, 'save-restore')], { timeoutMs: 1_500_000 });
  t.equal(saved.code, 0, saved.stderr.split('\n').slice(-4).join('\n'));
  const serial = readFileSync(serialLog, 'utf8');
  t.match(serial, /cloud-init\[\d+\]: Setting up flinch-agent/, "cloud-init installed the agent's package from the seed");
  t.match(serial, /Datasource DataSourceNoCloud \[seed=\/dev\/sr0\]/, 'from the NoCloud seed on the CD-ROM');
  t.match(saved.stderr, new RegExp(`agent ${AGENT_ID} on \\S+ connected`), 'the agent was found by the MAC of the domain');
  const results = JSON.parse(readFileSync(path.join(dir, 'save-restore', 'results.json'), 'utf8')) as LabResults;
  t.equal(results.guest.domain, name);
  t.equal(results.guest.hostname, 'debian', "the image's own hostname, as its agent said it");
  t.equal(results.migrations.length, 2);
  for (const m of results.migrations) {
    t.notOk(m.error, m.error ?? `save/restore ${m.index}`);
    t.equal(m.verdictSource, 'agent', `judged by the agent in the image: ${m.verdict} (${m.reasons.slice(0, 2).join('; ')})`);
    t.ok(typeof m.pauseMs === 'number' && m.pauseMs > 0, `the pause from libvirt's events: ${m.pauseMs} ms`);
  }
  t.equal(virsh('domstate', name).stdout.trim(), 'running', 'left running');

  const live = await runCli([FLINCH, 'campaign', ...own, '--libvirt-dest', second, '--libvirt-migrate-uri', 'tcp://127.0.0.1:49301',
    // Both libvirtds see the disk at one path, on a filesystem libvirt does not know as shared: the user says so.
    '--libvirt-migrate-flags', 'unsafe', '--migrations', '1', '--out', path.join(dir, 'live')], { timeoutMs: 1_500_000 });
  const liveResults = JSON.parse(readFileSync(path.join(dir, 'live', 'results.json'), 'utf8')) as LabResults;
  const migration = liveResults.migrations[0]!;
  t.equal(migration.to, second, 'live to the second libvirtd');
  t.notOk(migration.error, migration.error ?? 'migrated');
  const panicked = /Kernel panic - not syncing/.test(readFileSync(serialLog, 'utf8'));
  if (panicked && migration.verdictSource === 'v0') {
    // Seen once in five CI runs: Debian's 6.1 kernel died in __run_timers (a poisoned list entry) right after QEMU 7.2's
    // TCG live migration, its memory corrupted, not a flinch fault. What flinch owes then is not to call it transparent.
    t.comment('the guest kernel panicked after the live migration (see its serial log): flinch must not call that transparent');
    t.equal(migration.verdict, 'unknown', `a silent guest is unknown: ${migration.reasons.join('; ')}`);
    t.match(migration.reasons[0] ?? '', /^nothing heard from the guest/);
    t.equal(live.code, EXIT.worseThanExpected, 'and the campaign fails its expectation');
  } else {
    t.equal(live.code, 0, live.stderr.split('\n').slice(-4).join('\n'));
    t.equal(migration.verdictSource, 'agent', `judged by the agent: ${migration.verdict}`);
  }
  t.equal(virsh('domstate', name).stdout.trim(), 'running', 'and back: running on the first libvirtd, where it was found');
  t.not(virshThere('dominfo', name).status, 0, 'nothing left on the second');
});
