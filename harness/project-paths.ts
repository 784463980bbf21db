import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | null = null;

/** The repository root, whether running from TypeScript sources or from dist/. */
export function projectRoot(): string {
  if (cached) return cached;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'flinch') {
      cached = dir;
      return dir;
    }
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error('cannot find the flinch project root (package.json named "flinch")');
    dir = parent;
  }
}

/** The agent bundle the lab puts in the guest, produced by `npm run build`. */
export function guestAgentBundle(): string {
  return path.join(projectRoot(), 'build', 'agent', 'flinch-agent.cjs');
}

/** The single-executable agent the lab guest runs, produced by `npm run build` (packaging/sea/build-sea.sh). */
export function guestAgentExecutable(): string {
  return path.join(projectRoot(), 'build', 'sea', 'flinch-agent');
}
