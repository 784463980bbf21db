import t from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FLINCH_VERSION } from '../contract/version.js';
import { projectRoot } from '../harness/project-paths.js';

t.test('the version compiled into the executables is package.json\'s', async (t) => {
  const manifest = JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as { version: string };
  t.equal(FLINCH_VERSION, manifest.version);
});
