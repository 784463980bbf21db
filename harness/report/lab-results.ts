import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { Ajv } from 'ajv';

/**
 * `results.json` of a lab run or campaign, `flinch.results/v1`: one definition for the TypeScript type and the JSON
 * Schema, checked when written and when `flinch report` reads it back. Every other output (table, JUnit, TAP, HTML)
 * is made from this file alone.
 */
export const LAB_RESULTS_SCHEMA = 'flinch.results/v1';

const Nullable = <T extends import('@sinclair/typebox').TSchema>(schema: T) => Type.Union([schema, Type.Null()]);
const Ms = Nullable(Type.Number());

/** One link message the guest reported inside a migration's window. */
export const AnnouncementSeenSchema = Type.Object({
  afterResumeMs: Type.Number(),
  kind: Type.Union([Type.Literal('rarp'), Type.Literal('gratuitous-arp'), Type.Literal('unsolicited-na')]),
  /** The tap it came in on: which QEMU sent it. */
  port: Type.String(),
  announced: Type.String(),
});

const OutsideSeenSchema = Type.Object({
  intervalMs: Type.Number(),
  sent: Type.Integer(),
  received: Type.Integer(),
  longestGapMs: Type.Number(),
  resumeGapMs: Ms,
  clockLagMs: Ms,
  clockLagUncertaintyMs: Ms,
  verdict: Type.Union([Type.Literal('transparent'), Type.Literal('noticed'), Type.Literal('disrupted')]),
  evidence: Type.Array(Type.String()),
});

const NetworkSeenSchema = Type.Object({
  /** What the times are after: the destination's RESUME, or the hypervisor's completion where no RESUME came. */
  reference: Type.Union([Type.Literal('resume'), Type.Literal('completion')]),
  /** The first announcements (at most 20 are kept); counts has them all. */
  announcements: Type.Array(AnnouncementSeenSchema),
  counts: Type.Object({ rarp: Type.Integer(), gratuitousArp: Type.Integer(), unsolicitedNa: Type.Integer() }),
  firstAnnouncementMs: Ms,
  /** When the bridge's forwarding database put the guest's MAC on another port; null if it never moved. */
  bridgeLearntMs: Ms,
  bridgeLearntPort: Nullable(Type.String()),
  /**
   * The replies' gap around RESUME (the last reply before it to the first after it), in ms after RESUME: the
   * migration's own blackout. The longest gap of the UDP echo (the blackout column) is often another, later one, where
   * the agent, busy with the migration's episode, answered its echoes late.
   */
  resumeGap: Nullable(Type.Object({
    /** Which replies: ICMP timestamps (the guest's kernel answers) where the lab sends them, else the agent's UDP echo. */
    probes: Type.Union([Type.Literal('icmp'), Type.Literal('udp-echo')]),
    fromMs: Type.Number(),
    toMs: Type.Number(),
  })),
  blackoutSplit: Nullable(Type.Object({
    beforePauseMs: Type.Number(), pauseMs: Type.Number(), untilAnnouncementMs: Type.Number(), untilBridgeMs: Type.Number(), restMs: Type.Number(),
  })),
});

const SeenLinkEventSchema = Type.Object({
  /** ms after the hypervisor reported the migration complete (negative: during it). */
  afterCompletionMs: Type.Number(),
  action: Type.Union([Type.Literal('new'), Type.Literal('del')]),
  ifname: Type.String(),
  ifindex: Type.Integer(),
  event: Nullable(Type.String()),
  carrier: Nullable(Type.Integer()),
  carrierChanges: Nullable(Type.Integer()),
});

export const VERDICT_ORDER = ['transparent', 'noticed', 'healed', 'disrupted'] as const;
export const ResultVerdictSchema = Type.Union([...VERDICT_ORDER.map((v) => Type.Literal(v)), Type.Literal('unknown')]);

