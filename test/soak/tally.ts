/**
 * The soak's bookkeeping: checks that agreed (passed), violations by kind with their first
 * examples (failed), operations by kind, and requests that were sent but not judged, by why.
 */

/** Violation kinds, with what each means; the report lists them in this order. */
export const VIOLATION_KINDS = {
  server_error: "a 5xx answer (never allowed, judged or not)",
  no_answer: "a request got no HTTP answer outside the restart window",
  valid_refused: "a secret the model says verifies was refused (not 429)",
  valid_429: "a secret the model says verifies got 429 (the address guard, being fixed)",
  wrong_identity: "a 2xx that names another key or version than the secret's",
  grace_headers: "Deprecation / Sunset do not match the model (docs/rotation.md)",
  retired_accepted: "a secret the model says is retired was let through",
  retired_wrong_refusal: "a retired secret refused with something other than 401",
  garbage_accepted: "a garbage credential was let through",
  garbage_wrong_refusal: "garbage refused with something other than 401 / 429",
  op_refused: "a management call the model expected to succeed was refused",
  op_unexpected: "a management call answered other than the model expected",
  op_inconsistent: "a management answer contradicts earlier answers",
} as const;

export type ViolationKind = keyof typeof VIOLATION_KINDS;

export interface Example {
  phase: string;
  keyId: string | null;
  version: number | null;
  expected: string;
  got: string;
  /** seconds since the churn started */
  at: number;
  address: string | null;
  note?: string;
}

const EXAMPLES_PER_KIND = 5;

export class Tally {
  passed = 0;
  failed = 0;
  readonly violations = new Map<
    ViolationKind,
    { count: number; examples: Example[]; groups: Map<string, number> }
  >();
  readonly operations = new Map<string, number>();
  readonly unjudged = new Map<string, number>();
  readonly statuses = new Map<string, number>();
  /** findings that are not failures, with their counts */
  readonly notes = new Map<string, number>();
  requests = 0;
  /** checks by phase: traffic, after restart, final sweep, operations */
  readonly checksByPhase = new Map<string, { passed: number; failed: number }>();

  constructor(public startedAt: number) {}

  pass(phase: string): void {
    this.passed++;
    this.phaseEntry(phase).passed++;
  }

  /** Records a violation; `group` splits a kind's count (e.g. by what the client had done). */
  fail(kind: ViolationKind, example: Omit<Example, "at">, group?: string): void {
    this.failed++;
    this.phaseEntry(example.phase).failed++;
    let entry = this.violations.get(kind);
    if (!entry) {
      entry = { count: 0, examples: [], groups: new Map() };
      this.violations.set(kind, entry);
    }
    entry.count++;
    if (group !== undefined) entry.groups.set(group, (entry.groups.get(group) ?? 0) + 1);
    if (entry.examples.length < EXAMPLES_PER_KIND) {
      entry.examples.push({ ...example, at: this.elapsed() });
    }
  }

  operation(kind: string): void {
    this.operations.set(kind, (this.operations.get(kind) ?? 0) + 1);
  }

  skip(why: string): void {
    this.unjudged.set(why, (this.unjudged.get(why) ?? 0) + 1);
  }

  note(finding: string): void {
    this.notes.set(finding, (this.notes.get(finding) ?? 0) + 1);
  }

  status(label: string): void {
    this.statuses.set(label, (this.statuses.get(label) ?? 0) + 1);
  }

  elapsed(): number {
    return Math.round((Date.now() - this.startedAt) / 100) / 10;
  }

  private phaseEntry(phase: string) {
    let entry = this.checksByPhase.get(phase);
    if (!entry) {
      entry = { passed: 0, failed: 0 };
      this.checksByPhase.set(phase, entry);
    }
    return entry;
  }
}

function sorted(map: Map<string, number>): [string, number][] {
  return [...map.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
}

/** The report's lines; the last one is `N passed, N failed`. */
export function formatReport(tally: Tally, facts: string[]): string[] {
  const lines: string[] = [...facts, ""];
  lines.push("operations:");
  for (const [kind, count] of sorted(tally.operations)) lines.push(`  ${kind.padEnd(26)} ${count}`);
  lines.push("", `requests sent: ${tally.requests}`);
  for (const [label, count] of sorted(tally.statuses)) lines.push(`  ${label.padEnd(26)} ${count}`);
  lines.push("not judged (sent while the model could not say):");
  for (const [why, count] of sorted(tally.unjudged)) lines.push(`  ${why.padEnd(40)} ${count}`);
  lines.push("", "checks by phase:");
  for (const [phase, { passed, failed }] of tally.checksByPhase) {
    lines.push(`  ${phase.padEnd(26)} ${passed} passed, ${failed} failed`);
  }
  lines.push("", "violations:");
  if (tally.violations.size === 0) lines.push("  none");
  for (const kind of Object.keys(VIOLATION_KINDS) as ViolationKind[]) {
    const entry = tally.violations.get(kind);
    if (!entry) continue;
    lines.push(`  ${kind}: ${entry.count} (${VIOLATION_KINDS[kind]})`);
    for (const [group, count] of sorted(entry.groups)) lines.push(`    ${count} × ${group}`);
    for (const e of entry.examples) {
      const version = e.version === null ? "" : ` v${e.version}`;
      const where = e.address === null ? "" : ` from ${e.address}`;
      lines.push(
        `    t=${e.at.toFixed(1)}s ${e.phase} key ${e.keyId ?? "-"}${version}${where}: expected ${e.expected}, got ${e.got}${e.note ? ` (${e.note})` : ""}`,
      );
    }
  }
  if (tally.notes.size > 0) {
    lines.push("", "notes (findings not counted as failures):");
    for (const [finding, count] of sorted(tally.notes)) lines.push(`  ${count} × ${finding}`);
  }
  lines.push("", `${tally.passed} passed, ${tally.failed} failed`);
  return lines;
}
