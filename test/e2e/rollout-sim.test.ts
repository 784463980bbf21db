// `flinch rollout --driver sim` as an operator runs it: 50 SIMULATED guests (network namespaces on one bridge, each
// running the real single-executable agent, frozen for a second to "migrate"), a real `flinch collect` in the
// simulated host's namespace, verdicts read from its store. Two guests in the fifth wave have their firewall flushed
// after their migration: the rollout must stop after that wave, say who and why, and leave the other 25 untouched;
// run again with a higher limit it finishes the rest.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { FLINCH, runCli } from '../helpers/run-cli.js';
import { tempDir } from '../helpers/collector-fixtures.js';
import { quietMachine } from '../helpers/exclusive.js';

await quietMachine(t);

const GUESTS = 50;
// A guest with an episode is judged as soon as its report is in; only a transparent one waits the whole timeout. 10 s
// was too short for 50 agents' episodes while another test file kept both cores busy (flushed guests came out
// transparent, their reports still on the way).
const common = (out: string, haltAt: string) => [
  FLINCH, 'rollout', '--driver', 'sim', '--guests', String(GUESTS), '--parallel', '5', '--halt-at', haltAt, '--window', '10', '--verdict-timeout', '20', '--verdict-grace', '2',
  '--sim-fault', 'sim-22:guest-firewall-flush', '--sim-fault', 'sim-23:guest-firewall-flush', '--out', out,
];

interface RolloutJson {
  migrated: Array<{ guest: string; verdict: string; evidence: string[] }>;
  halted: { share: number; window: number; worst: Array<{ guest: string; verdict: string; evidence: string[] }> } | null;
  untouched: string[];
}

t.test('50 simulated guests in waves of 5: halted by the two disrupted ones, the rest untouched; resumed', async (t) => {
  const out = tempDir('flinch-rollout-e2e-');
  const first = await runCli(common(out, '0.1'), { timeoutMs: 600_000 });
  if (first.code !== 5) t.comment(first.stderr.slice(-3000));
  t.equal(first.code, 5, 'halted: exit 5, worse than expected');
  const result = JSON.parse(readFileSync(path.join(out, 'rollout.json'), 'utf8')) as RolloutJson;
  t.equal(result.migrated.length, 25, 'five waves of five, then it stopped');
  t.same(result.untouched, Array.from({ length: 25 }, (_, i) => `sim-${26 + i}`), 'the other 25 untouched, in order');
  const disrupted = result.migrated.filter((o) => o.verdict === 'disrupted').map((o) => o.guest).sort();
  t.same(disrupted, ['sim-22', 'sim-23'], 'disrupted: exactly the two whose firewall was flushed');
  t.ok(result.migrated.filter((o) => !disrupted.includes(o.guest)).every((o) => ['transparent', 'noticed'].includes(o.verdict)), 'the others transparent or noticed, none silent');
  t.same(result.halted!.worst.map((o) => o.guest).sort(), ['sim-22', 'sim-23']);
  t.ok(result.halted!.worst.every((o) => o.evidence.some((e) => /^firewall-changed: nftables: \d+ removed/.test(e))), "with the agents' evidence: the flushed rules");
  t.match(first.stdout, /HALTED: 20\.00 % of the last 10 guest\(s\) disrupted, silent or failed; 25 guest\(s\) left untouched/);
  t.match(first.stdout, /sim-2[23] \(agent sim-2[23]\): disrupted: .*firewall-changed/);
  t.equal(execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').filter((n) => n.includes('flinch-sim-r')).length, 0, 'the simulated fleet is gone');

  // (Resumed unchanged, it halts again before moving anyone: test/harness/rollout/rollout-runner.test.ts.)
  const onward = await runCli(common(out, '0.5'), { timeoutMs: 600_000 });
  if (onward.code !== 0) t.comment(onward.stderr.slice(-3000));
  t.equal(onward.code, 0, 'with a higher limit it finishes');
  t.match(onward.stderr, /resuming: 25 guest\(s\) already in/);
  t.notMatch(onward.stderr, /wave of 5: sim-(?:[1-9]|1\d|2[0-5]),/, 'the first 25 not moved again');
  const finished = JSON.parse(readFileSync(path.join(out, 'rollout.json'), 'utf8')) as RolloutJson;
  t.equal(finished.migrated.length, GUESTS, 'every guest migrated once');
  t.equal(new Set(finished.migrated.map((o) => o.guest)).size, GUESTS, 'none twice');
  t.same(finished.untouched, []);
});

t.test('bad input: one line, exit 2', async (t) => {
  for (const [args, message] of [
    [['--driver', 'hyperv'], /--driver hyperv: choose libvirt, xl or sim/],
    [['--driver', 'libvirt', '--destination', 'qemu+ssh://b/system'], /--store: the collectors' store/],
    [['--driver', 'sim', '--sim-fault', 'sim-1:melt'], /--sim-fault sim-1:melt: expected GUEST:FAULT/],
    [['--halt-at', '2'], /expected a number above 0 and at most 1/],
  ] as const) {
    const run = await runCli([FLINCH, 'rollout', '--out', tempDir('flinch-rollout-bad-'), ...args]);
    t.equal(run.code, 2, `${args.join(' ')}: ${run.stderr}`);
    t.match(run.stderr, message);
    t.equal(run.stderr.trim().split('\n').length, 1, 'one line');
  }
});
