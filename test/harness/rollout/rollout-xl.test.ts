// `flinch rollout --driver xl` and the guest list. The xl commands are checked against test/fixtures/fake-xl.sh, a
// stand-in declared as such: a Xen host exists on this machine only as the nested lab (minutes to boot), which is where
// test/xen-lab/xl-ssh.test.ts rolls out a real domain with the real xl (`npm run test:xen`). Everything else is real:
// the built CLI, a SQLite store as the collectors keep it, ssh replaced only where a host would be needed.
import t, { type Test } from 'tap';
import fc from 'fast-check';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { EXIT, UserError } from '../../../contract/command-line.js';
import { ReportStore } from '../../../harness/collector/report-store.js';
import { projectRoot } from '../../../harness/project-paths.js';
import { namedGuests, parseGuestEntry, readGuestList, runningXenDomains } from '../../../harness/rollout/rollout-guests.js';
import { FLINCH, runCli } from '../../helpers/run-cli.js';
import { tempDir } from '../../helpers/collector-fixtures.js';

const usage = (t: Test, fn: () => unknown, message: RegExp) => {
  try {
    fn();
    t.fail(`accepted: ${message.source}`);
  } catch (error) {
    t.ok(error instanceof UserError && error.exitCode === EXIT.usage, `${message.source}: exit 2 (${(error as Error).message})`);
    t.match((error as Error).message, message);
    t.notMatch((error as Error).message, /\n/, 'one line');
  }
};

t.test('a guest list: DOMAIN or DOMAIN=AGENT-ID a line, comments and blank lines skipped, each error naming its line', async (t) => {
  const dir = tempDir('flinch-guest-list-');
  const file = path.join(dir, 'guests');
  writeFileSync(file, '# the web tier first\nweb-1\nweb-2=agent.web-2\n\n  db-1 = x\ndb-2=db-2@fleet # the primary last\n');
  usage(t, () => readGuestList(file), /--guest-list .*guests, line 5: db-1 = x: expected DOMAIN or DOMAIN=AGENT-ID/);
  writeFileSync(file, '# the web tier first\nweb-1\nweb-2=agent.web-2\n\ndb-2=db-2@fleet # the primary last\n');
  t.same(readGuestList(file), [
    { domain: 'web-1', agentId: 'web-1' }, { domain: 'web-2', agentId: 'agent.web-2' }, { domain: 'db-2', agentId: 'db-2@fleet' },
  ]);
  writeFileSync(file, 'web-1\nweb-1=other\n');
  usage(t, () => namedGuests([], file), /web-1 is named twice: each guest is migrated once/);
  writeFileSync(file, 'web-1=a\nweb-2=a\n');
  usage(t, () => namedGuests([], file), /a is named twice as an agent id/);
  writeFileSync(file, '# nobody\n\n');
  usage(t, () => readGuestList(file), /no guest in it/);
  usage(t, () => readGuestList(path.join(dir, 'absent')), /--guest-list .*absent: no such file/);
  usage(t, () => namedGuests(['web-1'], file), /by --domain or by --guest-list, not both/);
  t.equal(namedGuests([], undefined), null, 'neither: every running domain');
  usage(t, () => parseGuestEntry('dom\u0007ain', '--domain'), /--domain: dom\\x07ain: expected DOMAIN/);
  usage(t, () => parseGuestEntry('Ünïcode-vm', '--domain'), /the agent id may hold only .*; give DOMAIN=AGENT-ID/);
  t.same(parseGuestEntry('Ünïcode-vm=vm-7', '--domain'), { domain: 'Ünïcode-vm', agentId: 'vm-7' }, 'any name a hypervisor takes, with an agent id of its own');
});

