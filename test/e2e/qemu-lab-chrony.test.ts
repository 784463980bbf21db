// End to end, nothing mocked: the QEMU lab guest runs Debian's chronyd, fed by a second chronyd on the lab
// namespace's side (-x: it serves this machine's clock and never adjusts it). The guest clock is stepped 5 s forward
// just after a migration; chronyd alone would only slew that back (makestep 1 3 lets it step in its first updates
// only), so the safety net must ask it to step (chronyc makestep) and report how long the clock took to come back.
import t from 'tap';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LabResults } from '../../harness/report/lab-results.js';
import type { Report } from '../../contract/report-schema.js';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { busyMachine } from '../helpers/exclusive.js';

await busyMachine(t);

t.test('a guest clock stepped after a migration, under chronyd: the safety net asks chronyd to step, and the clock converges', async (t) => {
  const out = mkdtempSync(path.join(os.tmpdir(), 'flinch-e2e-chrony-'));
  const run = await runCli([FLINCH, 'lab', '--faults', 'guest-clock-step', '--migrations', '1', '--guest-time-daemon', 'chronyd', '--out', out], { timeoutMs: 600_000 });
  t.equal(run.code, 0, `flinch lab exits 0; stderr: ${run.stderr.slice(-600)}`);
  t.match(run.stderr, /serving NTP to the guest's chronyd/);
  const serial = readFileSync(path.join(out, 'logs', 'guest-0.serial.log'), 'utf8');
  t.match(serial, /chronyd: time from 10\.\d+\.\d+\.\d+/, 'chronyd runs in the guest');

  const results = JSON.parse(readFileSync(path.join(out, 'results.json'), 'utf8')) as LabResults;
  const step = results.migrations.find((m) => m.faults.includes('guest-clock-step'))!;
  t.equal(step.verdict, 'healed', `healed (${step.reasons.slice(0, 3).join('; ')})`);
  const reports = readFileSync(path.join(out, 'reports.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Report);
  const actions = reports.find((r) => r.episode.id === step.episode?.id)!.remediation.actions;
  const clock = actions.find((a) => a.what === 'clock');
  t.match(clock, { result: 'ok', command: 'chronyc makestep', why: /asked chronyd/ }, `chronyd was asked, not date: ${JSON.stringify(clock)}`);
  // Convergence comes after the episode's report; the lab keeps the guest up for it, and measures it.
  t.ok(step.clockConvergedMs! > 0 && step.clockConvergedMs! < 120_000, `the lab saw the clock converge ${step.clockConvergedMs} ms after the step`);
  // The agent's own record of it is in its journal (the console of the QEMU it migrated to).
  const consoles = ['guest-0', 'guest-1'].map((g) => readFileSync(path.join(out, 'logs', `${g}.serial.log`), 'utf8')).join('\n');
  const converged = /safety net: (\w+): clock-converged CLOCK_REALTIME[^\n]*/.exec(consoles);
  t.equal(converged?.[1], 'ok', `the offset to the host came back by the step: ${converged?.[0]}`);
  const afterMs = Number(/moved back by the step (\d+) ms after/.exec(converged?.[0] ?? '')?.[1]);
  t.ok(afterMs > 0 && afterMs < 120_000, `converged ${afterMs} ms after chronyd was asked`);
});
