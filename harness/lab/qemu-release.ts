import { existsSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { runCommand } from '../../system/run-command.js';

/** Debian's newer QEMU for this release: bookworm-backports carries 10.0 beside bookworm's 7.2. */
export const BACKPORTS_SUITE = 'bookworm-backports';
const QEMU_PACKAGES = ['qemu-system-x86', 'qemu-system-common', 'qemu-system-data'];

/**
 * Another QEMU than the host's, from Debian's archive, unpacked in the cache and never installed: a private apt state
 * (its own sources list, lists and archives) so the host's apt configuration and packages are left as they are. The
 * binary finds its firmware and data under the prefix it was unpacked in (QEMU looks beside its executable first).
 * Resolves with the path of its qemu-system-x86_64.
 */
export async function fetchQemuRelease(cacheDir: string, log: (line: string) => void, suite = BACKPORTS_SUITE): Promise<string> {
  const aptRoot = path.join(cacheDir, 'apt', suite);
  for (const dir of ['lists/partial', 'archives/partial']) mkdirSync(path.join(aptRoot, dir), { recursive: true });
  const sources = path.join(aptRoot, 'sources.list');
  writeFileSync(sources, `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${suite} main\n`);
  const apt = [
    '-o', `Dir::Etc::SourceList=${sources}`, '-o', 'Dir::Etc::SourceParts=/dev/null', '-o', `Dir::State::Lists=${path.join(aptRoot, 'lists')}`,
    '-o', `Dir::Cache::Archives=${path.join(aptRoot, 'archives')}`, '-o', 'APT::Sandbox::User=root',
  ];
  try {
    await runCommand('apt-get', [...apt, 'update', '-q'], { timeout: 300_000 });
  } catch (error) {
    throw new UserError(`cannot read Debian's ${suite} (${(error as Error).message.split('\n')[0]})`, EXIT.missingTool);
  }
  // "qemu-system-x86 | 1:10.0.2+ds-2+deb13u1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages"
  const { stdout } = await runCommand('apt-cache', [...apt, 'madison', 'qemu-system-x86']);
  const wanted = stdout.split('\n').map((line) => line.split('|').map((f) => f.trim())).find((f) => f[2]?.includes(` ${suite}/`))?.[1];
  if (!wanted) throw new UserError(`${suite} has no qemu-system-x86`, EXIT.missingTool);
  const prefix = path.join(cacheDir, 'qemu', wanted.replace(/[^\w.+~-]/g, '_'));
  const binary = path.join(prefix, 'usr', 'bin', 'qemu-system-x86_64');
  if (existsSync(binary)) return binary;
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
