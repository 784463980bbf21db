import type { Test } from 'tap';
import { addNetns, deleteNetns, ip } from '../../system/ip.js';

let counter = 0;

/** A private network namespace for one test, removed in teardown. Only namespaces this test made are touched. */
export async function testNetns(t: Test): Promise<string> {
  const name = `flinch-test-${process.pid}-${++counter}`;
  await addNetns(name);
  t.teardown(() => deleteNetns(name));
  return name;
}

export async function ipIn(netns: string, ...args: string[]): Promise<string> {
  return ip(args, { netns });
}
