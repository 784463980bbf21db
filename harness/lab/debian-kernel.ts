import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { runCommand } from '../../system/run-command.js';
import { withCacheLock } from './cache-lock.js';
import { EXIT, UserError } from '../../contract/command-line.js';
import { privateArchive, versionInSuite } from './debian-archive.js';

export interface GuestKernel {
  /** The versioned package, e.g. linux-image-6.1.0-56-cloud-amd64; a bare image is named after its file and hash. */
  packageName: string;
  /** The kernel release, e.g. 6.1.0-56-cloud-amd64. */
  release: string;
  vmlinuz: string;
  /**
   * The extracted tree holding lib/modules/<release>, with modules.dep generated; null for a bare bzImage, whose
   * drivers must then be built in.
   */
  modulesRoot: string | null;
}

/** The meta package that always points at Debian's current cloud kernel; its ABI number rotates in the archive. */
export const CLOUD_KERNEL_META = 'linux-image-cloud-amd64';
/** Debian's generic kernel: the one that can be a Xen dom0 (the cloud kernel has CONFIG_XEN_DOM0 off). */
export const GENERIC_KERNEL_META = 'linux-image-amd64';

/**
 * Guest kernels by the Debian release that carries them, for `--guest-kernel`: each suite's cloud kernel. bookworm is
 * the host's own archive; the others are read through a private apt state (harness/lab/debian-archive.ts).
 */
export const NAMED_GUEST_KERNELS = ['bullseye', 'bookworm', 'bookworm-backports', 'trixie', 'trixie-backports'] as const;
export type NamedGuestKernel = (typeof NAMED_GUEST_KERNELS)[number];
const HOST_SUITE: NamedGuestKernel = 'bookworm';

export function isNamedGuestKernel(value: string): value is NamedGuestKernel {
  return (NAMED_GUEST_KERNELS as readonly string[]).includes(value);
}

/** `--guest-kernel`: a release's cloud kernel by name, or a linux-image .deb or bzImage a person brings; null: bookworm's. */
export async function guestKernelFrom(cacheDir: string, spec: string | null, log: (line: string) => void): Promise<GuestKernel> {
  if (spec === null) return fetchGuestKernel(cacheDir, log);
  if (isNamedGuestKernel(spec)) return fetchGuestKernel(cacheDir, log, CLOUD_KERNEL_META, spec === HOST_SUITE ? null : spec);
  return localKernel(cacheDir, spec, log);
}

/**
 * Reads `apt-cache depends` to find which versioned kernel package the meta package currently means, in the host's
 * archive or, given its apt options, in another suite's.
 */
export async function resolveKernelPackage(metaPackage = CLOUD_KERNEL_META, apt: readonly string[] = [], suite: string | null = null): Promise<string> {
  let stdout: string;
  try {
    if (suite) {
      const version = await versionInSuite(apt, metaPackage, suite);
      if (!version) throw new Error(`${suite} has no ${metaPackage}`);
      ({ stdout } = await runCommand('apt-cache', [...apt, 'show', `${metaPackage}=${version}`]));
      const image = dependsOf(stdout).find((name) => /^linux-image-\d/.test(name));
      if (!image) throw new Error(`${metaPackage} ${version} in ${suite} names no kernel`);
      return image;
    }
    ({ stdout } = await runCommand('apt-cache', ['depends', metaPackage]));
  } catch (error) {
    throw new UserError(`cannot resolve ${metaPackage} (${(error as Error).message}); run apt-get update first`);
  }
  const match = /Depends:\s+(linux-image-\S+)/.exec(stdout);
  if (!match) throw new UserError(`apt-cache knows no dependency of ${metaPackage}; run apt-get update first`);
  return match[1]!;
}

/** The package names of the first `Depends:` line of `apt-cache show` (alternatives and versions dropped). */
export function dependsOf(aptCacheShow: string): string[] {
  const line = /^Depends:\s*(.*)$/m.exec(aptCacheShow)?.[1] ?? '';
  return line.split(',').flatMap((clause) => clause.split('|')).map((alternative) => alternative.trim().split(/\s/)[0]!).filter(Boolean);
}

/**
 * The packages a versioned kernel comes in. Up to 6.x one `linux-image-RELEASE` holds the kernel and its modules; from
 * Linux 7 on (trixie-backports' 7.3) it is an empty package depending on `linux-binary-RELEASE` (the kernel) and
 * `linux-modules-RELEASE`, which are unpacked with it.
 */
