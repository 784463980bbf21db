// The xl driver's command construction, timing and failures, against a fake xl on PATH (declared as such in
// test/fixtures/fake-xl.sh: there is no Xen here; the nested Xen lab is where the real xl runs).
import t, { type Test } from 'tap';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { projectRoot } from '../../../harness/project-paths.js';
import { XlDriver, shellQuote, type XlDriverOptions } from '../../../harness/drivers/xl-driver.js';
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
  t.same(calls(), ['list guest', `save guest ${options.saveFile}`, `restore ${options.saveFile}`]);
  t.ok(timing.totalMs! >= 300, `save + restore took ${timing.totalMs} ms`);
  t.equal(timing.downtimeMs, timing.totalMs);
});

t.test('migrate to localhost through a transport command', async (t) => {
  const { xl, calls } = driver(t, { mode: 'migrate', migrateTransport: '/xenlab/localmig.sh' });
  const timing = await xl.migrate();
  t.same(calls(), ['migrate -s /xenlab/localmig.sh guest localhost']);
  t.ok(timing.totalMs! >= 300);
  t.equal(timing.downtimeMs, null, 'xl gives no downtime figure');
});

t.test('through a remote shell: one quoted command line, run by the remote shell', async (t) => {
  const { xl, calls } = driver(t, { remoteShell: [FAKE_SSH, 'root@xen-1'], mode: 'migrate', migrateTransport: 'ssh -o "BatchMode yes"', target: 'xen-2' });
  await xl.migrate();
  t.same(calls(), [`ssh root@xen-1 ${FAKE_XL} migrate -s 'ssh -o "BatchMode yes"' guest xen-2`, 'migrate -s ssh -o "BatchMode yes" guest xen-2']);
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
