// The xl driver's command construction, timing and failures, against a fake xl on PATH (declared as such in
// test/fixtures/fake-xl.sh: there is no Xen here; the nested Xen lab is where the real xl runs).
import t, { type Test } from 'tap';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../../harness/project-paths.js';
import { spawnSync } from 'node:child_process';
import { XlDriver, type XlDriverOptions } from '../../../harness/drivers/xl-driver.js';
import { shellQuote, type Dom0Shell } from '../../../system/xl.js';
import { tempDir } from '../../helpers/collector-fixtures.js';

const FAKE_XL = path.join(projectRoot(), 'test', 'fixtures', 'fake-xl.sh');
const FAKE_SSH = path.join(projectRoot(), 'test', 'fixtures', 'fake-ssh.sh');

function driver(t: Test, overrides: Partial<XlDriverOptions> = {}) {
  const log = path.join(tempDir('flinch-xl-'), 'calls');
  process.env.FAKE_XL_LOG = log;
  t.teardown(() => void delete process.env.FAKE_XL_LOG);
  const options: XlDriverOptions = {
    domain: 'guest', mode: 'save-restore', xl: FAKE_XL, remoteShell: null, target: 'localhost', migrateTransport: null,
    saveFile: path.join(tempDir('flinch-xl-'), 'guest.save'), vifSpec: null, timeoutMs: 10_000, ...overrides,
  };
  return { xl: new XlDriver(options), calls: () => readFileSync(log, 'utf8').trim().split('\n'), options };
}

t.test('save/restore: xl save then xl restore, timed; the downtime is their sum', async (t) => {
  const { xl, calls, options } = driver(t);
  await xl.prepare();
  const timing = await xl.migrate();
  t.same(calls(), ['list guest', 'domid guest', `save guest ${options.saveFile}`, `restore ${options.saveFile}`, 'domid guest']);
  t.equal(xl.domid, '3', 'the domid is read again after the restore');
  t.ok(timing.totalMs! >= 300, `save + restore took ${timing.totalMs} ms`);
  t.equal(timing.downtimeMs, timing.totalMs);
});

const FAKE_XENSTORE_WATCH = path.join(projectRoot(), 'test', 'fixtures', 'fake-xenstore-watch.sh');

t.test("the pause: the guest's suspend as xenstored announced it (@releaseDomain, stamped in dom0) to xl's return", async (t) => {
  for (const mode of ['save-restore', 'migrate'] as const) {
    const watchFile = path.join(tempDir('flinch-xl-'), 'release-watch');
    const { xl } = driver(t, { mode, migrateTransport: null, xenstoreWatch: FAKE_XENSTORE_WATCH, watchFile });
    const timing = await xl.migrate();
    const pause = timing.pause!;
    t.ok(pause, `${mode}: a pause`);
    // The fake suspends 100 ms into its save or migrate, and the first event (at registration) is not the suspend.
    t.ok(pause.stoppedAtMs >= timing.startedAtMs + 80 && pause.stoppedAtMs < timing.completedAtMs, `${mode}: stopped ${Math.round(pause.stoppedAtMs - timing.startedAtMs)} ms into it`);
    t.equal(pause.resumedAtMs, timing.completedAtMs, `${mode}: running again at the latest when xl returned`);
    t.notOk(existsSync(watchFile), `${mode}: dom0's stamp file is removed`);
    const left = spawnSync('pgrep', ['-f', FAKE_XENSTORE_WATCH], { encoding: 'utf8' }).stdout.trim();
    t.equal(left, '', `${mode}: the watch and its stamping loop are ended (process group)`);
  }
  const none = driver(t, { xenstoreWatch: '/nonexistent/xenstore-watch', watchFile: path.join(tempDir('flinch-xl-'), 'w') }).xl;
  const timing = await none.migrate();
  t.equal(timing.pause, null, 'no xenstore-watch in dom0: the migration is made, its pause is unknown');
  t.equal(driver(t).xl.constructor.name, 'XlDriver');
  t.equal((await driver(t).xl.migrate()).pause, undefined, 'no watch asked for: no pause at all, as before');
});

