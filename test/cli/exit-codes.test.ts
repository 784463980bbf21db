// The exit statuses are a contract: the table in contract/command-line.ts, README's "Exit status" table and
// flinch-agent(1) and flinch(1) must say the same, and the codes are the ones the programs really use.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { EXIT } from '../../contract/command-line.js';
import { projectRoot } from '../../harness/project-paths.js';

const AGENT_CODES = [EXIT.ok, EXIT.failed, EXIT.usage, EXIT.stateDir, EXIT.config];

t.test("README's table lists exactly the codes of EXIT, and says which program uses each", async (t) => {
  const readme = readFileSync(path.join(projectRoot(), 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Exit status'), readme.indexOf('\n## ', readme.indexOf('## Exit status') + 1));
  const rows = [...section.matchAll(/^\| (\d+) \| .+ \| (both|flinch|flinch-agent) \|$/gm)].map((m) => ({ code: Number(m[1]), from: m[2] }));
  t.same(rows.map((r) => r.code), Object.values(EXIT).sort((a, b) => a - b), 'one row a code, in order');
  t.same(rows.filter((r) => r.from !== 'flinch').map((r) => r.code), AGENT_CODES, "flinch-agent's codes");
});

t.test('flinch-agent(1) lists the agent its codes', async (t) => {
  const man = readFileSync(path.join(projectRoot(), 'packaging', 'deb', 'flinch-agent.1'), 'utf8');
  const section = man.slice(man.indexOf('.SH EXIT STATUS'), man.indexOf('.SH SEE ALSO'));
  t.same([...section.matchAll(/^\.B (\d+)$/gm)].map((m) => Number(m[1])), AGENT_CODES);
});

t.test("flinch(1) lists the harness its codes", async (t) => {
  const man = readFileSync(path.join(projectRoot(), 'packaging', 'host-deb', 'flinch.1'), 'utf8');
  const section = man.slice(man.indexOf('.SH EXIT STATUS'), man.indexOf('.SH SEE ALSO'));
  t.same([...section.matchAll(/^\.B (\d+)$/gm)].map((m) => Number(m[1])), [EXIT.ok, EXIT.failed, EXIT.usage, EXIT.missingTool, EXIT.needsRoot, EXIT.worseThanExpected]);
});
