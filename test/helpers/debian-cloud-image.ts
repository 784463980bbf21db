import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../harness/project-paths.js';
import { runCommand } from '../../system/run-command.js';
import { withCacheLock } from '../../harness/lab/cache-lock.js';

const SCRIPT = path.join(projectRoot(), 'test', 'fixtures', 'build-debian-cloud-image.sh');

/**
 * The Debian 12 cloud image test/fixtures/build-debian-cloud-image.sh builds (mmdebstrap, mke2fs -d, extlinux; about
 * two minutes, once), cached by the script's own hash so that a change to the recipe builds it again.
 */
export async function debianCloudImage(cacheDir: string, log: (line: string) => void): Promise<string> {
  const key = createHash('sha256').update(readFileSync(SCRIPT)).digest('hex').slice(0, 12);
  const image = path.join(cacheDir, 'images', `debian12-cloud-${key}.raw`);
  if (existsSync(image)) return image;
  return withCacheLock(cacheDir, async () => (existsSync(image) ? image : buildImage(image, log)));
}

async function buildImage(image: string, log: (line: string) => void): Promise<string> {
  mkdirSync(path.dirname(image), { recursive: true });
  log(`building the Debian 12 cloud image (mmdebstrap, extlinux) into ${image}`);
  const partial = `${image}.partial`;
  try {
    await runCommand('sh', [SCRIPT, partial], { timeout: 1_200_000 });
    renameSync(partial, image);
  } finally {
    rmSync(partial, { force: true });
  }
  return image;
}
