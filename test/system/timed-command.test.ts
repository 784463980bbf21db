// runTimed with real processes (sh): its output and wall time, a failure worded from the tool's last line, the time limit.
import t from 'tap';
import { runTimed } from '../../system/timed-command.js';
import { CommandError } from '../../system/run-command.js';

const describe = ({ code, signal, lastLine }: { code: number | null; signal: NodeJS.Signals | null; lastLine: string | null }) =>
  `tool: ${signal ? `killed (${signal})` : `exit ${code}`}: ${lastLine ?? 'no output'}`;

t.test('output and the wall time of a command that succeeds', async (t) => {
  const result = await runTimed('sh', ['-c', 'echo out; echo err >&2; sleep 0.2'], 10_000, describe);
  t.same([result.stdout, result.stderr], ['out\n', 'err\n']);
  t.ok(result.ms >= 150, `timed: ${result.ms} ms`);
});

t.test("a failure is a CommandError worded from the tool's last line (stderr first)", async (t) => {
  const error = await runTimed('sh', ['-c', 'echo progress; echo "first problem" >&2; echo "the reason" >&2; exit 3'], 10_000, describe).catch((e: unknown) => e);
  t.type(error, CommandError);
  t.match(error, { message: 'tool: exit 3: the reason', exitCode: 3, command: 'sh' });
  const quiet = await runTimed('sh', ['-c', 'exit 1'], 10_000, describe).catch((e: Error) => e.message);
  t.equal(quiet, 'tool: exit 1: no output');
});

t.test('past its time limit the command is killed, and says so', async (t) => {
  const error = await runTimed('sh', ['-c', 'echo started; exec sleep 30'], 300, describe).catch((e: Error) => e.message);
  t.equal(error, 'tool: killed (SIGKILL): started');
});

t.test('a missing executable is a CommandError naming it', async (t) => {
  const error = await runTimed('/nonexistent/flinch-tool', [], 1000, describe).catch((e: unknown) => e);
  t.type(error, CommandError);
  t.match((error as Error).message, /^\/nonexistent\/flinch-tool: spawn .*ENOENT/);
});
