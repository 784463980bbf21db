// holdingSignals, on its own: a signal this test process sends itself (by its own PID) while work runs is held, not
// fatal, and turns into StoppedBySignal at the next checkpoint, through the work's own `finally`.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { holdingSignals } from '../../../harness/lab/lab-network.js';
import { reportFatal, StoppedBySignal } from '../../../contract/command-line.js';

t.test('a SIGTERM during set-up is held, the finally runs, and the checkpoint throws StoppedBySignal (exit 143)', async (t) => {
  const steps: string[] = [];
  const error = await holdingSignals(async (stopIfSignalled) => {
    try {
      process.kill(process.pid, 'SIGTERM');
      await sleep(50); // the signal arrives as an event: the process is still here after it
      steps.push('set-up finished');
      stopIfSignalled();
      steps.push('work ran');
    } finally {
      steps.push('undone');
    }
  }).catch((e: unknown) => e);
  t.type(error, StoppedBySignal);
  t.same(steps, ['set-up finished', 'undone'], 'the step under way finished, the work did not start, the finally ran');
  t.equal((error as StoppedBySignal).exitCode, 143);
  t.notOk(process.listeners('SIGTERM').some((listener) => listener.name === 'note'), 'its handler is gone after');
});

t.test('SIGINT: exit 130; and no signal: the work runs and its value comes back', async (t) => {
  const interrupted = await holdingSignals(async (stopIfSignalled) => {
    process.kill(process.pid, 'SIGINT');
    await sleep(50);
    stopIfSignalled();
  }).catch((e: unknown) => e);
  t.equal((interrupted as StoppedBySignal).exitCode, 130);
  t.equal(await holdingSignals(async (stopIfSignalled) => (stopIfSignalled(), 42)), 42);
});

t.test('reportFatal gives StoppedBySignal its own exit status and one line', async (t) => {
  const written: string[] = [];
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string) => (written.push(chunk), true)) as typeof process.stderr.write;
  try {
    t.equal(reportFatal('flinch', new StoppedBySignal('SIGTERM', 'stopped'), false), 143);
  } finally {
    process.stderr.write = write;
  }
  t.same(written, ['flinch: SIGTERM: stopped\n']);
});
