import { randomUUID } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { tempDir, until } from './collector-fixtures.js';
import { exclusive } from './exclusive.js';

export const LIBVIRT_URI = 'qemu:///system';

export const virsh = (...args: string[]) => spawnSync('virsh', ['-c', LIBVIRT_URI, ...args], { encoding: 'utf8' });

/**
 * Uses the running libvirtd, or starts virtlogd and libvirtd by hand (no systemd here) and stops them, by PID, afterwards.
 * Held for `t` alone: a test file running beside this one (tap's jobs) waits, instead of finding this libvirtd, using it
 * and losing it when this test stops it, or meeting this test's domains.
 */
export async function ensureLibvirtd(t: Test): Promise<void> {
  await exclusive(t, 'libvirtd');
  if (virsh('version').status === 0) return;
  const dir = tempDir('flinch-libvirtd-');
  for (const daemon of ['virtlogd', 'libvirtd']) {
    const pidFile = path.join(dir, `${daemon}.pid`);
    const started = spawnSync(`/usr/sbin/${daemon}`, ['-d', '-p', pidFile], { encoding: 'utf8' });
    if (started.status !== 0) throw new Error(`${daemon} did not start: ${started.stderr}`);
    t.teardown(async () => {
      if (!existsSync(pidFile)) return;
      const pid = Number(readFileSync(pidFile, 'utf8'));
      if (pid > 0) process.kill(pid, 'SIGTERM');
      await sleep(500);
    });
  }
  await until('libvirtd answering', () => virsh('version').status === 0, 30_000);
}

/**
 * A second libvirtd on this machine, as a different "host": its own mount namespace (its own /run/libvirt,
 * /var/lib/libvirt, /etc/libvirt with its own host UUID, /var/log/libvirt, /var/cache/libvirt, all under a temporary
 * folder) and its own UTS namespace (hostname), in the same network namespace, or in `netns` (then its domains'
 * bridges and taps are that namespace's). Returns its URI; stopped by PID.
 */
export async function startSecondLibvirtd(t: Test, netns: string | null = null): Promise<string> {
  const root = tempDir('flinch-libvirtd-b-');
  const dirs = { run: '/run/libvirt', lib: '/var/lib/libvirt', etc: '/etc/libvirt', log: '/var/log/libvirt', cache: '/var/cache/libvirt' };
  for (const [name, target] of Object.entries(dirs)) {
    spawnSync('mkdir', ['-p', path.join(root, name), target]);
  }
  spawnSync('cp', ['-a', `${dirs.etc}/.`, path.join(root, 'etc')]);
  // The same QEMU as the first libvirtd's: its probe of QEMU's capabilities (about 4 s per emulator) is valid here too.
  spawnSync('cp', ['-a', `${dirs.cache}/.`, path.join(root, 'cache')]);
  appendFileSync(path.join(root, 'etc', 'libvirtd.conf'), `host_uuid = "${randomUUID()}"\n`);
  const script = path.join(root, 'start.sh');
  writeFileSync(
    script,
    ['#!/bin/sh', 'set -e', ...Object.entries(dirs).map(([name, target]) => `mount --bind ${path.join(root, name)} ${target}`), 'hostname flinch-libvirtd-b',
      `/usr/sbin/virtlogd -d -p ${path.join(root, 'virtlogd.pid')}`, `exec /usr/sbin/libvirtd -d -p ${path.join(root, 'libvirtd.pid')}`, ''].join('\n'),
    { mode: 0o755 },
  );
  const unshare = ['unshare', '-m', '-u', '--propagation', 'private', script];
  const started = netns ? spawnSync('ip', ['netns', 'exec', netns, ...unshare], { encoding: 'utf8' }) : spawnSync(unshare[0]!, unshare.slice(1), { encoding: 'utf8' });
  if (started.status !== 0) throw new Error(`second libvirtd did not start: ${started.stderr}`);
  t.teardown(async () => {
    for (const daemon of ['libvirtd', 'virtlogd']) {
      const pidFile = path.join(root, `${daemon}.pid`);
      if (existsSync(pidFile)) process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGTERM');
    }
    await sleep(500);
  });
  const uri = `qemu+unix:///system?socket=${path.join(root, 'run', 'libvirt-sock')}`;
  await until('the second libvirtd answering', () => spawnSync('virsh', ['-c', uri, 'version']).status === 0, 30_000);
  return uri;
}

/**
 * A domain as the tests write it themselves, not as flinch does: the lab guest's kernel and initramfs booted by a QEMU
 * TCG domain with user-mode networking (the guest reaches this host's loopback as 10.0.2.2).
 */
export function testDomainXml(d: { name: string; vmlinuz: string; initrd: string; cmdline: string; serialLog: string; mac: string; bridge?: { name: string; ip: string; gateway: string } }): string {
  // On a bridge the guest has an address of its own, reachable from where the bridge is; on user networking, SLIRP's.
  const network = d.bridge
    ? { ip: d.bridge.ip, gateway: d.bridge.gateway, xml: `<interface type='bridge'><source bridge='${d.bridge.name}'/><mac address='${d.mac}'/><model type='virtio'/></interface>` }
    : { ip: '10.0.2.15/24', gateway: '10.0.2.2', xml: `<interface type='user'><mac address='${d.mac}'/><model type='virtio'/></interface>` };
  return `<domain type='qemu'>
  <name>${d.name}</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>${d.vmlinuz}</kernel><initrd>${d.initrd}</initrd>
  <cmdline>console=ttyS0 panic=-1 quiet flinch.ip=${network.ip} flinch.gw=${network.gateway} ${d.cmdline}</cmdline></os>
  <cpu mode='custom' match='exact'><model>qemu64</model></cpu>
  <on_poweroff>destroy</on_poweroff><on_crash>destroy</on_crash>
  <devices>
    <serial type='file'><source path='${d.serialLog}'/></serial>
    ${network.xml}
  </devices>
</domain>
`;
}