export function kernelPackages(imagePackage: string, aptCacheShow: string): string[] {
  const release = imagePackage.replace(/^linux-image-/, '');
  return [imagePackage, ...dependsOf(aptCacheShow).filter((name) => name === `linux-binary-${release}` || name === `linux-modules-${release}`)];
}

/**
 * Downloads and unpacks a Debian kernel into the cache, once per package version: from the host's archive, or from
 * another suite's (`suite`). Nothing is installed on the host: `apt-get download` + `dpkg -x`, then `depmod -b`
 * because the .deb ships no modules.dep.
 */
export async function fetchGuestKernel(cacheDir: string, log: (line: string) => void, metaPackage = CLOUD_KERNEL_META, suite: string | null = null): Promise<GuestKernel> {
  const apt = suite ? await privateArchive(cacheDir, suite) : [];
  const packageName = await resolveKernelPackage(metaPackage, apt, suite);
  const root = path.join(cacheDir, 'kernels', packageName);
  const cached = kernelInTree(packageName, root);
  if (cached) return cached;
  log(`downloading ${packageName}${suite ? ` from ${suite}` : ''}`);
  return unpackKernel(cacheDir, root, packageName, async (work) => {
    const { stdout } = await runCommand('apt-cache', [...apt, 'show', packageName]);
    const packages = kernelPackages(packageName, stdout);
    await runCommand('apt-get', [...apt, 'download', '-q', ...packages], { cwd: work, timeout: 600_000 });
    const debs = readdirSync(work).filter((f) => f.endsWith('.deb'));
    if (debs.length !== packages.length) throw new Error(`apt-get download ${packages.join(' ')} produced ${debs.length} .deb file(s)`);
    return debs.map((deb) => path.join(work, deb));
  });
}

/**
 * A kernel a person brings: a linux-image .deb (unpacked and cached by its content hash, modules included) or a bare
 * bzImage (used as is, without modules).
 */
export async function localKernel(cacheDir: string, file: string, log: (line: string) => void): Promise<GuestKernel> {
  if (!existsSync(file) || !statSync(file).isFile()) throw new UserError(`${file}: no such kernel file (give a linux-image .deb or a bzImage)`, EXIT.usage);
  const hash = await sha256Of(file);
  const kind = await fileKind(file);
  if (kind === 'deb') {
    const { stdout } = await runCommand('dpkg-deb', ['-f', file, 'Package']);
    const packageName = stdout.trim();
    if (!packageName.startsWith('linux-image-')) throw new UserError(`${file}: a ${packageName} package, not a linux-image .deb`, EXIT.usage);
    const root = path.join(cacheDir, 'kernels', `local-${hash.slice(0, 12)}`);
    const cached = kernelInTree(packageName, root);
    if (cached) return cached;
    log(`unpacking ${path.basename(file)}`);
    return unpackKernel(cacheDir, root, packageName, async () => [path.resolve(file)]);
  }
  if (kind === 'bzimage') {
    return { packageName: `${path.basename(file)} (${hash.slice(0, 12)})`, release: 'unknown', vmlinuz: path.resolve(file), modulesRoot: null };
  }
  throw new UserError(`${file}: neither a Debian package nor a Linux bzImage`, EXIT.usage);
}

function kernelInTree(packageName: string, root: string): GuestKernel | null {
  const modules = path.join(root, 'lib', 'modules');
  if (!existsSync(modules)) return null;
  const release = readdirSync(modules).find((r) => existsSync(path.join(modules, r, 'modules.dep')));
  if (!release) return null;
  // Linux 7's packages put the kernel beside its modules (kernel-install's layout), not in /boot.
  const vmlinuz = [path.join(root, 'boot', `vmlinuz-${release}`), path.join(modules, release, 'vmlinuz')].find((file) => existsSync(file));
  return vmlinuz ? { packageName, release, vmlinuz, modulesRoot: root } : null;
}

function unpackKernel(cacheDir: string, root: string, packageName: string, obtainDebs: (work: string) => Promise<string[]>): Promise<GuestKernel> {
  return withCacheLock(cacheDir, async () => kernelInTree(packageName, root) ?? unpackKernelLocked(cacheDir, root, packageName, obtainDebs));
}

