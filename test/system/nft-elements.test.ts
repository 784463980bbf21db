import t from 'tap';
import { elementsBlock } from '../../system/nft.js';

t.test("a set's elements as nft lists them, to be added back as they are", async (t) => {
  const listing = `table inet f2b-table {
\tset addr-set-sshd {
\t\ttype ipv4_addr
\t\tflags timeout
\t\telements = { 203.0.113.7 timeout 10m expires 9m58s120ms,
\t\t\t     203.0.113.9 timeout 10m expires 6m59s990ms }
\t}
}
`;
  t.equal(elementsBlock(listing), '203.0.113.7 timeout 10m expires 9m58s120ms,\n\t\t\t     203.0.113.9 timeout 10m expires 6m59s990ms');
  t.equal(elementsBlock('table inet t {\n\tset s {\n\t\ttype ipv4_addr\n\t}\n}\n'), '', 'an empty set has no block');
  t.equal(elementsBlock('set s { elements = { "eth}0" . 10.0.0.1 } }'), '"eth}0" . 10.0.0.1', 'a brace inside a quoted name does not end the block');
  t.throws(() => elementsBlock('set s { elements = { 10.0.0.1, '), /unterminated/);
});
