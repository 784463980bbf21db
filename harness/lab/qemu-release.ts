import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { runCommand } from '../../system/run-command.js';
import { withCacheLock } from './cache-lock.js';
import { BACKPORTS_SUITE, privateArchive, versionInSuite } from './debian-archive.js';

export { BACKPORTS_SUITE };

const QEMU_PACKAGES = ['qemu-system-x86', 'qemu-system-common', 'qemu-system-data'];

/**
 * QEMUs by the Debian release that carries them, for `--qemu` and `--dest-qemu`: bookworm is the system's own 7.2;
 * bookworm-backports' 10.0 is built for bookworm and runs on this host (trixie's needs trixie's libraries).
 */
export const NAMED_QEMUS: Record<string, string | null> = { bookworm: null, 'bookworm-backports': BACKPORTS_SUITE };

/** A QEMU given by release name, as a path: fetched into the cache; anything else is a path or a name on PATH, as given. */
export async function qemuFrom(cacheDir: string, spec: string, log: (line: string) => void): Promise<string> {
  if (!(spec in NAMED_QEMUS)) return spec;
  const suite = NAMED_QEMUS[spec];
  return suite ? fetchQemuRelease(cacheDir, log, suite) : 'qemu-system-x86_64';
}

/** The campaign's QEMUs, named releases made paths. */
export async function withQemuReleases<T extends { cacheDir: string; qemuBinary: string; destQemuBinary?: string }>(options: T, log: (line: string) => void): Promise<T> {
  return {
    ...options,
    qemuBinary: await qemuFrom(options.cacheDir, options.qemuBinary, log),
    ...(options.destQemuBinary ? { destQemuBinary: await qemuFrom(options.cacheDir, options.destQemuBinary, log) } : {}),
  };
}

/**
 * Another QEMU than the host's, from Debian's archive (bookworm-backports' 10.0 by default), unpacked in the cache and
 * never installed. The binary finds its firmware and data under the prefix it was unpacked in (QEMU looks beside its
 * executable first). Resolves with the path of its qemu-system-x86_64.
 */
export async function fetchQemuRelease(cacheDir: string, log: (line: string) => void, suite = BACKPORTS_SUITE): Promise<string> {
  const apt = await privateArchive(cacheDir, suite);
  const wanted = await versionInSuite(apt, 'qemu-system-x86', suite);
  if (!wanted) throw new UserError(`${suite} has no qemu-system-x86`, EXIT.missingTool);
  const prefix = path.join(cacheDir, 'qemu', wanted.replace(/[^\w.+~-]/g, '_'));
  const binary = path.join(prefix, 'usr', 'bin', 'qemu-system-x86_64');
  if (existsSync(binary)) return binary;
  // Locked: a second run would remove this one's prefix before renaming its own over it.
  return withCacheLock(cacheDir, async () => (existsSync(binary) ? binary : downloadQemu(cacheDir, apt, suite, wanted, prefix, binary, log)));
}

async function downloadQemu(cacheDir: string, apt: readonly string[], suite: string, wanted: string, prefix: string, binary: string, log: (line: string) => void): Promise<string> {
  log(`downloading QEMU ${wanted} from ${suite}`);
  const work = mkdtempSync(path.join(cacheDir, 'qemu-download-'));
  try {
    await runCommand('apt-get', [...apt, 'download', '-q', ...QEMU_PACKAGES.map((p) => `${p}=${wanted}`)], { cwd: work, timeout: 600_000 });
    const unpacked = path.join(work, 'root');
    for (const deb of readdirSync(work).filter((f) => f.endsWith('.deb'))) await runCommand('dpkg-deb', ['-x', path.join(work, deb), unpacked]);
    rmSync(prefix, { recursive: true, force: true });
    mkdirSync(path.dirname(prefix), { recursive: true });
    renameSync(unpacked, prefix);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  if (!existsSync(binary)) throw new Error(`QEMU ${wanted} from ${suite} has no ${binary}`);
  return binary;
}
