/**
 * What the soak believes about every secret it was ever given, built from the management
 * API's answers only (never from reading Keygate's storage):
 *
 * - create: version 1 verifies;
 * - rotate: the answer's `key` verifies as the answer's `version`; the old version verifies
 *   until the answer's `rotation.graceUntil` (or, with `graceStartsOnFirstUse` and no
 *   `graceUntil` yet, for at least the grace asked for, which outlasts a run);
 * - emergency rotate (`gracePeriodSeconds: 0`): the old version is refused at once;
 * - complete: the old version is refused; rollback: the new one is refused and the old one
 *   verifies again, with no deadline; extend: the old version's deadline is the answer's;
 * - revoke: every version is refused.
 *
 * A valid version whose deadline is within `GRACE_MARGIN_MS` of a request is not judged
 * (with graces of an hour or more, none comes near one during a run).
 */
export const GRACE_MARGIN_MS = 2_000;

export interface IssuedSecret {
  secret: string;
  keyId: string;
  version: number;
  /** `valid` verifies (until `graceUntil` when in grace); `retired` must answer 401 */
  state: "valid" | "retired";
  /** superseded by an open rotation: verifies, with Deprecation and Sunset */
  inGrace: boolean;
  /** end of its grace (epoch ms), null while unknown (first-use grace) or without one */
  graceUntil: number | null;
  /** when the rotation that put it in grace started (epoch ms) */
  rotatedAt: number | null;
  /** what retired it */
  retiredBy: string | null;
  /** when the answer that issued it arrived (epoch ms) */
  issuedAt: number;
}

export interface OpenRotation {
  id: string;
  fromVersion: number;
  toVersion: number;
}

export interface KeyModel {
  id: string;
  consumerId: string;
  versions: Map<number, IssuedSecret>;
  current: number;
  rotation: OpenRotation | null;
  revoked: boolean;
  /** why the model lost track of this key (an answer lost or inconsistent): not judged */
  unknown: string | null;
  /** odd while an operation on this key is in flight; bumped at its start and its answer */
  seq: number;
  /** when the last operation's answer arrived (epoch ms) */
  settledAt: number;
  /** the client addresses this key's clients use (valid and stale secrets alike) */
  addresses: string[];
  /** when the answer that created it arrived (epoch ms) */
  createdAt: number;
}

export type Expectation = "valid" | "retired" | "unsure";

export function expectationOf(secret: IssuedSecret, now: number): Expectation {
  if (secret.state === "retired") return "retired";
  if (secret.graceUntil === null) return "valid";
  if (secret.graceUntil > now + GRACE_MARGIN_MS) return "valid";
  if (secret.graceUntil < now - GRACE_MARGIN_MS) return "retired";
  return "unsure";
}

export function newKey(
  id: string,
  consumerId: string,
  secret: string,
  version: number,
  addresses: string[],
): KeyModel {
  const versions = new Map<number, IssuedSecret>();
  versions.set(version, fresh(id, secret, version));
  return {
    id,
    consumerId,
    versions,
    current: version,
    rotation: null,
    revoked: false,
    unknown: null,
    seq: 0,
    settledAt: 0,
    addresses,
    createdAt: Date.now(),
  };
}

function fresh(keyId: string, secret: string, version: number): IssuedSecret {
  return {
    secret,
    keyId,
    version,
    state: "valid",
    inGrace: false,
    graceUntil: null,
    rotatedAt: null,
    retiredBy: null,
    issuedAt: Date.now(),
  };
}

function retire(secret: IssuedSecret | undefined, by: string): void {
  if (!secret) return;
  secret.state = "retired";
  secret.inGrace = false;
  secret.retiredBy = by;
}

/** What a rotate answer says; `graceUntil` and `startedAt` as epoch ms. */
export interface RotateAnswer {
  secret: string;
  version: number;
  rotationId: string;
  rotationState: string;
  fromVersion: number;
  toVersion: number;
  graceUntil: number | null;
  startedAt: number;
}

/**
 * Applies a rotate answer. Returns what in it disagrees with the model (then the key is
 * marked unknown by the caller), or null.
 */
