import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { findExecutable, runCommand } from '../../system/run-command.js';
import { withCacheLock } from './cache-lock.js';
import { EXIT, UserError } from '../../contract/command-line.js';
import { modulesWithDependencies, type GuestKernel } from './debian-kernel.js';

/**
 * A Debian 12 guest with systemd on a disk image, for testing what a distribution installs: the .deb, its unit, its
 * hardening. Slower to boot than the initramfs lab guest (~15 s against ~6 s), so only the package tests use it.
 * The debootstrapped tree is cached by suite, mirror and package list; each test gets a fresh copy of it.
 */
export const DEBIAN_SUITE = 'bookworm';
/** The Debian releases a package check can install into: oldstable, stable and the next (11, 12, 13). */
export const PACKAGE_CHECK_SUITES = ['bullseye', 'bookworm', 'trixie'] as const;
export type PackageCheckSuite = (typeof PACKAGE_CHECK_SUITES)[number];
export const SYSTEMD_GUEST_PACKAGES = ['systemd-sysv', 'udev', 'iproute2', 'nftables', 'iptables', 'kmod', 'procps'];
const ROOTFS_LAYOUT_VERSION = 1;
const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
/** Modules the mini initramfs loads to find the root disk; ext4 is built into Debian's cloud kernel. */
const ROOT_DISK_MODULES = ['virtio_pci', 'virtio_blk'];

export interface SystemdGuestDisk {
  disk: string;
  initrd: string;
  /** What `systemctl is-enabled flinch-agent` said right after `dpkg -i`, before the lab enabled it. */
  enabledAfterInstall: string;
  dpkgOutput: string;
}

export interface SystemdGuestSpec {
  rootfs: string;
  kernel: GuestKernel;
  deb: string;
  /** The harness's own package (flinch), installed after the agent's, as on a host that runs both. */
  hostDeb?: string | null;
  /** Contents of /etc/flinch/agent.yaml once installed (replaces the packaged default). */
  agentConfig: string;
  /** Written to /etc/flinch/token (0600), the agent's signing key. */
  agentToken: string;
  hostname: string;
  mac: string;
  /** CIDR, e.g. 10.0.3.10/24 */
  address: string;
  gateway: string;
  workDir: string;
}

/** A debootstrapped tree: its name in the cache and the packages on top of minbase. */
export interface RootfsRecipe {
  name: string;
  packages: readonly string[];
}

export const SYSTEMD_GUEST_ROOTFS: RootfsRecipe = { name: 'systemd', packages: SYSTEMD_GUEST_PACKAGES };

/** Debootstraps (once per suite, mirror and package list) a minimal Debian; returns the cached tree. */
export async function debootstrapRootfs(cacheDir: string, log: (line: string) => void, recipe: RootfsRecipe = SYSTEMD_GUEST_ROOTFS, suite: string = DEBIAN_SUITE): Promise<string> {
  if (!findExecutable('debootstrap')) throw new UserError('debootstrap not found; install it (apt-get install debootstrap)');
  const mirror = debianMirror();
  const key = createHash('sha256')
    .update([ROOTFS_LAYOUT_VERSION, suite, mirror, ...recipe.packages].join('\n'))
    .digest('hex')
    .slice(0, 12);
  const parent = path.join(cacheDir, 'rootfs');
  const prefix = `${suite}-${recipe.name}-`;
  const tree = path.join(parent, `${prefix}${key}`);
  const built = () => existsSync(path.join(tree, 'usr', 'bin', 'dpkg'));
  if (built()) return tree;
  // Locked: a second run would debootstrap into the same .partial tree.
  return withCacheLock(cacheDir, async () => (built() ? tree : debootstrapLocked(tree, parent, prefix, suite, mirror, recipe, log)));
}

