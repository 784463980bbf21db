import { Type } from '@sinclair/typebox';

/**
 * What the agent in a guest and the harness that enrols it agree on: where the Debian package's unit reads the
 * agent's settings and key, and what a collector address must look like.
 */
export const AGENT_CONFIG_PATH = '/etc/flinch/agent.yaml';
/** The key agent.yaml's token-file names when `flinch enroll` writes it (the package's commented default). */
export const AGENT_TOKEN_PATH = '/etc/flinch/token';

export const CollectorUrlSchema = Type.String({ pattern: '^wss?://[^\\s]+$', maxLength: 2048 });

/** A collector address, normalised by the WHATWG URL parser; throws with what is wrong, in words for a user. */
export function parseCollectorUrl(value: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error('expected a URL such as ws://10.0.3.1:7431');
  }
  if (url.protocol !== 'ws:' && url.protocol !== 'wss:') throw new Error('the collector URL must start with ws:// or wss://');
  if (/\s/.test(value) || value.length > 2048) throw new Error('a collector URL has no spaces and at most 2048 characters');
  return url.toString();
}
