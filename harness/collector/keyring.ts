import { agentKeyFor, readAgentKeysFile, readSecretFile } from '../../contract/frame-signing.js';
import { EXIT, UserError } from '../../contract/command-line.js';
import type { AgentKeyring } from './frame-authenticator.js';

/** Every agent's key is derived from one fleet secret that only collectors hold (see frame-signing.ts). */
export class FleetKeyring implements AgentKeyring {
  private readonly cache = new Map<string, string>();

  constructor(private readonly secret: string) {}

  static fromFile(file: string): FleetKeyring {
    return new FleetKeyring(readSecretFile(file, 'fleet secret'));
  }

  keyFor(agentId: string): string | null {
    if (agentId.length === 0 || agentId.length > 128) return null;
    let key = this.cache.get(agentId);
    if (key === undefined) {
      key = agentKeyFor(this.secret, agentId);
      if (this.cache.size > 100_000) this.cache.clear();
      this.cache.set(agentId, key);
    }
    return key;
  }
}

/** Explicit per-agent keys: only the agents listed may connect. */
export class ListedKeyring implements AgentKeyring {
  constructor(private readonly keys: Map<string, string>) {}

  static fromFile(file: string): ListedKeyring {
    return new ListedKeyring(readAgentKeysFile(file));
  }

  keyFor(agentId: string): string | null {
    return this.keys.get(agentId) ?? null;
  }
}

/** The fleet secret a command's --fleet-secret names; a usage error (exit 2) saying what is wrong with the file. */
export function fleetSecretArgument(file: string): string {
  try {
    return readSecretFile(file, 'fleet secret');
  } catch (error) {
    throw new UserError(`--fleet-secret: ${(error as Error).message}`, EXIT.usage);
  }
}