async function debootstrapLocked(
  tree: string, parent: string, prefix: string, suite: string, mirror: string, recipe: RootfsRecipe, log: (line: string) => void,
): Promise<string> {
  mkdirSync(parent, { recursive: true });
  const work = `${tree}.partial`;
  rmSync(work, { recursive: true, force: true });
  log(`debootstrapping ${suite} (${recipe.name}) from ${mirror} (about a minute, once)`);
  try {
    await runCommand('debootstrap', ['--variant=minbase', `--include=${recipe.packages.join(',')}`, suite, work, mirror], {
      timeout: 900_000,
    });
  } catch (error) {
    rmSync(work, { recursive: true, force: true });
    throw new UserError(`debootstrap ${suite} failed: ${(error as Error).message.split('\n').slice(-2).join(' ')}`);
  }
  // The package cache is not part of a guest.
  rmSync(path.join(work, 'var', 'cache', 'apt', 'archives'), { recursive: true, force: true });
  mkdirSync(path.join(work, 'var', 'cache', 'apt', 'archives', 'partial'), { recursive: true });
  renameSync(work, tree);
  // Older trees of this recipe only (another recipe's tree is someone else's cache).
  for (const entry of readdirSync(parent)) {
    if (entry.startsWith(prefix) && entry !== path.basename(tree)) rmSync(path.join(parent, entry), { recursive: true, force: true });
  }
  return tree;
}

/** The Debian mirror for debootstrap: FLINCH_DEBIAN_MIRROR, else the one apt on this host already uses. */
export function debianMirror(): string {
  if (process.env.FLINCH_DEBIAN_MIRROR) return process.env.FLINCH_DEBIAN_MIRROR;
  try {
    const sources = readFileSync('/etc/apt/sources.list.d/debian.sources', 'utf8');
    const uri = /^URIs:\s*(\S+)/m.exec(sources)?.[1];
    if (uri) return uri;
  } catch {
    // no deb822 sources: fall back to the default mirror
  }
  return DEFAULT_MIRROR;
}

/** A fresh copy of the tree with the package installed by dpkg, configured for the lab network, as an ext4 image. */
export async function buildSystemdGuestDisk(spec: SystemdGuestSpec): Promise<SystemdGuestDisk> {
  const stage = path.join(spec.workDir, 'rootfs');
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(spec.workDir, { recursive: true });
  await runCommand('cp', ['-a', '--reflink=auto', spec.rootfs, stage]);
  const chroot = (args: string[]) => runCommand('chroot', [stage, ...args], { timeout: 300_000 });

  const modules = path.join(stage, 'lib', 'modules', spec.kernel.release);
  mkdirSync(path.dirname(modules), { recursive: true });
  if (!spec.kernel.modulesRoot) throw new UserError(`the systemd guest needs a kernel with its modules, not the bare image ${spec.kernel.vmlinuz}`, EXIT.usage);
  await runCommand('cp', ['-a', path.join(spec.kernel.modulesRoot, 'lib', 'modules', spec.kernel.release), modules]);

  /** `dpkg -i` in the tree, as an administrator installs a downloaded package. */
  const install = async (deb: string) => {
    const inGuest = `/root/${path.basename(deb)}`;
    copyFileSync(deb, path.join(stage, inGuest));
    const result = await chroot(['dpkg', '-i', inGuest]).catch((error: Error) => {
      throw new Error(`dpkg -i ${path.basename(deb)} in the guest tree failed: ${error.message}`);
    });
    rmSync(path.join(stage, inGuest));
    return result;
  };
  const installed = await install(spec.deb);
  if (spec.hostDeb) await install(spec.hostDeb);
  // is-enabled exits 1 for "disabled", which is the answer wanted here, not a failure.
  const enabled = (await chroot(['sh', '-c', 'systemctl is-enabled flinch-agent.service || true'])).stdout.trim();

  writeFileSync(path.join(stage, 'etc', 'flinch', 'agent.yaml'), spec.agentConfig);
  writeFileSync(path.join(stage, 'etc', 'flinch', 'token'), `${spec.agentToken}\n`, { mode: 0o600 });
  writeFileSync(path.join(stage, 'etc', 'hostname'), `${spec.hostname}\n`);
  writeFileSync(path.join(stage, 'etc', 'fstab'), '/dev/vda / ext4 rw,errors=remount-ro 0 1\n');
  writeFileSync(
    path.join(stage, 'etc', 'systemd', 'network', '10-lab.network'),
    `[Match]\nMACAddress=${spec.mac}\n\n[Network]\nAddress=${spec.address}\nGateway=${spec.gateway}\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n`,
  );
  writeFileSync(path.join(stage, 'etc', 'systemd', 'system', 'flinch-lab-console.service'), LAB_CONSOLE_UNIT);
  await chroot(['systemctl', 'enable', 'flinch-agent.service', 'systemd-networkd.service', 'flinch-lab-console.service']);
  // Nothing waits for "online" in the lab, and the wait would only add its timeout to the boot.
  await chroot(['systemctl', 'mask', 'systemd-networkd-wait-online.service']);

  const disk = path.join(spec.workDir, 'root.ext4');
  await runCommand('mkfs.ext4', ['-q', '-F', '-L', 'flinchroot', '-d', stage, disk, '1200M'], { timeout: 300_000 });
  rmSync(stage, { recursive: true, force: true });
  const initrd = await buildRootDiskInitramfs({ kernel: spec.kernel, modules: ROOT_DISK_MODULES, init: '/sbin/init', workDir: spec.workDir });
  return { disk, initrd, enabledAfterInstall: enabled, dpkgOutput: installed.stdout };
}