t.test('migrate to localhost through a transport command', async (t) => {
  const { xl, calls } = driver(t, { mode: 'migrate', migrateTransport: '/xenlab/localmig.sh' });
  const timing = await xl.migrate();
  t.same(calls(), ['migrate -s /xenlab/localmig.sh guest localhost', 'domid guest']);
  t.ok(timing.totalMs! >= 300);
  t.equal(timing.downtimeMs, null, 'xl gives no downtime figure');
});

t.test('through a remote shell: one quoted command line, run by the remote shell', async (t) => {
  const { xl, calls } = driver(t, { remoteShell: [FAKE_SSH, 'root@xen-1'], mode: 'migrate', migrateTransport: 'ssh -o "BatchMode yes"', target: 'xen-2' });
  await xl.migrate();
  t.same(calls().slice(0, 2), [`ssh root@xen-1 ${FAKE_XL} migrate -s 'ssh -o "BatchMode yes"' guest xen-2`, 'migrate -s ssh -o "BatchMode yes" guest xen-2']);
  t.equal(shellQuote("it's"), `'it'\\''s'`);
});

t.test('vif detach and attach for the nic-replug fault', async (t) => {
  const { xl, calls } = driver(t, { vifSpec: 'mac=00:16:3e:00:00:01,bridge=xenbr0' });
  t.same(xl.faults, ['nic-replug']);
  const record = await xl.injectFault('nic-replug', 'after');
  t.match(record, { fault: 'nic-replug', detail: /network-detach guest 0/ });
  t.same(calls(), ['network-detach guest 0', 'network-attach guest mac=00:16:3e:00:00:01 bridge=xenbr0']);
  t.equal(await xl.injectFault('carrier-flap', 'after'), null, 'what xl cannot do is not pretended');
});

t.test("failures carry xl's own words; QEMU-only options are refused", async (t) => {
  const { xl } = driver(t, { domain: 'ghost' });
  await t.rejects(xl.prepare(), { message: 'xl list exited 1: xl: error: invalid domain identifier: ghost' });
  await t.rejects(xl.migrate({ postcopy: true }), { message: /xl has none of them/ });
  const missing = driver(t, { xl: '/nonexistent/xl' }).xl;
  await t.rejects(missing.prepare(), { message: /\/nonexistent\/xl: spawn \/nonexistent\/xl ENOENT/ });
});

t.test("a migration's method overrides the driver's mode; an unknown one is refused", async (t) => {
  const { xl, calls, options } = driver(t, { mode: 'save-restore', migrateTransport: '/flinch/migrate-transport.sh' });
  await xl.migrate({ method: 'migrate' });
  await xl.migrate({ method: 'save-restore' });
  t.same(calls(), [
    'migrate -s /flinch/migrate-transport.sh guest localhost', 'domid guest',
    `save guest ${options.saveFile}`, `restore ${options.saveFile}`, 'domid guest',
  ]);
  await t.rejects(xl.migrate({ method: 'teleport' }), { message: /no method "teleport"/ });
});

// A Dom0Shell here is a real shell on this machine (sh -c), standing in for the nested Xen lab's dom0 console.
function localShell(lines: string[]): Dom0Shell {
  return {
    run: (commandLine) => {
      lines.push(commandLine);
      const child = spawnSync('sh', ['-c', commandLine], { encoding: 'utf8' });
      return Promise.resolve({ exitCode: child.status ?? 1, output: child.stdout + child.stderr });
    },
  };
}

t.test('through a dom0 shell object: quoted command lines, output and exit status from the shell', async (t) => {
  const lines: string[] = [];
  const { xl } = driver(t, { dom0Shell: localShell(lines), domuConsoleRunner: FAKE_XL });
  await xl.prepare();
  t.equal(xl.domid, '3');
  t.match(lines[0], new RegExp(`^${FAKE_XL} list guest 2>&1$`));
  t.same(xl.faults, ['guest-firewall-flush', 'guest-clock-step']);
  await t.rejects(xl.injectFault('guest-firewall-flush', 'after'), { message: /guest-firewall-flush in guest: exited 1: xl: unknown command guest/ });
  t.equal(lines.at(-1), `${FAKE_XL} guest 30 'nft flush ruleset' 2>&1`, 'the guest command travels as one quoted word');
  const ghost = driver(t, { domain: 'ghost', dom0Shell: localShell([]) }).xl;
  await t.rejects(ghost.prepare(), { message: 'xl list exited 1: xl: error: invalid domain identifier: ghost' });
});

