import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import t from 'tap';
import ts from 'typescript';
import { projectRoot } from '../../harness/project-paths.js';

/**
 * The arrows of ../shared/ARCHITECTURE.md's layers, read from the code: each layer may import itself and the layers
 * listed. Imports are found by TypeScript's own pre-processor (static, `export … from`, dynamic `import()`), so a
 * multi-line or dynamic import cannot slip past a regular expression.
 */
const ALLOWED: Record<string, readonly string[]> = {
  contract: [],
  system: ['contract'],
  probes: ['contract', 'system'],
  agent: ['probes', 'contract', 'system'],
  harness: ['contract', 'system'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) return sourceFiles(full);
    return name.endsWith('.ts') ? [full] : [];
  });
}

/** Every import that crosses a layer, as "from-file -> to-file (from-layer -> to-layer)", and the arrows seen. */
function layerViolations(root: string): { violations: string[]; arrows: Set<string> } {
  const violations: string[] = [];
  const arrows = new Set<string>();
  for (const layer of Object.keys(ALLOWED)) {
    let files: string[];
    try {
      files = sourceFiles(path.join(root, layer));
    } catch {
      continue;
    }
    for (const file of files) {
      const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
      for (const { fileName } of importedFiles) {
        if (!fileName.startsWith('.')) continue;
        const target = path.relative(root, path.resolve(path.dirname(file), fileName));
        const targetLayer = target.split(path.sep)[0]!;
        if (targetLayer === layer) continue;
        arrows.add(`${layer} -> ${targetLayer}`);
        if (!ALLOWED[layer]!.includes(targetLayer)) violations.push(`${path.relative(root, file)} -> ${target} (${layer} -> ${targetLayer})`);
      }
    }
  }
  return { violations, arrows };
}

t.test('the code keeps the layers: contract <- system <- probes <- agent, and the harness on contract and system only', async (t) => {
  const { violations, arrows } = layerViolations(projectRoot());
  t.same(violations, [], 'no import points the wrong way');
  t.comment(`arrows in use: ${[...arrows].sort().join(', ')}`);
  // The layers exist and are used as drawn; an empty folder would pass the check above for nothing.
  for (const arrow of ['probes -> contract', 'probes -> system', 'agent -> probes', 'agent -> contract', 'agent -> system', 'harness -> contract', 'harness -> system']) {
    t.ok(arrows.has(arrow), `${arrow} is an arrow the code uses`);
  }
});

t.test('the walker sees a wrong arrow, dynamic and multi-line imports included', async (t) => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'flinch-layers-'));
  const write = (file: string, text: string) => {
    mkdirSync(path.dirname(path.join(root, file)), { recursive: true });
    writeFileSync(path.join(root, file), text);
  };
  write('contract/a.ts', "import { x } from '../system/b.js';\n");
  write('system/b.ts', "export const x = 1;\n");
  write('probes/c.ts', "import {\n  y,\n} from '../agent/d.js';\nexport const z = y;\n");
  write('agent/d.ts', "export const y = 2;\n");
  write('harness/e.ts', "const m = await import('../probes/c.js');\nexport * from '../agent/d.js';\n");
  const { violations } = layerViolations(root);
  t.same(violations.sort(), [
    'contract/a.ts -> system/b.js (contract -> system)',
    'harness/e.ts -> agent/d.js (harness -> agent)',
    'harness/e.ts -> probes/c.js (harness -> probes)',
    'probes/c.ts -> agent/d.js (probes -> agent)',
  ]);
});