/**
 * The lab-only console: a root shell on ttyS1, which QEMU connects to a Unix socket. It is written into the lab's copy
 * of the image, never into the package.
 */
const LAB_CONSOLE_UNIT = `[Unit]
Description=flinch lab console: a root shell on ttyS1 (lab images only, never packaged)
After=systemd-user-sessions.service

[Service]
Environment=PS1= SYSTEMD_COLORS=0 SYSTEMD_PAGER= TERM=dumb
ExecStart=/bin/sh -c 'stty -echo; exec /bin/sh'
StandardInput=tty
StandardOutput=tty
TTYPath=/dev/ttyS1
TTYReset=yes
Restart=always

[Install]
WantedBy=multi-user.target
`;

export interface RootDiskInitramfsSpec {
  kernel: GuestKernel;
  /** What finding and mounting /dev/vda takes with this kernel (the generic kernel has even ext4 as a module). */
  modules: readonly string[];
  /** What to run as PID 1 once the root disk is mounted. */
  init: string;
  workDir: string;
}

/** busybox, the disk modules and an /init that mounts /dev/vda and hands over to `init` on it. */
export async function buildRootDiskInitramfs(spec: RootDiskInitramfsSpec): Promise<string> {
  const busybox = findExecutable('busybox');
  if (!busybox) throw new UserError('busybox not found; install busybox-static');
  const stage = path.join(spec.workDir, 'initramfs');
  rmSync(stage, { recursive: true, force: true });
  for (const dir of ['bin', 'dev', 'proc', 'sys', 'newroot', 'modules']) mkdirSync(path.join(stage, dir), { recursive: true });
  copyFileSync(busybox, path.join(stage, 'bin', 'busybox'));
  chmodSync(path.join(stage, 'bin', 'busybox'), 0o755);
  symlinkSync('busybox', path.join(stage, 'bin', 'sh'));
  const order = await modulesWithDependencies(spec.kernel, spec.modules);
  order.forEach((file, index) => copyFileSync(file, path.join(stage, 'modules', `${String(index).padStart(2, '0')}-${path.basename(file)}`)));
  writeFileSync(
    path.join(stage, 'init'),
    `#!/bin/sh
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t proc proc /proc
for module in /modules/*.ko; do [ -e "$module" ] && insmod "$module"; done
tries=0
while [ ! -b /dev/vda ] && [ $tries -lt 200 ]; do sleep 0.05; tries=$((tries + 1)); done
mount -t ext4 -o rw /dev/vda /newroot || { echo "flinch initramfs: cannot mount /dev/vda"; poweroff -f; }
umount /proc
mount --move /dev /newroot/dev
exec switch_root /newroot ${spec.init}
`,
  );
  chmodSync(path.join(stage, 'init'), 0o755);
  const output = path.join(spec.workDir, 'initrd.cpio.gz');
  await runCommand('sh', ['-c', `cd "${stage}" && find . | cpio -o -H newc --quiet | gzip -1 > "${output}"`]);
  rmSync(stage, { recursive: true, force: true });
  return output;
}