t.test('any line of a guest list parses to a guest or fails in one line with exit 2 (fast-check)', async (t) => {
  const dir = tempDir('flinch-guest-list-fuzz-');
  let n = 0;
  fc.assert(fc.property(fc.array(fc.string({ unit: 'binary', maxLength: 80 }), { maxLength: 20 }), (lines) => {
    const file = path.join(dir, `list-${(n += 1)}`);
    writeFileSync(file, lines.join('\n'));
    try {
      const guests = readGuestList(file);
      for (const g of guests) {
        if (/[\s=\p{Cc}]/u.test(g.domain) || !/^[A-Za-z0-9._:@-]{1,128}$/.test(g.agentId)) return false;
      }
      return guests.length > 0;
    } catch (error) {
      return error instanceof UserError && error.exitCode === EXIT.usage && !/[\n\r]/.test(error.message);
    }
  }), { numRuns: 300 });
  // What the list gives back is what was written, however it was laid out.
  fc.assert(fc.property(
    fc.uniqueArray(fc.stringMatching(/^[A-Za-z0-9._:@-]{1,30}$/), { minLength: 1, maxLength: 15 }),
    fc.array(fc.constantFrom('', '# a comment', '   '), { maxLength: 5 }),
    (names, noise) => {
      const file = path.join(dir, `list-${(n += 1)}`);
      writeFileSync(file, [...noise, ...names.map((name, i) => (i % 2 ? `  ${name}=${name}.agent  # why` : name)), ...noise].join('\n'));
      const guests = readGuestList(file);
      return JSON.stringify(guests) === JSON.stringify(names.map((name, i) => ({ domain: name, agentId: i % 2 ? `${name}.agent` : name })));
    },
  ), { numRuns: 200 });
  t.pass('300 hostile lists and 200 well-formed ones');
});

t.test("xl list: running and blocked domains, never dom0 or a paused, shut-down, crashed or dying one", async (t) => {
  const listing = [
    'Name                                        ID   Mem VCPUs\tState\tTime(s)',
    'Domain-0                                     0  1024     2     r-----     123.4',
    'web-1                                        7   512     1     -b----       9.1',
    'web-2                                        8   512     1     r-----       9.9',
    'held                                         9   512     1     --p---       0.1',
    'leaving                                     10   512     1     ---s--       0.1',
    'crashed                                     11   512     1     ----c-       0.1',
    'dying                                       12   512     1     -----d       0.1',
  ].join('\n');
  t.same(runningXenDomains(listing), ['web-1', 'web-2']);
  t.same(runningXenDomains(''), []);
});

/** The fake xl and ssh on the PATH the CLI gets, its calls logged; a store where no agent ever reported. */
function xenHostHere(t: Test) {
  const dir = tempDir('flinch-rollout-xl-');
  const bin = path.join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync(path.join(projectRoot(), 'test', 'fixtures', 'fake-xl.sh'), path.join(bin, 'xl'));
  symlinkSync(path.join(projectRoot(), 'test', 'fixtures', 'fake-ssh.sh'), path.join(bin, 'ssh'));
  const log = path.join(dir, 'calls');
  writeFileSync(log, '');
  const store = path.join(dir, 'fleet.sqlite');
  new ReportStore(store).close();
  const env = [`PATH=${bin}:${process.env.PATH}`, `FAKE_XL_LOG=${log}`];
  return {
    dir, store,
    calls: () => readFileSync(log, 'utf8').trim().split('\n').filter(Boolean),
    rollout: (args: string[]) => runCli([FLINCH, 'rollout', '--driver', 'xl', '--store', store, '--verdict-timeout', '1', '--verdict-grace', '0', ...args], { prefix: env, timeoutMs: 60_000 }),
  };
}

