// flinch matrix for real, across versions: Debian's QEMU 7.2 migrating to bookworm-backports' QEMU 10.0 (fetched into
// the cache, never installed) against 10.0 to 10.0, the guest on bullseye's Linux 5.10; two faults a cell; then the
// same command again, which only reads the finished cells back. And one guest on Linux 6.12 (bookworm-backports),
// under QEMU 10.0: under 7.2's TCG that kernel double-faults in most boots here (README, "Across versions").
// Not part of `npm test` (about three minutes): `npm run test:releases` runs it with the package on other Debian releases.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LabResults } from '../../harness/report/lab-results.js';
import { readMatrix } from '../../harness/matrix/matrix.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';

function checkMigrations(t: Test, name: string, results: LabResults): void {
  for (const m of results.migrations) {
    const row = `${name} ${m.faults.join('+') || 'none'}`;
    t.notOk(m.error, `${row}: ${m.error ?? 'migrated'}`);
    t.equal(m.verdictSource, 'agent', `${row}: judged by the agent (${m.verdict})`);
    t.ok(m.pauseMs !== null && m.pauseMs! > 0, `${row}: true pause ${m.pauseMs} ms across the two QEMUs`);
  }
  t.equal(results.migrations.find((m) => m.faults.includes('nic-replug'))?.verdict, 'healed', `${name}: the replugged NIC healed`);
}

t.test('7.2 to 10.0 against 10.0 to 10.0 on a 5.10 guest: the machine type pinned, every migration judged, the cells compared, a re-run resumes', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-e2e-matrix-'));
  const argv = [FLINCH, 'matrix', '--qemu', 'bookworm:bookworm-backports,bookworm-backports', '--guest-kernel', 'bullseye', '--faults', 'none,nic-replug', '--migrations', '1', '--out', out];
  const run = await runCli(argv, { timeoutMs: 900_000 });
  t.equal(run.code, 0, `flinch matrix exits 0; stderr: ${run.stderr.slice(-800)}`);
  const matrix = readMatrix(out);
  t.same(matrix.cells.map((c) => [c.name, c.error]), [['bookworm__bookworm-backports__bullseye', null], ['bookworm-backports__bookworm-backports__bullseye', null]]);
  const [upgrade, same] = matrix.cells.map((c) => JSON.parse(readFileSync(path.join(c.dir, 'results.json'), 'utf8')) as LabResults);
  t.match(upgrade!.hypervisor.qemu, /^7\.2\./, "from Debian 12's QEMU");
  t.match(upgrade!.hypervisor.destQemuVersion, /^10\.0\./, "to bookworm-backports' QEMU");
  t.equal(upgrade!.hypervisor.machine, 'pc-i440fx-7.2', "every destination ran the machine the guest started on, not 10.0's pc");
  t.match(same!.hypervisor.qemu, /^10\.0\./);
  t.equal(same!.hypervisor.machine, 'pc-i440fx-10.0');
  for (const [i, results] of [upgrade!, same!].entries()) {
    t.match(results.guest.kernel, /^linux-image-5\.10\./);
    checkMigrations(t, matrix.cells[i]!.name, results);
  }
  t.equal(matrix.comparison!.campaigns.length, 2);
  t.match(run.stdout, /B against A: .*too few to tell/, 'one migration a row is too few for the test, and it says so');
  t.match(readFileSync(path.join(out, 'comparison.txt'), 'utf8'), /A: qemu 7\.2\.\d+ → 10\.0\.\d+ \(pc-i440fx-7\.2\), guest linux-image-5\.10/);

  const again = await runCli(argv, { timeoutMs: 120_000 });
  t.equal(again.code, 0, again.stderr);
  t.equal(again.stderr.match(/campaign already complete/g)?.length, 2, 'both cells read back, no guest booted');
});

t.test("a Linux 6.12 guest (bookworm-backports' cloud kernel, its modules xz-compressed) under QEMU 10.0", async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-e2e-k612-'));
  const run = await runCli([FLINCH, 'lab', '--qemu', 'bookworm-backports', '--guest-kernel', 'bookworm-backports', '--faults', 'none,nic-replug', '--migrations', '1', '--out', out], { timeoutMs: 600_000 });
  t.equal(run.code, 0, `flinch lab exits 0; stderr: ${run.stderr.slice(-800)}`);
  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  t.match(results.guest.kernel, /^linux-image-6\.12\./);
  const serial = readFileSync(path.join(out, 'logs', 'guest-0.serial.log'), 'utf8');
  t.notMatch(serial, /Kernel panic|double fault/, 'it booted cleanly');
  checkMigrations(t, 'linux 6.12', results);
});
