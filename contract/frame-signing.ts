import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { ProtocolError } from './messages.js';

/**
 * Frames are `<64 hex HMAC-SHA256> <json>`, the MAC taken with the agent's key over the connection's challenge
 * nonce, a newline, and the JSON text exactly as sent. Binding the nonce in means a frame captured on one connection
 * is worthless on another; keying per agent means one guest's key cannot sign for another guest.
 *
 * Keys: a collector holds either a fleet secret, from which every agent's key is derived (agentKeyFor), so that
 * provisioning a guest means giving it only its own key; or a file of explicit per-agent keys.
 */
const MAC_HEX_LENGTH = 64;
const KEY_DERIVATION_LABEL = 'flinch-agent-key/v1:';

/** The key an agent signs with, derived from the fleet secret: HMAC-SHA256(secret, label + agentId), hex. */
export function agentKeyFor(fleetSecret: string, agentId: string): string {
  return createHmac('sha256', fleetSecret).update(KEY_DERIVATION_LABEL + agentId).digest('hex');
}

export function signFrame(key: string, nonce: string, json: string): string {
  return `${macOf(key, nonce, json)} ${json}`;
}

/**
 * The collector signs what it sends with the agent's key too, over the nonce marked as the collector's, so that no
 * frame can be reflected from one direction into the other. The challenge alone goes unsigned: it carries only the
 * nonce, and a forged one gets nothing but a hello that no collector will accept.
 */
const COLLECTOR_DIRECTION = '/collector';

export function signCollectorFrame(key: string, nonce: string, json: string): string {
  return signFrame(key, nonce + COLLECTOR_DIRECTION, json);
}

export function verifyCollectorFrame(key: string, nonce: string, json: string, mac: string): boolean {
  return verifyFrame(key, nonce + COLLECTOR_DIRECTION, json, mac);
}

/** Splits a frame into MAC and JSON; the JSON is not parsed yet. */
export function splitSignedFrame(frame: string): { mac: string; json: string } {
  if (frame.length < MAC_HEX_LENGTH + 2 || frame[MAC_HEX_LENGTH] !== ' ' || !/^[0-9a-f]{64}$/.test(frame.slice(0, MAC_HEX_LENGTH))) {
    throw new ProtocolError('frame is not signed (expected "<hmac> <json>")', 'unsigned');
  }
  return { mac: frame.slice(0, MAC_HEX_LENGTH), json: frame.slice(MAC_HEX_LENGTH + 1) };
}

export function verifyFrame(key: string, nonce: string, json: string, mac: string): boolean {
  const expected = Buffer.from(macOf(key, nonce, json), 'hex');
  const given = Buffer.from(mac, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function macOf(key: string, nonce: string, json: string): string {
  return createHmac('sha256', key).update(nonce).update('\n').update(json).digest('hex');
}

/**
 * Reads a secret or key file: one line, at least 32 characters, and not readable by group or others, since anyone who
 * can read it can speak for the agent (or, for a fleet secret, for every agent).
 */
export function readSecretFile(file: string, what: string): string {
  let text: string;
  try {
    const mode = statSync(file).mode;
    if (mode & 0o077) throw new Error(`${file}: ${what} must not be readable by group or others (chmod 600 ${file})`);
    text = readFileSync(file, 'utf8').trim();
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new Error(`${file}: no such ${what} file`);
    throw error;
  }
  if (text.length < 32 || text.length > 1024 || /\s/.test(text)) throw new Error(`${file}: a ${what} is one line of 32 to 1024 non-space characters`);
  return text;
}

/** An explicit keys file: one `agent-id key` pair a line; # comments. */
export function readAgentKeysFile(file: string): Map<string, string> {
  const keys = new Map<string, string>();
  const mode = statSync(file).mode;
  if (mode & 0o077) throw new Error(`${file}: agent keys must not be readable by group or others (chmod 600 ${file})`);
  readFileSync(file, 'utf8').split('\n').forEach((raw, index) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const [agentId, key, extra] = line.split(/\s+/);
    if (!agentId || !key || extra !== undefined || key.length < 32) throw new Error(`${file}:${index + 1}: expected "agent-id key" with a key of at least 32 characters`);
    keys.set(agentId, key);
  });
  return keys;
}
