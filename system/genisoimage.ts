import { EXIT, UserError } from '../contract/command-line.js';
import { findExecutable, runCommand } from './run-command.js';

/** A seed of a few files and the agent's .deb (25 MB) is written in well under a second; this is for a stuck disk. */
const GENISOIMAGE_TIMEOUT_MS = 120_000;

/**
 * Writes `dir`'s files into an ISO 9660 image labelled "cidata", with Rock Ridge and Joliet names: what cloud-init's
 * NoCloud datasource looks for (cloud-localds makes the same with genisoimage).
 */
export async function buildSeedImage(image: string, dir: string): Promise<void> {
  if (!findExecutable('genisoimage')) throw new UserError('genisoimage not found; install genisoimage (apt-get install genisoimage)', EXIT.missingTool);
  await runCommand('genisoimage', ['-quiet', '-output', image, '-volid', 'cidata', '-joliet', '-rock', dir], { timeout: GENISOIMAGE_TIMEOUT_MS });
}
