// What a same-host QEMU upgrade costs the guest: a lab guest (no agent) under Debian's QEMU 7.2, upgraded back and
// forth between 7.2 and bookworm-backports' 10.0 N times by flinch qemu-upgrade's driver, each pause (the old QEMU's
// STOP to the new one's RESUME) beside QEMU's own downtime and total, per direction. Needs root (a namespace, taps).
// Usage: node --import ./bench/register-ts.mjs bench/qemu-upgrade.ts [N]   (N upgrades, default 10)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentKernelArguments, labGuestImage } from '../harness/lab/guest-initramfs.js';
import { labNetworkFor, withLabNetwork } from '../harness/lab/lab-network.js';
import { fetchQemuRelease } from '../harness/lab/qemu-release.js';
import { QemuUpgradeDriver } from '../harness/upgrade/qemu-upgrade.js';
import { processAlive } from '../system/unix-socket-owner.js';

const upgrades = Number(process.argv[2] ?? 10);
const cache = '/var/cache/flinch';
const log = (line: string) => process.stderr.write(`${line}\n`);
const image = await labGuestImage(cache, log);
const newer = await fetchQemuRelease(cache, log);
const network = labNetworkFor(`bench${process.pid}`);
// The QEMUs run in the lab namespace, and so must the driver (it reads /proc/net/unix there): the bench re-runs itself.
if (process.env.FLINCH_BENCH_INSIDE !== '1') {
  await withLabNetwork(network, async () => {
    const run = spawnSync('ip', ['netns', 'exec', network.netns, process.execPath, ...process.execArgv, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, FLINCH_BENCH_INSIDE: '1', FLINCH_BENCH_NETNS: network.netns } });
    process.exitCode = run.status ?? 1;
  });
} else {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-bench-upgrade-'));
  const pidfile = path.join(dir, 'qemu.pid');
  const append = ['console=ttyS0', 'quiet', ...agentKernelArguments({ network, collectorPort: 1, agentId: 'bench', fleetSecret: 'x', agentless: true })].join(' ');
  const started = spawnSync('qemu-system-x86_64', [
    '-machine', 'q35,accel=tcg', '-m', '512', '-nodefaults', '-display', 'none', '-kernel', image.kernel.vmlinuz, '-initrd', image.initrd, '-append', append,
    '-netdev', `tap,id=n0,ifname=${network.taps[0]},script=no,downscript=no`, '-device', 'virtio-net-pci,netdev=n0,mac=52:54:00:f1:1c:0d',
    '-qmp', `unix:${path.join(dir, 'qmp.sock')},server=on,wait=off`, '-pidfile', pidfile, '-daemonize',
  ], { encoding: 'utf8' });
  if (started.status !== 0) throw new Error(`QEMU did not start: ${started.stderr}`);
  // A booting kernel dirties memory as fast as it can: upgrade the guest once it has settled, as a user's would be.
  await new Promise((resolve) => setTimeout(resolve, 30_000));
  let socket = path.join(dir, 'qmp.sock');
  const rows: Array<{ direction: string; pauseMs: number; downtimeMs: number; totalMs: number }> = [];
  try {
    for (let i = 0; i < upgrades; i += 1) {
      const to = i % 2 === 0 ? newer : 'qemu-system-x86_64';
      const driver = new QemuUpgradeDriver({ qmpSocket: socket, newBinary: to, workDir: path.join(dir, `upgrade-${i}`), timeoutMs: 120_000 });
      await driver.prepare();
      const timing = await driver.migrate();
      await driver.cleanup();
      const outcome = driver.outcome!;
      const pauseMs = timing.pause ? timing.pause.resumedAtMs - timing.pause.stoppedAtMs : NaN;
      rows.push({ direction: `${outcome.old.version} -> ${outcome.new.version}`, pauseMs, downtimeMs: timing.downtimeMs ?? NaN, totalMs: timing.totalMs ?? NaN });
      log(`#${i + 1} ${rows.at(-1)!.direction}: pause ${pauseMs.toFixed(1)} ms, downtime ${timing.downtimeMs} ms, total ${timing.totalMs} ms`);
      socket = outcome.new.qmpSocket;
    }
  } finally {
    const pid = Number(readFileSync(pidfile, 'utf8').trim());
    if (pid > 0 && processAlive(pid)) process.kill(pid, 'SIGKILL');
  }
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor((values.length - 1) / 2)]!;
  for (const direction of [...new Set(rows.map((r) => r.direction))]) {
    const of = rows.filter((r) => r.direction === direction);
    process.stdout.write(`${direction} (${of.length}): pause median ${median(of.map((r) => r.pauseMs)).toFixed(1)} ms (min ${Math.min(...of.map((r) => r.pauseMs)).toFixed(1)}, max ${Math.max(...of.map((r) => r.pauseMs)).toFixed(1)}), ` +
      `QEMU downtime median ${median(of.map((r) => r.downtimeMs))} ms, total median ${median(of.map((r) => r.totalMs))} ms\n`);
  }
}
