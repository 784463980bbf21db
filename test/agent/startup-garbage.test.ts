// Unit: the one full collection the agent makes once it has settled frees what start-up left unreachable.
import t from 'tap';
import { collectStartupGarbage } from '../../agent/startup-garbage.js';

t.test('a full collection, reachable without --expose-gc on the command line', (t) => {
  // Old-generation garbage: survives a few scavenges, then dropped, as schema compilation's is.
  let garbage: number[][] | null = Array.from({ length: 200 }, () => Array.from({ length: 20_000 }, (_, i) => i * 1.5));
  for (let i = 0; i < 3; i += 1) Array.from({ length: 100_000 }, () => ({}));
  const before = process.memoryUsage().heapUsed;
  t.ok(garbage.length > 0);
  garbage = null;
  t.equal(collectStartupGarbage(), true, 'gc was reachable and ran');
  const freedMiB = (before - process.memoryUsage().heapUsed) / 2 ** 20;
  t.ok(freedMiB > 20, `freed ${freedMiB.toFixed(1)} MiB of about 30 MiB dropped`);
  t.end();
});