t.test("to the same host with no ssh (xl migrate -s ''), and to a second host and back, each xl run where the domain is", async (t) => {
  const local = driver(t, { mode: 'migrate', migrateTransport: '', target: 'xl migrate-receive', remoteShell: [FAKE_SSH, 'root@xen-1'] });
  await local.xl.migrate();
  t.equal(local.calls()[0], `ssh root@xen-1 ${FAKE_XL} migrate -s '' guest 'xl migrate-receive'`, "-s '': xl runs the receiver itself");

  const pair = driver(t, { mode: 'migrate', target: 'root@xen-1', remoteShell: [FAKE_SSH, '-p', '2201', 'root@xen-1'], peer: { remoteShell: [FAKE_SSH, 'root@xen-2'], target: 'root@xen-2' } });
  await pair.xl.prepare();
  t.equal(pair.xl.where, 'root@xen-1');
  await pair.xl.migrate();
  t.equal(pair.xl.where, 'root@xen-2', 'on the second host');
  t.ok(pair.xl.isOnPeer);
  await pair.xl.migrate({ method: 'save-restore' });
  await pair.xl.migrate();
  t.equal(pair.xl.where, 'root@xen-1', 'and back');
  const ssh = pair.calls().filter((c) => c.startsWith('ssh '));
  t.same(ssh.map((c) => c.replace(FAKE_XL, 'xl').replace(/ \/\S+guest\.save/g, ' SAVE')), [
    'ssh -p 2201 root@xen-1 xl list guest', 'ssh -p 2201 root@xen-1 xl domid guest',
    'ssh -p 2201 root@xen-1 xl migrate guest root@xen-2', 'ssh root@xen-2 xl domid guest',
    'ssh root@xen-2 xl save guest SAVE', 'ssh root@xen-2 xl restore SAVE', 'ssh root@xen-2 xl domid guest',
    'ssh root@xen-2 xl migrate guest root@xen-1', 'ssh -p 2201 root@xen-1 xl domid guest',
  ], 'migrations from the host the domain is on, to the other; save/restore where it is');
});

t.test('a save file on a user\'s host is removed once restored from', async (t) => {
  const { xl, options } = driver(t, { removeSaveFile: true });
  await xl.migrate();
  t.notOk(existsSync(options.saveFile), 'gone: a copy of the guest\'s memory does not stay behind');
});

t.test('the migration is over when xl restore returns, not when the save file is gone', async (t) => {
  // An rm that takes a second, as one more ssh round trip into a busy dom0 does (1.4 s in the nested lab).
  const bin = tempDir('flinch-slow-rm-');
  writeFileSync(path.join(bin, 'rm'), '#!/bin/sh\nsleep 1\nexec /bin/rm "$@"\n', { mode: 0o755 });
  const savedPath = process.env.PATH;
  process.env.PATH = `${bin}:${savedPath}`;
  t.teardown(() => void (process.env.PATH = savedPath));
  const watchFile = path.join(tempDir('flinch-xl-'), 'release-watch');
  const { xl, options } = driver(t, { removeSaveFile: true, xenstoreWatch: FAKE_XENSTORE_WATCH, watchFile });
  const timing = await xl.migrate();
  t.notOk(existsSync(options.saveFile), 'removed, slowly');
  const elapsed = timing.completedAtMs - timing.startedAtMs;
  t.ok(elapsed < timing.totalMs! + 500, `completed ${Math.round(elapsed)} ms in, xl's own ${timing.totalMs} ms: the rm's second is not in it`);
  t.ok(timing.pause && timing.pause.resumedAtMs - timing.pause.stoppedAtMs <= timing.totalMs!, 'nor in the pause');
});
