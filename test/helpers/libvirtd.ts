import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Test } from 'tap';
import { tempDir, until } from './collector-fixtures.js';

export const LIBVIRT_URI = 'qemu:///system';

export const virsh = (...args: string[]) => spawnSync('virsh', ['-c', LIBVIRT_URI, ...args], { encoding: 'utf8' });

/** Uses the running libvirtd, or starts virtlogd and libvirtd by hand (no systemd here) and stops them, by PID, afterwards. */
export async function ensureLibvirtd(t: Test): Promise<void> {
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
