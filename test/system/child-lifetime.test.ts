// A child bound with diesWithThisProcess goes when its parent is killed outright (SIGKILL: no handler, no cleanup):
// real processes, nothing mocked.
import t, { type Test } from 'tap';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { projectRoot } from '../../harness/project-paths.js';

/** The built module (npm test builds first): the parent below is plain node, without tap's TypeScript loader. */
const childLifetime = path.join(projectRoot(), 'dist', 'system', 'child-lifetime.js');

async function orphanAfterParentKilled(t: Test, bound: boolean): Promise<boolean> {
  // The parent starts `sleep 600`, bound or not, prints its pid, and waits to be killed.
  const script = `
    const { spawn } = require('node:child_process');
    import(${JSON.stringify(childLifetime)}).then(({ diesWithThisProcess }) => {
      const [command, args] = ${bound} ? diesWithThisProcess('sleep', ['600']) : ['sleep', ['600']];
      const child = spawn(command, args, { stdio: 'ignore' });
      console.log(child.pid);
      setInterval(() => undefined, 1000);
    });`;
  const parent = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const pid = await new Promise<number>((resolve) => parent.stdout.once('data', (d) => resolve(Number(String(d).trim()))));
  t.ok(existsSync(`/proc/${pid}`), `the child ${pid} runs`);
  parent.kill('SIGKILL');
  await new Promise((resolve) => parent.once('exit', resolve));
  await sleep(500);
  const alive = existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (alive) process.kill(pid, 'SIGKILL'); // ours: started above
  return alive;
}

t.test('a bound child dies with its parent; an unbound one would have been orphaned', async (t) => {
  t.equal(await orphanAfterParentKilled(t, true), false, 'bound: gone once the parent was SIGKILLed');
  t.equal(await orphanAfterParentKilled(t, false), true, 'unbound: still running (the failure this prevents)');
});

t.test("busybox's setpriv, which has no --pdeathsig (the lab guests'), is not used: the command runs as it is", async (t) => {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  // host-setup.sh installs busybox-static for the lab guests: here it always is.
  t.ok(busybox, 'busybox is installed');
  if (!busybox) return;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'flinch-setpriv-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  symlinkSync(busybox, path.join(dir, 'setpriv'));
  const lineWith = (pathVariable: string) => {
    const script = `import(${JSON.stringify(childLifetime)}).then(({ diesWithThisProcess }) => console.log(JSON.stringify(diesWithThisProcess('nft', ['monitor'], 'TERM'))));`;
    return JSON.parse(execFileSync(process.execPath, ['-e', script], { env: { ...process.env, PATH: pathVariable } }).toString());
  };
  t.same(lineWith(`${dir}:${process.env.PATH}`), ['nft', ['monitor']], "busybox's setpriv first on the PATH: the command as it is");
  t.same(lineWith(process.env.PATH!), ['setpriv', ['--pdeathsig', 'TERM', '--', 'nft', 'monitor']], "util-linux's: bound");
});
