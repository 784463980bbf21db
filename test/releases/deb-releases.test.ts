// The agent's package on the Debian release before and the release after the one flinch is built on: installed with
// dpkg into a debootstrapped Debian 11 (its 5.10 kernel, systemd 247) and Debian 13 (its 6.12 kernel, systemd 257),
// booted under QEMU (TCG), checked as test/packaging/deb.test.ts checks Debian 12. Not part of `npm test` (about ten
// minutes): `npm run test:releases` runs it with the QEMU x kernel matrix.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runCommand } from '../../system/run-command.js';
import { projectRoot } from '../../harness/project-paths.js';
import { FLINCH_VERSION } from '../../contract/version.js';
import { PACKAGE_CHECK_RESULTS, type PackageCheckResults } from '../../harness/lab/package-lab.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';

const root = projectRoot();
const deb = path.join(root, 'build', 'deb', `flinch-agent_${FLINCH_VERSION}_amd64.deb`);

t.before(async () => {
  if (!existsSync(deb)) await runCommand('bash', [path.join(root, 'packaging', 'deb', 'build-deb.sh')], { timeout: 300_000 });
});

// Debian 13's 6.12 kernel runs under QEMU 10.0 from bookworm-backports: 7.2's TCG double-faults under 6.12.
for (const [suite, kernel, qemu] of [['bullseye', /^linux-image-5\.10\./, 'bookworm'], ['trixie', /^linux-image-6\.12\./, 'bookworm-backports']] as const) {
  t.test(`installed in a Debian ${suite === 'bullseye' ? 11 : 13} (${suite}) guest with systemd: the agent's checks as on Debian 12`, async (t) => {
    const out = mkdtempSync(path.join(os.tmpdir(), `flinch-package-check-${suite}-`));
    const run = await runCli([FLINCH, 'package-check', '--deb', deb, '--suite', suite, '--qemu', qemu, '--out', out], { timeoutMs: 1_200_000 });
    const results = JSON.parse(readFileSync(path.join(out, PACKAGE_CHECK_RESULTS), 'utf8')) as PackageCheckResults;
    t.equal(results.suite, suite);
    t.match(results.kernel, kernel, `the guest ran ${results.kernel}`);
    for (const check of results.checks) t.ok(check.ok, `${check.name}: ${check.detail}`);
    t.equal(results.checks.length, 7, 'every check of the agent ran');
    t.equal(run.code, 0, run.stderr.split('\n').slice(-5).join('\n'));
    t.equal(results.enabledAfterInstall, 'disabled');
    t.match(results.securityExposure, /^\d+\.\d+ /, `systemd-analyze security of ${suite}'s systemd gave a score: ${results.securityExposure}`);
  });
}
