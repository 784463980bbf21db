// `flinch lab` / `flinch campaign` usage errors that stop before anything is booted.
import t from 'tap';
import { FLINCH, runCli } from '../../helpers/run-cli.js';

t.test('--guest-time-daemon: chronyd only, and only for the QEMU guest', async (t) => {
  // A bad choice is found by commander, the others by flinch: the same one-line form and exit 2 either way.
  const cases: Array<[string[], RegExp, number]> = [
    [['lab', '--guest-time-daemon', 'ntpd'], /^flinch: error: option '--guest-time-daemon <name>' argument 'ntpd' is invalid\. Allowed choices are chronyd\.$/m, 2],
    [['lab', '--hypervisor', 'xen', '--guest-time-daemon', 'chronyd'], /^flinch: --guest-time-daemon is for the QEMU lab/m, 2],
    [['campaign', '--driver', 'sim', '--guest-time-daemon', 'chronyd'], /^flinch: --guest-time-daemon is for the qmp driver's guest, not sim's/m, 2],
  ];
  for (const [args, message, code] of cases) {
    const run = await runCli([FLINCH, ...args, '--out', t.testdirName], { timeoutMs: 30_000 });
    t.equal(run.code, code, args.join(' '));
    t.match(run.stderr, message, args.join(' '));
  }
});
