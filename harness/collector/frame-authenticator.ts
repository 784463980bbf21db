import { ProtocolError, parseJsonObject, validateAgentMessage, type AgentMessage, type HelloMessage } from '../../contract/messages.js';
import { splitSignedFrame, verifyFrame } from '../../contract/frame-signing.js';

/** Who may speak as which agent: the agent's signing key, or null if the id is not known. */
export interface AgentKeyring {
  keyFor(agentId: string): string | null;
}

/** What one connection has proven so far: the challenge it was sent, and once its hello is accepted, whose key signs. */
export interface ConnectionCredentials {
  nonce: string;
  /** null before the hello, or on a collector that does not authenticate. */
  key: string | null;
  helloAccepted: boolean;
}

/**
 * Checks one text frame: its signature against the connection's challenge (when the collector has a keyring), then
 * its schema. The first frame must be a hello signed with the key of the agent it names; after it, every frame is
 * signed with that key, and a second hello is refused. Learns the key into `credentials` on the hello.
 * Throws ProtocolError, with the reason the connection is closed for.
 */
export function authenticateFrame(keyring: AgentKeyring | null, credentials: ConnectionCredentials, frame: string): AgentMessage {
  let json = frame;
  let mac: string | null = null;
  if (keyring) ({ mac, json } = splitSignedFrame(frame));
  const raw = parseJsonObject(json);
  if (!credentials.helloAccepted) {
    if (raw.type !== 'hello') throw new ProtocolError(`${raw.type.slice(0, 32)} before hello`, 'no-hello');
    let key: string | null = null;
    if (keyring) {
      const agentId = typeof raw.agentId === 'string' ? raw.agentId.slice(0, 128) : '';
      key = keyring.keyFor(agentId);
      if (key === null) throw new ProtocolError(`no key for agent ${JSON.stringify(agentId).slice(0, 60)}`, 'unknown-agent');
      if (!verifyFrame(key, credentials.nonce, json, mac!)) throw new ProtocolError(`bad signature on the hello of ${agentId}`, 'bad-signature');
    }
    const hello = validateAgentMessage(raw) as HelloMessage;
    if (hello.nonce !== credentials.nonce) throw new ProtocolError('hello answers another connection\'s challenge', 'bad-signature');
    credentials.key = key;
    credentials.helloAccepted = true;
    return hello;
  }
  if (credentials.key !== null && !verifyFrame(credentials.key, credentials.nonce, json, mac!)) {
    throw new ProtocolError(`bad signature on a ${raw.type.slice(0, 32)} frame`, 'bad-signature');
  }
  const message = validateAgentMessage(raw);
  if (message.type === 'hello') throw new ProtocolError('a second hello on one connection', 'protocol');
  return message;
}