export const MigrationResultSchema = Type.Object({
  index: Type.Integer({ minimum: 1 }),
  driver: Type.String(),
  /** How the driver moved the guest, where it has more than one way (xl: save-restore, migrate). */
  method: Type.Optional(Type.String()),
  /** A control: announced and measured like a migration, but nothing moved. A verdict worse than transparent is a false positive. */
  control: Type.Optional(Type.Literal(true)),
  /** The faults composed into this migration ([] for a plain one), and what each did when. */
  faults: Type.Array(Type.String()),
  faultRecords: Type.Array(Type.Object({ fault: Type.String(), phase: Type.String(), atMs: Type.Number(), detail: Type.String() })),
  from: Type.String(),
  to: Type.String(),
  startedAt: Type.String(),
  totalMs: Ms,
  downtimeMs: Ms,
  setupMs: Ms,
  transferredBytes: Ms,
  /**
   * The true pause: from the source's STOP event to the destination's RESUME, both stamped by QEMU with this host's
   * realtime clock (µs). Null where the events did not come; absent for drivers that have none (libvirt, xl, sim).
   */
  pauseMs: Type.Optional(Ms),
  /**
   * Where the migration's moments lie on its own time axis, in ms after startedAt: completion, and the pause's STOP
   * and RESUME where the driver has them. The timeline and the trace export are drawn from these.
   */
  timeline: Type.Optional(Type.Object({ completedMs: Type.Number(), stoppedMs: Type.Optional(Type.Number()), resumedMs: Type.Optional(Type.Number()) })),
  /** How far the guest's CLOCK_REALTIME fell behind the host across the migration; null if it could not be measured. */
  clockLagMs: Ms,
  /** The guest's offset against the host before and after, both carried along its drift to the moment it resumed. */
  baselineOffsetMs: Ms,
  afterOffsetMs: Ms,
  /** The lag is known to within this: half the round trips of the worst time exchanges it was read from. */
  clockLagUncertaintyMs: Type.Optional(Ms),
  /** How fast the guest's clock ran against the host's before the migration (ppm; a TCG guest can be far off). */
  guestClockDriftPpm: Type.Optional(Ms),
  /** The same lag as the guest's agent saw it on its own (host-offset steps it reported). */
  guestSeenOffsetStepMs: Ms,
  /**
   * After the agent's safety net stepped the guest clock back: how long until the agent saw its offset to the host
   * move back by the step (ms between the two records reaching the collector); null if the agent said it did not.
   * Absent where no clock was stepped.
   */
  clockConvergedMs: Type.Optional(Ms),
  /** The blackout seen from outside: UDP echoes to the guest's opt-in responder; null without one. */
  blackout: Nullable(Type.Object({ sent: Type.Integer(), received: Type.Integer(), lost: Type.Integer(), longestGapMs: Type.Number(), intervalMs: Type.Number() })),
  linkEvents: Type.Array(SeenLinkEventSchema),
  /**
   * What the lab's network saw (QEMU lab): the announcements that came in from the guest's taps and when the bridge
   * moved its MAC, in ms after the destination's RESUME (after completion where there was no RESUME); and the gap
   * around RESUME split into the stretches that add up to it. Absent where the lab has no bridge of its own to watch.
   */
  network: Type.Optional(NetworkSeenSchema),
  /**
   * The outside view (QEMU lab): what ICMP timestamp requests, answered by the guest's kernel, say with nothing of
   * flinch's in the guest: blackout, the gap around RESUME, the clock lag (±1 ms stamps), and a verdict from them.
   */
  outside: Type.Optional(OutsideSeenSchema),
  /** What the guest's xenstore probe reported inside the window (Xen guests): its domid, vif states, suspend requests. */
  xenEvents: Type.Optional(
    Type.Array(Type.Object({ afterCompletionMs: Type.Number(), change: Type.String(), path: Type.String(), value: Nullable(Type.String()), previous: Nullable(Type.String()) })),
  ),
  /** Observations and time replies that reached the collector after completion: proof the guest was still reporting. */
  observationsAfter: Type.Integer(),
  timeRepliesAfter: Type.Integer(),
  /** The agent's verdict on the episode the migration caused, or v0's when no report came. */
  verdict: ResultVerdictSchema,
  /** Who judged: the agent's episode report, v0 where no report came, or the outside view for an agentless guest. */
  verdictSource: Type.Union([Type.Literal('agent'), Type.Literal('v0'), Type.Literal('outside')]),
  reasons: Type.Array(Type.String()),
  /** Whether the verdict is as good as the campaign's --expect, or better. */
  expected: Type.Union([...VERDICT_ORDER.map((v) => Type.Literal(v))]),
  passed: Type.Boolean(),
  /** The agent's report on this migration's episode, summarised (the full report is in reports.jsonl beside). */
  episode: Nullable(
    Type.Object({
      id: Type.String(),
      durationMs: Type.Number(),
      triggers: Type.Array(Type.String()),
      disrupted: Type.Array(Type.String()),
      noticed: Type.Array(Type.String()),
      remediation: Type.String(),
      timeToHealMs: Ms,
    }),
  ),
  error: Type.Optional(Type.String()),
});

