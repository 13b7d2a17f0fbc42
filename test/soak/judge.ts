import type { Outcome } from "./client.js";
import type { IssuedSecret } from "./model.js";
import type { Tally } from "./tally.js";

/** What a request presented, and what the model expected of it when it was sent. */
export type Presented =
  | { kind: "valid"; secret: IssuedSecret }
  | { kind: "retired"; secret: IssuedSecret }
  | { kind: "garbage"; label: string; keyId: string | null };

export interface Judged {
  phase: string;
  presented: Presented;
  address: string;
  outcome: Outcome;
  /**
   * For a 429: whether the running server had verified this secret, or any of its key's, and
   * whether that server created the key itself (a revoked key's replacement).
   */
  seen?: { secret: boolean; key: boolean; createdHere: boolean };
}

const RETIRED_CODES = new Set(["invalid_key", "key_expired"]);

function seenNote(seen: Judged["seen"]): string {
  if (!seen) return "sweep";
  const created = seen.createdHere ? "key created by this server" : "key created before";
  if (seen.secret) return `${created}; this secret had verified on this server before`;
  return seen.key
    ? `${created}; first use of this secret, another of its key had verified on this server`
    : `${created}; no secret of this key had verified on this server yet`;
}

function describe(outcome: Outcome): string {
  if (!outcome.ok) return `no answer (${outcome.error})`;
  const { status, code } = outcome.answer;
  return code ? `${status} ${code}` : String(status);
}

function header(outcome: Outcome & { ok: true }, name: string): string | null {
  const value = outcome.answer.headers[name];
  return typeof value === "string" ? value : null;
}

/** What is wrong with Deprecation and Sunset on a 2xx of `secret`, or null. */
export function graceHeaderProblem(secret: IssuedSecret, outcome: Outcome & { ok: true }) {
  const deprecation = header(outcome, "deprecation");
  if (!secret.inGrace) {
    return deprecation === null ? null : `Deprecation ${deprecation} on a version not in grace`;
  }
  const match = deprecation === null ? null : /^@(\d+)$/.exec(deprecation);
  if (!match) return `Deprecation ${deprecation ?? "missing"} on a version in grace`;
  if (secret.rotatedAt !== null && Math.abs(Number(match[1]) - secret.rotatedAt / 1000) > 2) {
    return `Deprecation ${deprecation}, rotation started ${new Date(secret.rotatedAt).toISOString()}`;
  }
  const sunset = header(outcome, "sunset");
  if (secret.graceUntil !== null) {
    const at = sunset === null ? NaN : Date.parse(sunset);
    if (!(Math.abs(at - secret.graceUntil) < 1_500)) {
      return `Sunset ${sunset ?? "missing"}, graceUntil ${new Date(secret.graceUntil).toISOString()}`;
    }
  }
  return null;
}

/**
 * What is wrong with `Keygate-Credential` (contract §3) on a 2xx of a version in grace, or
 * null. Reported as a note, not a failure, until the header's whole contract (`state=due`,
 * POST /verify and the RPC) is built.
 */
export function credentialHeaderProblem(secret: IssuedSecret, outcome: Outcome & { ok: true }) {
  if (!secret.inGrace) return null;
  const credential = header(outcome, "keygate-credential");
  if (credential !== null && /(^|[,\s])state=grace(\s*,|$)/.test(credential)) return null;
  return `Keygate-Credential ${credential === null ? "missing" : "without state=grace"} on a 2xx of a version in grace`;
}

/**
 * Judges one answer against the model's expectation, recording a pass or a violation.
 * Never a 5xx; a valid secret verifies as its own key and version with the rotation headers
 * its state calls for; a retired secret answers 401 `invalid_key` or `key_expired`; garbage
 * answers 401 `invalid_key` (or 429 from the spraying guard).
 */
export function judge(tally: Tally, judged: Judged): void {
  const { phase, presented, address, outcome } = judged;
  const secret = presented.kind === "garbage" ? null : presented.secret;
  const base = {
    phase,
    keyId: secret?.keyId ?? (presented.kind === "garbage" ? presented.keyId : null),
    version: secret?.version ?? null,
    address,
    got: describe(outcome),
  };
  if (!outcome.ok) {
    tally.fail("no_answer", { ...base, expected: "an answer" });
    return;
  }
  const { status, body } = outcome.answer;
  if (status >= 500) {
    tally.fail("server_error", { ...base, expected: "no 5xx", note: presented.kind });
    return;
  }
  const ok = status >= 200 && status < 300;
  if (presented.kind === "valid") {
    const expected = "2xx (valid)";
    if (status === 429) {
      const retryAfter = header(outcome, "retry-after");
      const seen = seenNote(judged.seen);
      tally.fail(
        "valid_429",
        {
          ...base,
          expected,
          note: `${seen}; secret issued ${((Date.now() - presented.secret.issuedAt) / 1000).toFixed(1)} s before; Retry-After ${retryAfter ?? "-"}`,
        },
        `${phase}: ${seen}`,
      );
    } else if (!ok) {
      tally.fail("valid_refused", { ...base, expected });
    } else if (
      body?.keyId !== presented.secret.keyId ||
      body?.keyVersion !== presented.secret.version
    ) {
      tally.fail("wrong_identity", {
        ...base,
        expected: `echo of key ${presented.secret.keyId} v${presented.secret.version}`,
        got: `${status} key ${String(body?.keyId)} v${String(body?.keyVersion)}`,
      });
    } else {
      const problem = graceHeaderProblem(presented.secret, outcome);
      if (problem) tally.fail("grace_headers", { ...base, expected, note: problem });
      else tally.pass(phase);
      const credential = credentialHeaderProblem(presented.secret, outcome);
      if (credential) tally.note(credential);
    }
    return;
  }
  if (presented.kind === "retired") {
    const expected = `401 invalid_key|key_expired (retired by ${presented.secret.retiredBy ?? "grace end"})`;
    if (ok) tally.fail("retired_accepted", { ...base, expected });
    else if (status === 401 && outcome.answer.code && RETIRED_CODES.has(outcome.answer.code)) {
      tally.pass(phase);
    } else tally.fail("retired_wrong_refusal", { ...base, expected }, `${phase}: ${base.got}`);
    return;
  }
  const expected = `401 invalid_key or 429 rate_limited (garbage: ${presented.label})`;
  if (ok) tally.fail("garbage_accepted", { ...base, expected });
  else if (
    (status === 401 && outcome.answer.code === "invalid_key") ||
    (status === 429 && outcome.answer.code === "rate_limited")
  ) {
    tally.pass(phase);
  } else tally.fail("garbage_wrong_refusal", { ...base, expected });
}
