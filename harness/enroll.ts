import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { AGENT_CONFIG_PATH, AGENT_TOKEN_PATH, parseCollectorUrl } from '../contract/agent-files.js';
import { agentIdArgument, EXIT, UserError } from '../contract/command-line.js';
import { agentKeyFor } from '../contract/frame-signing.js';
import { fleetSecretArgument } from './collector/keyring.js';
import { buildSeedImage } from '../system/genisoimage.js';

/** The name the .deb has on the seed image, where the guest's first boot installs it from. */
const SEED_DEB_NAME = 'flinch-agent.deb';
/** cloud-init reads YAML 1.1 (PyYAML), where a bare on, off, yes or no is a boolean: 1.1 output quotes them. */
const YAML_1_1 = { version: '1.1' } as const;

export interface EnrollOptions {
  agentId: string;
  fleetSecretFile: string;
  /** ws:// or wss:// URLs; several shard the fleet as agent.yaml's list does. */
  collectors: string[];
  /** The collectors share one store: the agent moves between them (agent.yaml's collector-failover). */
  collectorFailover?: boolean;
  remediate: 'off' | 'dry-run' | 'on';
}

export interface Enrollment {
  token: string;
  agentYaml: string;
  /** cloud-init's #cloud-config: writes the key and agent.yaml; with a .deb on the seed, installs it and starts the agent. */
  userData(withDeb: boolean): string;
  metaData: string;
}

/** Everything one guest needs to report to the fleet, from the fleet secret; a usage error (exit 2) for bad input. */
export function enrollment(options: EnrollOptions): Enrollment {
  agentIdArgument(options.agentId);
  const secret = fleetSecretArgument(options.fleetSecretFile);
  for (const collector of options.collectors) {
    try {
      parseCollectorUrl(collector);
    } catch (error) {
      throw new UserError(`--collector ${collector}: ${(error as Error).message}`, EXIT.usage);
    }
  }
  if (new Set(options.collectors).size !== options.collectors.length || options.collectors.length > 64) throw new UserError('--collector: at most 64, each once', EXIT.usage);
  if (options.collectorFailover && options.collectors.length < 2) throw new UserError('--collector-failover needs at least two --collector', EXIT.usage);
  const token = agentKeyFor(secret, options.agentId);
  const settings: Record<string, unknown> = {
    'agent-id': options.agentId,
    ...(options.collectors.length > 0 ? { collector: options.collectors.length === 1 ? options.collectors[0] : options.collectors } : {}),
    ...(options.collectorFailover ? { 'collector-failover': true } : {}),
    'token-file': AGENT_TOKEN_PATH,
    remediate: options.remediate,
    'state-dir': '/var/lib/flinch',
  };
  const agentYaml = `# Written by flinch enroll for agent ${options.agentId}; keys as in flinch-agent run --help.\n${stringify(settings, YAML_1_1)}`;
  return {
    token,
    agentYaml,
    userData: (withDeb) => `#cloud-config\n${stringify({
      write_files: [
        { path: AGENT_TOKEN_PATH, owner: 'root:root', permissions: '0600', content: `${token}\n` },
        { path: AGENT_CONFIG_PATH, owner: 'root:root', permissions: '0644', content: agentYaml },
      ],
      ...(withDeb ? {
        runcmd: [
          // The seed is unmounted again by the time runcmd runs: mount it to install the package it carries, keeping
          // the agent.yaml written above (--force-confold) instead of the package's commented default.
          ['sh', '-c', `mkdir -p /run/flinch-seed && mount -o ro /dev/disk/by-label/cidata /run/flinch-seed && dpkg -i --force-confold /run/flinch-seed/${SEED_DEB_NAME}; umount /run/flinch-seed`],
          ['systemctl', 'enable', '--now', 'flinch-agent'],
        ],
      } : {}),
    }, { ...YAML_1_1, lineWidth: 0 })}`,
    metaData: stringify({ 'instance-id': `flinch-${options.agentId}` }, YAML_1_1),
  };
}

/** Writes token (0600), agent.yaml, user-data and meta-data into `dir`; returns their paths. */
export function writeEnrollment(dir: string, enrolled: Enrollment, withDeb: boolean): string[] {
  mkdirSync(dir, { recursive: true });
  const files: Array<[string, string, number]> = [
    ['token', `${enrolled.token}\n`, 0o600], ['agent.yaml', enrolled.agentYaml, 0o644],
    ['user-data', enrolled.userData(withDeb), 0o600], ['meta-data', enrolled.metaData, 0o644],
  ];
  return files.map(([name, text, mode]) => {
    const file = path.join(dir, name);
    writeFileSync(file, text, { mode });
    chmodSync(file, mode);
    return file;
  });
}

/**
 * A cloud-init NoCloud seed (an ISO 9660 volume labelled cidata, as cloud-localds makes) with user-data, meta-data and,
 * when given, the agent's .deb; the user-data holds the agent's key, so the image is made 0600.
 */
export async function writeSeedImage(image: string, enrolled: Enrollment, deb: string | null): Promise<void> {
  const staging = mkdtempSync(path.join(os.tmpdir(), 'flinch-seed-'));
  try {
    writeFileSync(path.join(staging, 'user-data'), enrolled.userData(deb !== null), { mode: 0o600 });
    writeFileSync(path.join(staging, 'meta-data'), enrolled.metaData);
    if (deb) copyFileSync(deb, path.join(staging, SEED_DEB_NAME));
    await buildSeedImage(image, staging);
    chmodSync(image, 0o600);
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}
