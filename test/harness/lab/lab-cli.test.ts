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

t.test('--agentless: only for the QEMU guest, and only with the ICMP probes on', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['lab', '--hypervisor', 'xen', '--agentless'], /^flinch: --agentless is for the QEMU lab \(--hypervisor qemu\)/m],
    [['campaign', '--driver', 'libvirt', '--agentless'], /^flinch: --agentless is for the qmp driver's guest or your own domain \(--domain\), not libvirt's lab guest$/m],
    [['campaign', '--driver', 'sim', '--outside-view'], /^flinch: --outside-view is for the qmp driver's guest, not sim's \(your own domain: --guest-address\)$/m],
    [['lab', '--agentless', '--blackout-interval', '0'], /^flinch: --agentless measures with ICMP probes: --blackout-interval 0 would leave nothing to measure$/m],
  ];
  for (const [args, message] of cases) {
    const run = await runCli([FLINCH, ...args, '--out', t.testdirName], { timeoutMs: 30_000 });
    t.equal(run.code, 2, args.join(' '));
    t.match(run.stderr, message, args.join(' '));
  }
});

t.test('--driver xl is for your own domain on your own Xen host; ssh settings are the campaign\'s', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['campaign', '--driver', 'xl', '--xl-host', 'local'], /^flinch: --driver xl runs on your own Xen host: give --domain NAME and --xl-host \(the lab: flinch lab --hypervisor xen\)$/m],
    // The nested lab reaches its dom0 through its console, never by ssh: the option is not the lab's.
    [['lab', '--hypervisor', 'xen', '--ssh-config', '/etc/ssh/ssh_config'], /^flinch: error: unknown option '--ssh-config'$/m],
  ];
  for (const [args, message] of cases) {
    const run = await runCli([FLINCH, ...args, '--out', t.testdirName], { timeoutMs: 30_000 });
    t.equal(run.code, 2, args.join(' '));
    t.match(run.stderr, message, args.join(' '));
  }
});

t.test('--xen-dest: a second nested Xen host of a release the lab can build, and only in the Xen lab', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['lab', '--hypervisor', 'xen', '--xen-dest', '4.21'], /^flinch: --xen-dest 4\.21: choose 4\.17 or 4\.20\n$/],
    [['lab', '--hypervisor', 'xen', '--xen-dest', '4.20\u001b[2J'], /^flinch: --xen-dest 4\.20\\x1b\[2J: choose 4\.17 or 4\.20\n$/],
    [['lab', '--xen-dest', '4.20'], /^flinch: --xen-dest is for --hypervisor xen\n$/],
  ];
  for (const [args, message] of cases) {
    const run = await runCli([FLINCH, ...args, '--out', t.testdirName], { timeoutMs: 30_000 });
    t.equal(run.code, 2, args.join(' '));
    t.match(run.stderr, message, JSON.stringify(args));
  }
});