t.test('xl: every running domain migrated to the other host by the first host\'s xl; no agent heard: silent, and halted', async (t) => {
  const host = xenHostHere(t);
  const out = path.join(host.dir, 'out');
  const run = await host.rollout(['--xl-host', 'ssh://root@xen-1.example', '--xl-dest', 'ssh://root@xen-2.example', '--out', out]);
  t.equal(run.code, EXIT.worseThanExpected, `a silent guest halts the rollout: exit ${EXIT.worseThanExpected} (${run.stderr.slice(-300)})`);
  t.match(run.stdout, /HALTED: 100\.00 % of the last 1 guest\(s\) disrupted, silent or failed/);
  t.match(run.stdout, /guest \(agent guest\): silent/);
  t.same(host.calls(), [
    'ssh -o BatchMode=yes -o ConnectTimeout=10 root@xen-1.example xl list', 'list',
    'ssh -o BatchMode=yes -o ConnectTimeout=10 root@xen-1.example xl list guest', 'list guest',
    'ssh -o BatchMode=yes -o ConnectTimeout=10 root@xen-1.example xl domid guest', 'domid guest',
    'ssh -o BatchMode=yes -o ConnectTimeout=10 root@xen-1.example xl migrate guest root@xen-2.example', 'migrate guest root@xen-2.example',
    // The domain's new id is read where it is now: on the second host.
    'ssh -o BatchMode=yes -o ConnectTimeout=10 root@xen-2.example xl domid guest', 'domid guest',
  ], 'dom0 and the paused domain are not rolled out; xl migrate runs in the first host\'s dom0');
  const result = JSON.parse(readFileSync(path.join(out, 'rollout.json'), 'utf8')) as { migrated: Array<{ guest: string; verdict: string }> };
  t.same(result.migrated.map((o) => [o.guest, o.verdict]), [['guest', 'silent']]);
});

t.test('xl: --xl-dest the same as --xl-host migrates on that host (xl migrate -s \'\'), from a guest list', async (t) => {
  const host = xenHostHere(t);
  const list = path.join(host.dir, 'guests');
  writeFileSync(list, '# the one domain\nguest=agent-7\n');
  const run = await host.rollout(['--xl-host', 'local', '--xl-dest', 'local', '--guest-list', list, '--halt-at', '1', '--out', path.join(host.dir, 'out')]);
  t.equal(run.code, 0, `a limit of 1 never halts (${run.stderr.slice(-300)})`);
  t.match(run.stdout, /1 guest\(s\) migrated: 1 silent/);
  t.ok(host.calls().includes("migrate -s  guest xl migrate-receive"), host.calls().join('\n'));
  t.notOk(host.calls().some((c) => c.startsWith('ssh')), 'no ssh for a local host');
});

t.test('xl: bad input is one line and exit 2; a host that does not answer, exit 3', async (t) => {
  const host = xenHostHere(t);
  const list = path.join(host.dir, 'guests');
  writeFileSync(list, 'guest\nparked\nnowhere\n');
  for (const [args, message, code] of [
    [['--xl-host', 'local'], /--xl-dest: the Xen host to migrate the domains to/, 2],
    [['--xl-dest', 'xen-2'], /--xl-dest xen-2: give local or ssh:\/\/\[user@\]host\[:port\]/, 2],
    [['--xl-dest', 'local', '--guest-list', list], /not running on localhost \(xl list\): parked, nowhere$/m, 2],
    [['--xl-dest', 'local', '--domain', 'guest', '--guest-list', list], /by --domain or by --guest-list, not both/, 2],
    [['--xl-dest', 'local', '--destination', 'qemu+ssh://b/system'], /--destination is for --driver libvirt/, 2],
    [['--xl-dest', 'local', '--sim-fault', 'sim-1:nic-replug'], /--sim-fault is for --driver sim/, 2],
    [['--xl-host', 'ssh://root@127.0.0.1:1', '--xl-dest', 'local'], /Xen host root@127\.0\.0\.1 does not answer/, 3],
  ] as const) {
    const out = path.join(host.dir, `out-${args.join('-').replace(/\W+/g, '_')}`);
    // The last case needs a real ssh to be refused: the fake one would run xl here.
    const run = code === 3
      ? await runCli([FLINCH, 'rollout', '--driver', 'xl', '--store', host.store, ...args, '--out', out])
      : await host.rollout([...args, '--out', out]);
    t.equal(run.code, code, `${args.join(' ')}: ${run.stderr}`);
    t.match(run.stderr, message);
    t.equal(run.stderr.trim().split('\n').length, 1, 'one line');
  }
  t.same(host.calls().filter((c) => c.startsWith('migrate')), [], 'nobody was migrated');
});

t.test('--xl-host and the guest list are for xl and libvirt only', async (t) => {
  const run = await runCli([FLINCH, 'rollout', '--driver', 'sim', '--xl-host', 'local', '--out', tempDir('flinch-rollout-bad-')]);
  t.equal(run.code, 2);
  t.match(run.stderr, /--xl-host is for --driver xl\n$/);
});
