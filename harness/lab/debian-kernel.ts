import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { runCommand } from '../../agent/system/run-command.js';
import { UserError } from '../../agent/cli-support.js';

export interface GuestKernel {
  /** The versioned package, e.g. linux-image-6.1.0-56-cloud-amd64. */
  packageName: string;
  /** The kernel release, e.g. 6.1.0-56-cloud-amd64. */
  release: string;
  vmlinuz: string;
  /** The extracted tree holding lib/modules/<release>, with modules.dep generated. */
  modulesRoot: string;
}

/** The meta package that always points at Debian's current cloud kernel; its ABI number rotates in the archive. */
export const CLOUD_KERNEL_META = 'linux-image-cloud-amd64';

/** Reads `apt-cache depends` to find which versioned kernel package the meta package currently means. */
export async function resolveKernelPackage(metaPackage = CLOUD_KERNEL_META): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await runCommand('apt-cache', ['depends', metaPackage]));
  } catch (error) {
    throw new UserError(`cannot resolve ${metaPackage} (${(error as Error).message}); run apt-get update first`);
  }
  const match = /Depends:\s+(linux-image-\S+)/.exec(stdout);
  if (!match) throw new UserError(`apt-cache knows no dependency of ${metaPackage}; run apt-get update first`);
  return match[1]!;
}

/**
 * Downloads and unpacks the guest kernel into the cache, once per package version. Nothing is installed on the host:
 * `apt-get download` + `dpkg -x`, then `depmod -b` because the .deb ships no modules.dep.
 */
export async function fetchGuestKernel(cacheDir: string, log: (line: string) => void): Promise<GuestKernel> {
  const packageName = await resolveKernelPackage();
  const release = packageName.replace(/^linux-image-/, '');
  const root = path.join(cacheDir, 'kernels', packageName);
  const kernel: GuestKernel = {
    packageName,
    release,
    vmlinuz: path.join(root, 'boot', `vmlinuz-${release}`),
    modulesRoot: root,
  };
  if (existsSync(path.join(root, 'lib', 'modules', release, 'modules.dep')) && existsSync(kernel.vmlinuz)) return kernel;

  log(`downloading ${packageName}`);
  mkdirSync(path.join(cacheDir, 'kernels'), { recursive: true });
  const work = mkdtempSync(path.join(cacheDir, 'kernels', '.download-'));
  try {
    await runCommand('apt-get', ['download', '-q', packageName], { cwd: work });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new Error(`apt-get download ${packageName} produced no .deb`);
    const extracted = path.join(work, 'tree');
    await runCommand('dpkg', ['-x', path.join(work, deb), extracted]);
    await runCommand('depmod', ['-b', extracted, release]);
    rmSync(root, { recursive: true, force: true });
    // Rename last, so an interrupted download never leaves a tree that looks complete.
    renameSync(extracted, root);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  return kernel;
}
