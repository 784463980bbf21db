import type { Episode } from '../episodes/episode-engine.js';
import { isLocalMigrationEvidence } from '../episodes/triggers.js';
/** The guest's own sight of its clock moving. Under QEMU's `stop` every guest clock freezes, so it may see none. */
const LOCAL_CLOCK_EVIDENCE = new Set(['pause', 'clock-step', 'boottime-jump']);

/**
 * By how much (ms, to add to CLOCK_REALTIME) the clock is to be brought back after `episode`, given how far its
 * offset against the host moved meanwhile (guest minus host); null to leave it.
 *
 * The move is measured over the (authenticated) collector connection; the migration must be proven by the guest's own
 * kernel, so that a collector cannot make guests step their clocks by claiming one. Where the guest saw its own clock
 * move (a late wake-up, a realtime step, a suspend), a claimed move far larger than that contradicts it and is not
 * acted on; where it saw none (a QEMU stop freezes its clocks), the offset is the only measure there is.
 */
export function clockCorrectionMs(episode: Pick<Episode, 'triggers'>, offsetMovedMs: number, clockHealMs: number): number | null {
  if (Math.abs(offsetMovedMs) < clockHealMs) return null;
  // The collector alone cannot prove a migration that changes the clock.
  if (!episode.triggers.some(isLocalMigrationEvidence)) return null;
  const seen = Math.max(0, ...episode.triggers.filter((t) => LOCAL_CLOCK_EVIDENCE.has(t.kind)).map((t) => t.magnitudeMs ?? 0));
  if (seen > 0 && Math.abs(offsetMovedMs) > 2 * seen + clockHealMs) return null;
  return -offsetMovedMs;
}
