import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../contract/command-line.js';
import { runCommand } from '../../system/run-command.js';
import { withCacheLock } from './cache-lock.js';

/** Debian's newer QEMU and kernel for this release: bookworm-backports carries QEMU 10.0 and Linux 6.12. */
export const BACKPORTS_SUITE = 'bookworm-backports';

/** Package lists younger than this are used as they are: a lab run should not wait on `apt-get update` each time. */
const LISTS_FRESH_MS = 12 * 3600_000;

/**
 * Another suite of Debian's archive than the host's (bookworm-backports, bullseye, trixie), read through a private
 * apt state in the cache: its own sources list, lists and archives, so that the host's apt configuration and
 * packages are left exactly as they are. Packages are only ever downloaded from it (`apt-get download`), never
 * installed. Resolves with the apt options that point at it, lists updated.
 */
export async function privateArchive(cacheDir: string, suite: string): Promise<string[]> {
  if (!/^[a-z]+(-[a-z]+)?$/.test(suite)) throw new UserError(`${suite}: not the name of a Debian suite`, EXIT.usage);
  // Locked whole: another run's apt-get update would refuse this one's ("Could not get lock"), and the sources list is
  // rewritten here while it may be read there.
  return withCacheLock(cacheDir, () => updatedArchive(cacheDir, suite));
}

async function updatedArchive(cacheDir: string, suite: string): Promise<string[]> {
  const aptRoot = path.join(cacheDir, 'apt', suite);
  for (const dir of ['lists/partial', 'archives/partial']) mkdirSync(path.join(aptRoot, dir), { recursive: true });
  const sources = path.join(aptRoot, 'sources.list');
  writeFileSync(sources, `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian ${suite} main\n`);
  const apt = [
    '-o', `Dir::Etc::SourceList=${sources}`, '-o', 'Dir::Etc::SourceParts=/dev/null', '-o', `Dir::State::Lists=${path.join(aptRoot, 'lists')}`,
    '-o', `Dir::Cache::Archives=${path.join(aptRoot, 'archives')}`, '-o', 'APT::Sandbox::User=root',
  ];
  const stamp = path.join(aptRoot, 'updated');
  if (existsSync(stamp) && Date.now() - statSync(stamp).mtimeMs < LISTS_FRESH_MS) return apt;
  try {
    await runCommand('apt-get', [...apt, 'update', '-q'], { timeout: 300_000 });
  } catch (error) {
    throw new UserError(`cannot read Debian's ${suite} (${(error as Error).message.split('\n')[0]})`, EXIT.missingTool);
  }
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
  return apt;
}

/** The version of `packageName` that `suite` itself carries (madison lists every suite the sources name). */
export async function versionInSuite(apt: readonly string[], packageName: string, suite: string): Promise<string | null> {
  // "qemu-system-x86 | 1:10.0.2+ds-2+deb13u1~bpo12+1 | http://deb.debian.org/debian bookworm-backports/main amd64 Packages"
  const { stdout } = await runCommand('apt-cache', [...apt, 'madison', packageName]);
  return stdout.split('\n').map((line) => line.split('|').map((f) => f.trim())).find((f) => f[2]?.includes(` ${suite}/`))?.[1] ?? null;
}