export function applyRotate(
  key: KeyModel,
  emergency: boolean,
  answer: RotateAnswer,
): string | null {
  const problems: string[] = [];
  if (answer.fromVersion !== key.current) {
    problems.push(`fromVersion ${answer.fromVersion}, model's current version ${key.current}`);
  }
  if (answer.toVersion !== answer.version) {
    problems.push(`rotation.toVersion ${answer.toVersion} but version ${answer.version}`);
  }
  if (key.versions.has(answer.version)) problems.push(`version ${answer.version} issued twice`);
  const expectedState = emergency ? "completed" : "in_progress";
  if (answer.rotationState !== expectedState) {
    problems.push(`rotation state ${answer.rotationState}, expected ${expectedState}`);
  }
  if (!emergency && answer.graceUntil !== null && answer.graceUntil <= Date.now()) {
    problems.push(`graceUntil ${new Date(answer.graceUntil).toISOString()} already passed`);
  }
  const old = key.versions.get(answer.fromVersion);
  key.versions.set(answer.version, fresh(key.id, answer.secret, answer.version));
  key.current = answer.version;
  if (emergency) {
    retire(old, "emergency rotation");
    key.rotation = null;
  } else {
    if (old) {
      old.inGrace = true;
      old.graceUntil = answer.graceUntil;
      old.rotatedAt = answer.startedAt;
    }
    key.rotation = {
      id: answer.rotationId,
      fromVersion: answer.fromVersion,
      toVersion: answer.toVersion,
    };
  }
  return problems.length > 0 ? problems.join("; ") : null;
}

export interface RotationAnswer {
  id: string;
  state: string;
  fromVersion: number;
  toVersion: number;
  graceUntil: number | null;
}

function sameRotation(key: KeyModel, answer: RotationAnswer): string[] {
  const open = key.rotation;
  if (!open) return ["the model has no open rotation"];
  const problems: string[] = [];
  if (answer.id !== open.id) problems.push(`rotation ${answer.id}, model's ${open.id}`);
  if (answer.fromVersion !== open.fromVersion || answer.toVersion !== open.toVersion) {
    problems.push(
      `versions ${answer.fromVersion}→${answer.toVersion}, model's ${open.fromVersion}→${open.toVersion}`,
    );
  }
  return problems;
}

/** complete: the old version is retired. */
export function applyComplete(key: KeyModel, answer: RotationAnswer): string | null {
  const problems = sameRotation(key, answer);
  if (answer.state !== "completed") problems.push(`state ${answer.state}, expected completed`);
  retire(key.versions.get(answer.fromVersion), "complete");
  key.rotation = null;
  return problems.length > 0 ? problems.join("; ") : null;
}

/** rollback: the new version is retired, the old one verifies again with no deadline. */
export function applyRollback(key: KeyModel, answer: RotationAnswer): string | null {
  const problems = sameRotation(key, answer);
  if (answer.state !== "rolled_back") problems.push(`state ${answer.state}, expected rolled_back`);
  retire(key.versions.get(answer.toVersion), "rollback");
  const old = key.versions.get(answer.fromVersion);
  if (old) {
    old.state = "valid";
    old.inGrace = false;
    old.graceUntil = null;
    old.rotatedAt = null;
  }
  key.current = answer.fromVersion;
  key.rotation = null;
  return problems.length > 0 ? problems.join("; ") : null;
}

/** extend: the old version's deadline is the answer's `graceUntil`. */
export function applyExtend(
  key: KeyModel,
  answer: RotationAnswer,
  before: number | null,
): string | null {
  const problems = sameRotation(key, answer);
  if (answer.state !== "in_progress") problems.push(`state ${answer.state}, expected in_progress`);
  if (before !== null && answer.graceUntil !== null && answer.graceUntil <= before) {
    problems.push(`graceUntil did not move later`);
  }
  const old = key.versions.get(answer.fromVersion);
  if (old) old.graceUntil = answer.graceUntil;
  return problems.length > 0 ? problems.join("; ") : null;
}

/** revoke: every version is retired. */
export function applyRevoke(key: KeyModel, status: string): string | null {
  for (const secret of key.versions.values()) {
    if (secret.state === "valid") retire(secret, "revoke");
  }
  key.revoked = true;
  key.rotation = null;
  return status === "revoked" ? null : `status ${status}, expected revoked`;
}

/** The versions of `key` that must verify now, and those that must be refused. */
export function secretsByExpectation(key: KeyModel, now: number) {
  const valid: IssuedSecret[] = [];
  const retired: IssuedSecret[] = [];
  for (const secret of key.versions.values()) {
    const expectation = expectationOf(secret, now);
    if (expectation === "valid") valid.push(secret);
    else if (expectation === "retired") retired.push(secret);
  }
  return { valid, retired };
}
