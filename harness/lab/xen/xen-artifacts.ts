import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { runCommand } from '../../../system/run-command.js';
import { withCacheLock } from '../cache-lock.js';
import { EXIT, UserError } from '../../../contract/command-line.js';
import { projectRoot } from '../../project-paths.js';
import { fetchGuestKernel, GENERIC_KERNEL_META, guestKernelFrom, modulesWithDependencies, type GuestKernel } from '../debian-kernel.js';
import { buildGuestImage, XEN_DOMU_GUEST, type GuestImage } from '../guest-initramfs.js';
import { buildRootDiskInitramfs, DEBIAN_SUITE, debootstrapRootfs, type RootfsRecipe } from '../systemd-guest.js';
import { privateArchive } from '../debian-archive.js';

/** The Xen releases a nested host can run: Debian's, each from the suite that carries it. */
export const XEN_RELEASES = {
  '4.17': { suite: 'bookworm' },
  '4.20': { suite: 'trixie' },
} as const;
export type XenRelease = keyof typeof XEN_RELEASES;
export const DEFAULT_XEN_RELEASE: XenRelease = '4.17';

export function isXenRelease(value: string): value is XenRelease {
  return Object.hasOwn(XEN_RELEASES, value);
}

const toolsPackage = (release: XenRelease) => `xen-utils-${release}`;
const hypervisorPackage = (release: XenRelease) => `xen-hypervisor-${release}-amd64`;

/** dom0's userland: the toolstack of the release, from its own suite (xen-utils and the hypervisor must agree). */
function dom0Rootfs(release: XenRelease): RootfsRecipe {
  return {
    name: 'xen-dom0',
    // openssh-server: the nested dom0 is also reached as a user's Xen host is, over ssh (test/xen-lab/xl-ssh.test.ts),
    // and two nested hosts migrate to each other over it.
    packages: [toolsPackage(release), 'xenstore-utils', 'iproute2', 'kmod', 'procps', 'busybox', 'util-linux', 'openssh-server'],
  };
}

/** What dom0 loads: the toolstack's devices, the backends, the bridge, and its uplink NIC. */
const DOM0_MODULES = ['xen-evtchn', 'xen-gntdev', 'xen-gntalloc', 'xen-privcmd', 'xenfs', 'xen-netback', 'xen-blkback', 'bridge', 'tun', 'virtio_net', 'virtio_pci', 'virtio_blk', 'ext4'];
/** What the dom0 initramfs needs to mount its root disk: with the generic kernel even ext4 is a module. */
const DOM0_ROOT_DISK_MODULES = ['virtio_pci', 'virtio_blk', 'ext4'];
const DOM0_FILES = ['dom0-init.sh', 'migrate-transport.sh', 'domu-console.pl'];
/** Bump when the layout of dom0's disk changes. */
const DOM0_LAYOUT_VERSION = 1;

export interface XenLabArtifacts {
  /** The uncompressed hypervisor (QEMU's multiboot loader does not take xen.gz). */
  xen: string;
  xenVersion: string;
  dom0Kernel: GuestKernel;
  dom0Initrd: string;
  /** dom0's root disk; the lab boots it with snapshot=on, so the cached file is never written. */
  dom0Disk: string;
  domuKernel: GuestKernel;
  domuImage: GuestImage;
  /** A small read-only disk holding the domU kernel and initramfs, mounted by dom0 at /flinch/domu. */
  domuDisk: string;
}

/** In dom0: where the domU disk is mounted, and the files on it. */
export const DOM0_DOMU_DIR = '/flinch/domu';
export const DOMU_KERNEL_IN_DOM0 = `${DOM0_DOMU_DIR}/vmlinuz`;
export const DOMU_INITRD_IN_DOM0 = `${DOM0_DOMU_DIR}/initrd.img`;

/**
 * The pieces of the nested Xen lab, each cached by what it is made of (package versions, file contents): Debian's Xen
 * hypervisor, the generic kernel as PV dom0 (the cloud kernel has CONFIG_XEN_DOM0 off), a debootstrapped dom0 with
 * xen-utils of the hypervisor's exact version, and the domU: a kernel with the real xen-netfront and the lab guest's
 * initramfs with the single-file agent. dom0 comes from the release's own suite; its kernel is bookworm's for every
 * release.
 */
