// The Debian package as an administrator gets it: built offline with dpkg-deb, checked by lintian, and installed with
// dpkg into a debootstrapped Debian 12 that boots systemd under QEMU (TCG), reporting to a collector on the host side of
// a private network namespace.
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from '../../system/run-command.js';
import { projectRoot } from '../../harness/project-paths.js';
import { FLINCH_VERSION } from '../../contract/version.js';
import { PACKAGE_CHECK_RESULTS, type PackageCheckResults } from '../../harness/lab/package-lab.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { busyMachine } from '../helpers/exclusive.js';

await busyMachine(t);

const root = projectRoot();
const deb = path.join(root, 'build', 'deb', `flinch-agent_${FLINCH_VERSION}_amd64.deb`);
const hostDeb = path.join(root, 'build', 'deb', `flinch_${FLINCH_VERSION}_amd64.deb`);
const unit = readFileSync(path.join(root, 'packaging', 'deb', 'flinch-agent.service'), 'utf8');

t.before(async () => {
  await runCommand('bash', [path.join(root, 'packaging', 'deb', 'build-deb.sh')], { timeout: 300_000 });
  await runCommand('bash', [path.join(root, 'packaging', 'host-deb', 'build-host-deb.sh')], { timeout: 600_000 });
});

t.test('the package holds the agent, the unit, the config as a conffile and a private state dir', async (t) => {
  const { stdout: contents } = await runCommand('dpkg-deb', ['--contents', deb]);
  const entry = (file: string) => contents.split('\n').find((line) => line.endsWith(` ./${file}`) || line.endsWith(` ./${file}/`));
  t.match(entry('usr/bin/flinch-agent'), /^-rwxr-xr-x root\/root/);
  t.match(entry('lib/systemd/system/flinch-agent.service'), /^-rw-r--r-- root\/root/);
  t.match(entry('etc/flinch/agent.yaml'), /^-rw-r--r-- root\/root/);
  t.match(entry('var/lib/flinch'), /^drwx------ root\/root/);
  t.ok(entry('usr/share/man/man1/flinch-agent.1.gz'), 'man page');
  t.notMatch(contents, /node_modules/, 'no node_modules tree: the agent is one executable');
  const { stdout: conffiles } = await runCommand('dpkg-deb', ['-I', deb, 'conffiles']);
  t.equal(conffiles.trim(), '/etc/flinch/agent.yaml');
  const { stdout: depends } = await runCommand('dpkg-deb', ['-f', deb, 'Depends']);
  t.match(depends, /libc6 \(>= 2\.28\)/, 'the glibc the SEA needs');
});

t.test('lintian has no error or warning on either package (overrides are justified in each lintian-overrides)', async (t) => {
  for (const file of [deb, hostDeb]) {
    const result = await runCommand('lintian', ['--fail-on', 'error,warning', '--pedantic', file], { timeout: 300_000 }).then(
      (r) => ({ ok: true, out: r.stdout }),
      (error: Error) => ({ ok: false, out: error.message }),
    );
    t.ok(result.ok, `${path.basename(file)}: ${result.out}`);
    t.notMatch(result.out, /^[EW]: /m);
  }
});

t.test('the harness package: the application and its runtime under /usr/lib/flinch, its native modules, no dev tree', async (t) => {
  const { stdout: contents } = await runCommand('dpkg-deb', ['--contents', hostDeb], { maxBuffer: 64 * 1024 * 1024 });
  const entry = (file: string) => contents.split('\n').find((line) => line.endsWith(` ./${file}`));
  t.match(entry('usr/bin/flinch'), /^-rwxr-xr-x root\/root/);
  t.match(entry('usr/lib/flinch/node'), /^-rwxr-xr-x root\/root/, 'the Node 20 runtime (Debian 12 has 18)');
  t.ok(entry('usr/lib/flinch/dist/harness/cli.js'), 'the harness');
  t.ok(entry('usr/lib/flinch/node_modules/better-sqlite3/build/Release/better_sqlite3.node'), "the collector store's SQLite addon");
  t.ok(entry('usr/lib/flinch/node_modules/netlink/prebuilds/linux-x64/node.napi.node'), 'the netlink addon, for this architecture only');
  t.ok(entry('usr/lib/flinch/build/sea/flinch-agent'), 'the agent executable the labs put in their guests');
  t.ok(entry('usr/lib/flinch/harness/lab/guest/init.sh'), "the lab guest's init");
  t.ok(entry('usr/share/man/man1/flinch.1.gz'), 'man page');
  for (const devOnly of ['node_modules/tap/', 'node_modules/typescript/', 'node_modules/playwright-core/', 'node_modules/esbuild/', 'better-sqlite3/deps/', '.js.map', 'dist/agent/']) {
    t.notOk(contents.includes(devOnly), `no ${devOnly}`);
  }
  const { stdout: depends } = await runCommand('dpkg-deb', ['-f', hostDeb, 'Depends']);
  t.notMatch(depends, /nodejs/, 'no dependency on the system Node.js');
});

t.test('the unit keeps only the capabilities the agent uses, and the hardening the issue asks for', async (t) => {
  t.match(unit, /^CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_SYSLOG CAP_SYS_TIME$/m);
  for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'ReadWritePaths=/var/lib/flinch', 'ProtectHome=yes', 'PrivateTmp=yes',
    'SystemCallFilter=@system-service @clock', 'Restart=on-failure', 'RestartPreventExitStatus=78',
    'RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6 AF_PACKET']) {
    t.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), line);
  }
  t.notMatch(unit, /^ProtectKernelLogs=yes/m, 'the agent reads /dev/kmsg');
  t.notMatch(unit, /^ProtectClock=yes/m, 'the safety net may step the clock (CAP_SYS_TIME)');
});

t.test('installed in a Debian 12 guest with systemd: the agent not enabled by the install, starts, reports, survives kill -9, refuses a bad config; the harness runs with no system Node.js and removes cleanly', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-package-check-'));
  const run = await runCli([FLINCH, 'package-check', '--deb', deb, '--host-deb', hostDeb, '--out', out], { timeoutMs: 900_000 });
  const results = JSON.parse(readFileSync(path.join(out, PACKAGE_CHECK_RESULTS), 'utf8')) as PackageCheckResults;
  for (const check of results.checks) t.ok(check.ok, `${check.name}: ${check.detail}`);
  t.equal(results.checks.length, 12, 'every check ran: 7 for the agent, 5 for the harness package');
  t.equal(run.code, 0, run.stderr.split('\n').slice(-5).join('\n'));
  t.equal(results.enabledAfterInstall, 'disabled');
  t.match(results.securityExposure, /^\d+\.\d+ /, 'systemd-analyze security gave a score');
  t.ok(Number(results.securityExposure?.split(' ')[0]) < 4, `exposure ${results.securityExposure} stays below 4.0`);
});

