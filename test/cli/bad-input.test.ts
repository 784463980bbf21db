// Bad input to either executable ends in one clear line on stderr and a non-zero exit, never a stack trace.
import t, { type Test } from 'tap';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { EXIT } from '../../contract/command-line.js';
import { projectRoot } from '../../harness/project-paths.js';
import { FLINCH, FLINCH_AGENT, runCli, type CliResult } from '../helpers/run-cli.js';

/** One line, no stack, and the exit status README's table gives for it. */
function oneLine(t: Test, result: CliResult, pattern: RegExp, code: number): void {
  const lines = result.stderr.trimEnd().split('\n');
  t.equal(lines.length, 1, `exactly one line on stderr: ${JSON.stringify(result.stderr)}`);
  t.match(lines[0], pattern);
  t.notMatch(result.stderr, /^\s+at /m, 'no stack trace');
  t.equal(result.code, code, `exit ${code}`);
}

const out = () => mkdtempSync(path.join(os.tmpdir(), 'flinch-bad-input-'));

t.test('flinch lab without root', async (t) => {
  // setpriv drops to nobody for this one process; the check is on the real uid, as the kernel will be.
  const result = await runCli([FLINCH, 'lab', '--out', out()], { prefix: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] });
  oneLine(t, result, /^flinch: flinch lab needs root: it creates a network namespace and tap devices/, EXIT.needsRoot);
});

t.test('flinch lab with a QEMU binary that does not exist', async (t) => {
  const result = await runCli([FLINCH, 'lab', '--qemu', '/nonexistent/qemu-system-x86_64', '--out', out()]);
  oneLine(t, result, /^flinch: \/nonexistent\/qemu-system-x86_64: not found\. Install QEMU \(apt-get install qemu-system-x86\)/, EXIT.missingTool);
});

t.test('flinch lab whose QEMU answers QMP with garbage', async (t) => {
  const fake = path.join(projectRoot(), 'test', 'fixtures', 'qemu-with-broken-qmp.mjs');
  const result = await runCli([FLINCH, 'lab', '--qemu', fake, '--migrations', '1', '--out', out()], { timeoutMs: 600_000 });
  const errors = result.stderr.split('\n').filter((l) => l && !/^flinch: (downloading|building|booting)/.test(l));
  t.equal(errors.length, 1, `one error line: ${JSON.stringify(errors)}`);
  t.match(errors[0], /^flinch: QMP: malformed reply \(not JSON\): \{"return": \{\}, "id": <<this is not json>>/);
  t.notMatch(result.stderr, /^\s+at /m);
  t.equal(result.code, EXIT.failed);
});

t.test('flinch lab with too little guest memory', async (t) => {
  oneLine(t, await runCli([FLINCH, 'lab', '--memory', '256', '--out', out()]), /^flinch: --memory 256 is too small/, EXIT.usage);
});

t.test('flinch-agent run with a collector URL that is not one', async (t) => {
  oneLine(t, await runCli([FLINCH_AGENT, 'run', '--collector', 'not a url']), /argument 'not a url' is invalid\. expected a URL/, EXIT.usage);
  oneLine(t, await runCli([FLINCH_AGENT, 'run', '--collector', 'http://x:1']), /must start with ws:\/\/ or wss:\/\//, EXIT.usage);
});

t.test('flinch-agent watch with an unknown probe', async (t) => {
  const result = await runCli([FLINCH_AGENT, 'watch', '--probes', 'link,telepathy']);
  oneLine(t, result, /argument 'link,telepathy' is invalid\. unknown probe "telepathy" \(known: link, addressing, nftables, iptables, clock, kmsg, xen\)/, EXIT.usage);
});

t.test("commander's own usage errors: one line with the program's name, exit 2, as flinch's own", async (t) => {
  for (const [argv, pattern] of [
    [[FLINCH, 'lab', '--no-such-flag'], /^flinch: error: unknown option '--no-such-flag'/],
    [[FLINCH, 'nosuch'], /^flinch: error: unknown command 'nosuch'/],
    [[FLINCH_AGENT, 'run', '--settle'], /^flinch-agent: error: option '--settle <ms>' argument missing/],
    [[FLINCH_AGENT, 'watch', '--probes', 'link\u001b[31m'], /^flinch-agent: error: .*link\\x1b\[31m/],
  ] as Array<[string[], RegExp]>) {
    const result = await runCli(argv);
    oneLine(t, result, pattern, EXIT.usage);
  }
  const version = await runCli([FLINCH_AGENT, '--version']);
  t.equal(version.code, 0, '--version is no error');
});