export async function buildXenLabArtifacts(
  cacheDir: string,
  domuKernelFile: string | null,
  log: (line: string) => void,
  release: XenRelease = DEFAULT_XEN_RELEASE,
): Promise<XenLabArtifacts> {
  for (const tool of ['mkfs.ext4', 'zcat', 'dpkg-deb']) {
    if (!(await runCommand('sh', ['-c', `command -v ${tool}`]).then(() => true, () => false))) throw new UserError(`${tool} not found; run packaging/host-setup.sh`, EXIT.missingTool);
  }
  // Locked whole: the dom0 disk and the hypervisor are built in place and the pruning below removes other versions.
  return withCacheLock(cacheDir, () => buildLocked(cacheDir, domuKernelFile, log, release));
}

async function buildLocked(cacheDir: string, domuKernelFile: string | null, log: (line: string) => void, release: XenRelease): Promise<XenLabArtifacts> {
  // One folder per release, each pruned on its own: two nested hosts of different releases run side by side.
  const xenRoot = path.join(cacheDir, 'xen');
  mkdirSync(xenRoot, { recursive: true });
  pruneExcept(xenRoot, Object.keys(XEN_RELEASES));
  const xenDir = path.join(xenRoot, release);
  mkdirSync(xenDir, { recursive: true });
  const { suite } = XEN_RELEASES[release];
  const rootfs = await debootstrapRootfs(cacheDir, log, dom0Rootfs(release), suite);
  const tools = toolsPackage(release);
  const xenVersion = (await runCommand('dpkg-query', [`--admindir=${path.join(rootfs, 'var', 'lib', 'dpkg')}`, '-W', '-f', '${Version}', tools])).stdout.trim();
  if (!xenVersion) throw new Error(`${tools} is not installed in the dom0 tree ${rootfs}`);
  // The host's own apt carries its release's hypervisor; another suite's comes through a private apt state.
  const apt = suite === DEBIAN_SUITE ? [] : await privateArchive(cacheDir, suite);
  const xen = await fetchHypervisor(xenDir, hypervisorPackage(release), xenVersion, apt, log);
  const dom0Kernel = await fetchGuestKernel(cacheDir, log, GENERIC_KERNEL_META);
  const domuKernel = await guestKernelFrom(cacheDir, domuKernelFile, log);
  if (!domuKernel.modulesRoot) log(`domU kernel ${domuKernelFile} is a bare image: xen-netfront and nf_tables must be built in`);
  const domuImage = await buildGuestImage(cacheDir, domuKernel, log, domuKernel.modulesRoot ? XEN_DOMU_GUEST : { ...XEN_DOMU_GUEST, modules: [] });

  const dom0Files = DOM0_FILES.map((f) => path.join(projectRoot(), 'harness', 'lab', 'xen', 'dom0', f));
  const dom0Key = hashOf([String(DOM0_LAYOUT_VERSION), path.basename(rootfs), dom0Kernel.packageName, ...DOM0_MODULES, ...dom0Files.map((f) => readFileSync(f, 'utf8'))]);
  const dom0Dir = path.join(xenDir, `dom0-${dom0Key}`);
  if (!existsSync(path.join(dom0Dir, 'root.ext4'))) {
    log('building the dom0 disk (debootstrapped tree, xen-utils, generic kernel modules)');
    await buildDom0(dom0Dir, rootfs, dom0Kernel, dom0Files);
  }
  const domuKey = hashOf([domuImage.initrd, domuKernel.vmlinuz, domuKernel.packageName]);
  const domuDisk = path.join(xenDir, `domu-${domuKey}.ext4`);
  if (!existsSync(domuDisk)) await buildDomuDisk(domuDisk, domuKernel.vmlinuz, domuImage.initrd);
  pruneExcept(xenDir, [path.basename(dom0Dir), path.basename(domuDisk), `hypervisor-${xenVersion}`]);
  return {
    xen, xenVersion, dom0Kernel, dom0Initrd: path.join(dom0Dir, 'initrd.cpio.gz'), dom0Disk: path.join(dom0Dir, 'root.ext4'),
    domuKernel, domuImage, domuDisk,
  };
}