async function unpackKernelLocked(cacheDir: string, root: string, packageName: string, obtainDebs: (work: string) => Promise<string[]>): Promise<GuestKernel> {
  mkdirSync(path.join(cacheDir, 'kernels'), { recursive: true });
  const work = mkdtempSync(path.join(cacheDir, 'kernels', '.download-'));
  try {
    const extracted = path.join(work, 'tree');
    for (const deb of await obtainDebs(work)) await runCommand('dpkg', ['-x', deb, extracted]);
    // trixie's packages put them under /usr (merged /usr); depmod -b and the guest image read <root>/lib/modules.
    if (!existsSync(path.join(extracted, 'lib', 'modules')) && existsSync(path.join(extracted, 'usr', 'lib', 'modules'))) {
      mkdirSync(path.join(extracted, 'lib'), { recursive: true });
      renameSync(path.join(extracted, 'usr', 'lib', 'modules'), path.join(extracted, 'lib', 'modules'));
    }
    const releases = existsSync(path.join(extracted, 'lib', 'modules')) ? readdirSync(path.join(extracted, 'lib', 'modules')) : [];
    if (releases.length !== 1) throw new UserError(`${packageName}: expected one kernel release under lib/modules, found ${releases.length}`, EXIT.usage);
    await decompressModules(path.join(extracted, 'lib', 'modules', releases[0]!));
    await runCommand('depmod', ['-b', extracted, releases[0]!]);
    rmSync(root, { recursive: true, force: true });
    // Rename last, so an interrupted download never leaves a tree that looks complete.
    renameSync(extracted, root);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const kernel = kernelInTree(packageName, root);
  if (!kernel) throw new UserError(`${packageName}: no boot/vmlinuz-<release> or lib/modules/<release>/vmlinuz in the package`, EXIT.usage);
  return kernel;
}

/**
 * Debian's kernels from 6.x on ship their modules xz-compressed (bookworm-backports' and trixie's 6.12: .ko.xz), which
 * the lab guest's busybox insmod cannot load: they are unpacked once, here, and depmod then indexes the plain files.
 */
async function decompressModules(modulesDir: string): Promise<void> {
  const compressed: Record<string, string[]> = { xz: [], zst: [] };
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.ko.xz')) compressed.xz!.push(full);
      else if (entry.name.endsWith('.ko.zst')) compressed.zst!.push(full);
    }
  };
  walk(modulesDir);
  // In batches: one process for thousands of files, without an argument list longer than the kernel takes.
  for (let i = 0; i < compressed.xz!.length; i += 500) await runCommand('xz', ['-d', '-T0', ...compressed.xz!.slice(i, i + 500)], { timeout: 600_000 });
  for (let i = 0; i < compressed.zst!.length; i += 500) await runCommand('zstd', ['-d', '-q', '--rm', ...compressed.zst!.slice(i, i + 500)], { timeout: 600_000 });
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** A .deb is an ar archive; a bzImage carries "HdrS" at 0x202 (the x86 boot protocol). */
async function fileKind(file: string): Promise<'deb' | 'bzimage' | 'other'> {
  const head = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    createReadStream(file, { start: 0, end: 0x205 })
      .on('data', (c) => chunks.push(c as Buffer))
      .on('end', () => resolve(Buffer.concat(chunks)))
      .on('error', reject);
  });
  if (head.subarray(0, 8).toString('latin1') === '!<arch>\n') return 'deb';
  if (head.length >= 0x206 && head.subarray(0x202, 0x206).toString('latin1') === 'HdrS') return 'bzimage';
  return 'other';
}

/**
 * The .ko files that loading `modules` takes, dependencies first, from `modprobe --show-depends` against the unpacked
 * tree. Built-in ones need no file and are left out.
 */
export async function modulesWithDependencies(kernel: GuestKernel, modules: readonly string[]): Promise<string[]> {
  if (!kernel.modulesRoot) return [];
  const order: string[] = [];
  for (const module of modules) {
    let stdout: string;
    try {
      ({ stdout } = await runCommand('modprobe', ['-d', kernel.modulesRoot, '-S', kernel.release, '--show-depends', module]));
    } catch {
      throw new UserError(`kernel ${kernel.packageName} has no module ${module} (and does not build it in)`, EXIT.usage);
    }
    for (const match of stdout.matchAll(/^insmod\s+(\S+)/gm)) if (!order.includes(match[1]!)) order.push(match[1]!);
  }
  for (const module of order) {
    if (!module.endsWith('.ko')) throw new UserError(`compressed kernel module ${module} is not supported by the guest's insmod`, EXIT.usage);
  }
  return order;
}
