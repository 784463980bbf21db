// A state directory on a full or read-only filesystem: real tmpfs mounts (root), unmounted in teardown.
import t, { type Test } from 'tap';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from '../../../system/run-command.js';
import { StateDir, StateDirError } from '../../../agent/state/state-dir.js';
import { startAgent } from '../../helpers/agent-process.js';

async function tmpfs(t: Test, options: string): Promise<string> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-tmpfs-'));
  await runCommand('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', dir]);
  t.teardown(() => runCommand('umount', [dir]).then(() => undefined, () => undefined));
  return dir;
}

async function fullTmpfs(t: Test): Promise<string> {
  const dir = await tmpfs(t, 'size=64k');
  // Fill it to the last block: a write of a few bytes must fail.
  writeFileSync(path.join(dir, 'fill'), Buffer.alloc(64 * 1024 - 4096));
  await runCommand('sh', ['-c', `dd if=/dev/zero of=${dir}/rest bs=512 2>/dev/null || true`]);
  return dir;
}

t.test('a full state directory: every write says which directory and why, and leaves no temp file', async (t) => {
  const dir = await fullTmpfs(t);
  const state = new StateDir(dir, () => undefined);
  t.throws(() => state.writeJson('baseline.json', 2, { big: 'x'.repeat(8192) }), new StateDirError(dir, 'write baseline.json', Object.assign(new Error(), { code: 'ENOSPC' })));
  t.throws(() => state.appendLine('reports.jsonl', { x: 'y'.repeat(8192) }), { message: `state directory ${dir}: cannot append to reports.jsonl: no space left on the device` });
  t.throws(() => state.assertWritable(), { message: `state directory ${dir}: cannot write to it: no space left on the device` });
  t.same(readdirSync(dir).filter((f) => f.includes('.tmp-') || f.startsWith('.writable')), [], 'no temp or probe file left behind');
});

t.test('the agent on a full or read-only state directory stops at once with one line naming it, exit 73', async (t) => {
  const cases: Array<[string, string]> = [
    [await fullTmpfs(t), 'no space left on the device'],
    [await tmpfs(t, 'size=1m,ro'), 'the file system is read-only'],
  ];
  for (const [dir, reason] of cases) {
    const agent = startAgent(t, ['run', '--state-dir', dir, '--probes', 'clock,link', '--remediate', 'dry-run']);
    const code = await new Promise<number | null>((resolve) => agent.child.once('exit', resolve));
    t.equal(code, 73, reason);
    t.same(agent.stderr.join('').trim().split('\n'), [`flinch-agent: state directory ${dir}: cannot write to it: ${reason}`], 'one line, naming the directory');
  }
});