/** Debian's hypervisor of exactly the tools' version (libxl and Xen must agree), gunzipped for multiboot. */
async function fetchHypervisor(xenDir: string, packageName: string, version: string, apt: readonly string[], log: (line: string) => void): Promise<string> {
  const dir = path.join(xenDir, `hypervisor-${version}`);
  const xen = path.join(dir, 'xen');
  if (existsSync(xen)) return xen;
  log(`downloading ${packageName} ${version}`);
  const work = mkdtempSync(path.join(xenDir, '.download-'));
  try {
    await runCommand('apt-get', [...apt, 'download', '-q', `${packageName}=${version}`], { cwd: work });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${packageName}=${version} produced no .deb`);
    await runCommand('dpkg', ['-x', path.join(work, deb), path.join(work, 'tree')]);
    const boot = path.join(work, 'tree', 'boot');
    const gz = readdirSync(boot).find((f) => /^xen-.*\.gz$/.test(f));
    if (!gz) throw new Error(`${packageName} has no boot/xen-*.gz`);
    mkdirSync(path.join(work, 'out'));
    await runCommand('sh', ['-c', 'zcat "$1" > "$2"', 'zcat', path.join(boot, gz), path.join(work, 'out', 'xen')]);
    rmSync(dir, { recursive: true, force: true });
    renameSync(path.join(work, 'out'), dir);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return xen;
}

async function buildDom0(dir: string, rootfs: string, kernel: GuestKernel, dom0Files: string[]): Promise<void> {
  const work = `${dir}.partial`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const stage = path.join(work, 'rootfs');
  await runCommand('cp', ['-a', '--reflink=auto', rootfs, stage]);
  // Only the modules dom0 loads, with their dependencies, and a modules.dep for them.
  const release = kernel.release;
  const modulesDir = path.join(stage, 'lib', 'modules', release);
  for (const module of await modulesWithDependencies(kernel, DOM0_MODULES)) {
    const target = path.join(stage, path.relative(kernel.modulesRoot!, module));
    mkdirSync(path.dirname(target), { recursive: true });
    copyFileSync(module, target);
  }
  for (const file of ['modules.builtin', 'modules.builtin.modinfo', 'modules.order']) {
    const source = path.join(kernel.modulesRoot!, 'lib', 'modules', release, file);
    if (existsSync(source)) copyFileSync(source, path.join(modulesDir, file));
  }
  await runCommand('depmod', ['-b', stage, release]);
  const flinchDir = path.join(stage, 'flinch');
  mkdirSync(path.join(flinchDir, 'domu'), { recursive: true });
  for (const file of dom0Files) {
    copyFileSync(file, path.join(flinchDir, path.basename(file)));
    chmodSync(path.join(flinchDir, path.basename(file)), 0o755);
  }
  // Room for two save images of the domU beside the tree; the file is sparse.
  await runCommand('mkfs.ext4', ['-q', '-F', '-L', 'flinchdom0', '-d', stage, path.join(work, 'root.ext4'), '3G'], { timeout: 300_000 });
  rmSync(stage, { recursive: true, force: true });
  await buildRootDiskInitramfs({ kernel, modules: DOM0_ROOT_DISK_MODULES, init: '/flinch/dom0-init.sh', workDir: work });
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
}

async function buildDomuDisk(output: string, vmlinuz: string, initrd: string): Promise<void> {
  const stage = `${output}.stage`;
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  copyFileSync(vmlinuz, path.join(stage, path.basename(DOMU_KERNEL_IN_DOM0)));
  copyFileSync(initrd, path.join(stage, path.basename(DOMU_INITRD_IN_DOM0)));
  await runCommand('mkfs.ext4', ['-q', '-F', '-L', 'flinchdomu', '-d', stage, `${output}.tmp`, '512M'], { timeout: 300_000 });
  renameSync(`${output}.tmp`, output);
  rmSync(stage, { recursive: true, force: true });
}

/** Keeps the current pieces only: every agent or package change would otherwise leave hundreds of MB behind. */
function pruneExcept(dir: string, keep: readonly string[]): void {
  for (const entry of readdirSync(dir)) {
    if (!keep.includes(entry)) rmSync(path.join(dir, entry), { recursive: true, force: true });
  }
}

function hashOf(parts: readonly string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('hex').slice(0, 12);
}
