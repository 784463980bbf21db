import t from 'tap';
import { appendFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { Spool } from '../../../agent/transport/spool.js';
import { sampleReport, tempDir } from '../../helpers/collector-fixtures.js';

const open = (dir: string, maxBytes = 1024 * 1024, lines: string[] = []) => new Spool({ dir, maxBytes, segmentBytes: 4096, log: (l) => lines.push(l) });

t.test('numbers entries from 1, keeps them until acknowledged, deletes acknowledged segments', async (t) => {
  const dir = tempDir('flinch-spool-');
  const spool = open(dir);
  for (let n = 1; n <= 100; n += 1) t.equal(spool.append({ type: 'report', report: sampleReport('a', n) }).seq, n);
  const segmentsBefore = readdirSync(dir).filter((f) => f.startsWith('seg-')).length;
  t.ok(segmentsBefore > 3, `${segmentsBefore} segments`);
  spool.acknowledge(60);
  t.same(spool.unacked.map((m) => m.seq), Array.from({ length: 40 }, (_, i) => 61 + i));
  t.ok(readdirSync(dir).filter((f) => f.startsWith('seg-')).length < segmentsBefore, 'fully acknowledged segments are gone');
  spool.acknowledge(10_000);
  t.equal(spool.acked, 100, 'an ack beyond what was written is clamped');
  t.equal(spool.unacked.length, 0);
});

t.test('after a crash (no clean close), the unacknowledged entries come back in order and numbering continues', async (t) => {
  const dir = tempDir('flinch-spool-');
  const first = open(dir);
  for (let n = 1; n <= 30; n += 1) first.append({ type: 'report', report: sampleReport('a', n) });
  first.acknowledge(12);
  const second = open(dir);
  t.same(second.unacked.map((m) => m.seq), Array.from({ length: 18 }, (_, i) => 13 + i));
  t.equal(second.append({ type: 'report', report: sampleReport('a', 31) }).seq, 31);
});

t.test('a line torn by a crash mid-write is skipped, and never reused', async (t) => {
  const dir = tempDir('flinch-spool-');
  const first = open(dir);
  for (let n = 1; n <= 3; n += 1) first.append({ type: 'report', report: sampleReport('a', n) });
  const segment = readdirSync(dir).filter((f) => f.startsWith('seg-')).sort().pop()!;
  appendFileSync(path.join(dir, segment), '{"type":"report","seq":4,"rep');
  const second = open(dir);
  t.same(second.unacked.map((m) => m.seq), [1, 2, 3]);
  t.equal(second.append({ type: 'report', report: sampleReport('a', 4) }).seq, 4);
});

t.test('when full, the oldest entries are dropped, counted, logged, and the count survives a restart', async (t) => {
  const dir = tempDir('flinch-spool-');
  const lines: string[] = [];
  const spool = open(dir, 16 * 1024, lines);
  for (let n = 1; n <= 200; n += 1) spool.append({ type: 'report', report: sampleReport('a', n) });
  t.ok(spool.bytes <= 16 * 1024 + 4096, `on disk ${spool.bytes} bytes, near the bound`);
  t.ok(spool.dropped > 0, `${spool.dropped} dropped`);
  t.equal(spool.dropped + spool.unacked.length, 200, 'every entry is either kept or counted');
  t.equal(spool.unacked[spool.unacked.length - 1]!.seq, 200, 'the newest are kept');
  t.match(lines[0], /spool full \(16384 bytes\): dropped \d+ unsent entries \(seq 1\.\.\d+\)/);
  t.equal(open(dir).dropped, spool.dropped);
});