export const LabResultsSchema = Type.Object({
  schema: Type.Literal(LAB_RESULTS_SCHEMA),
  startedAt: Type.String(),
  wallTimeMs: Type.Number(),
  hypervisor: Type.Object({
    driver: Type.String(),
    qemu: Nullable(Type.String()),
    destQemu: Type.Optional(Nullable(Type.String())),
    /** What the destinations' QEMU says it is, where it is another binary than the source's. */
    destQemuVersion: Type.Optional(Type.String()),
    /** The concrete machine type the guest ran on (pc-i440fx-7.2), which every destination was started with. */
    machine: Type.Optional(Type.String()),
    /** The nested Xen lab: the hypervisor's version and dom0's kernel. */
    xen: Type.Optional(Type.String()),
    /** The two-host Xen lab (--xen-dest): the second host's hypervisor version. */
    xenDest: Type.Optional(Type.String()),
    dom0Kernel: Type.Optional(Type.String()),
  }),
  guest: Type.Object({
    kernel: Type.String(),
    memoryMiB: Type.Number(),
    bootToAgentMs: Type.Number(),
    /** A Xen domU's type: pv or pvh. */
    type: Type.Optional(Type.String()),
    /** The user's own libvirt domain a campaign ran against (--domain), and the hostname its agent gave. */
    domain: Type.Optional(Type.String()),
    hostname: Type.Optional(Type.String()),
  }),
  campaign: Type.Object({
    methods: Type.Optional(Type.Array(Type.String())),
    faults: Type.Array(Type.String()),
    migrationsPerFault: Type.Integer(),
    /** Sham migrations spread among the real ones (--controls). */
    controls: Type.Optional(Type.Integer({ minimum: 1 })),
    expect: Type.Union([...VERDICT_ORDER.map((v) => Type.Literal(v))]),
    options: Type.Record(Type.String(), Type.Union([Type.Number(), Type.Boolean(), Type.String()])),
  }),
  migrations: Type.Array(MigrationResultSchema),
  /** How the agent's reports travelled: stored exactly once in the collector's SQLite store (collector.sqlite). */
  channel: Type.Optional(
    Type.Object({ reportsStored: Type.Integer(), duplicatesDropped: Type.Number(), rejectedFrames: Type.Integer(), agentConnections: Type.Integer(), spoolDropped: Type.Integer() }),
  ),
});

export type SeenLinkEvent = Static<typeof SeenLinkEventSchema>;
export type MigrationResult = Static<typeof MigrationResultSchema>;
export type LabResults = Static<typeof LabResultsSchema>;
export type ResultVerdict = Static<typeof ResultVerdictSchema>;
export type ExpectedVerdict = (typeof VERDICT_ORDER)[number];

const validate = new Ajv({ allErrors: false, strict: false }).compile<LabResults>(LabResultsSchema);

export function assertValidResults(value: unknown, where: string): LabResults {
  if (!validate(value)) {
    const error = validate.errors?.[0];
    throw new Error(`${where}: not ${LAB_RESULTS_SCHEMA}: ${error?.instancePath || '/'} ${error?.message ?? 'invalid'}`);
  }
  return value;
}

/** A verdict passes when it is no worse than the expectation; 'unknown' never passes. */
export function meetsExpectation(verdict: ResultVerdict, expected: ExpectedVerdict): boolean {
  const rank = VERDICT_ORDER.indexOf(verdict as ExpectedVerdict);
  return rank >= 0 && rank <= VERDICT_ORDER.indexOf(expected);
}

/** Written atomically, after validation: a reader never sees half a results file or one that breaks the schema. */
export function writeLabResults(outDir: string, results: LabResults): string {
  assertValidResults(results, 'results to write');
  mkdirSync(outDir, { recursive: true });
  const file = path.join(outDir, 'results.json');
  writeFileSync(`${file}.tmp`, `${JSON.stringify(results, null, 2)}\n`);
  renameSync(`${file}.tmp`, file);
  return file;
}

export function readLabResults(dir: string): LabResults {
  const file = path.join(dir, 'results.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`${file}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no results here (run flinch lab or flinch campaign with --out first)' : (error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Error(`${file}: not JSON`);
  }
  return assertValidResults(value, file);
}
