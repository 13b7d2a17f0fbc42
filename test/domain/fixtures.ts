/**
 * Builders for the pure rotation state machine tests: plain `KeyState` values with sensible
 * defaults, so each test only spells out what it is about.
 */
import { expect } from "vitest";
import type { KeyRecord, KeyState, KeyVersion, Rotation } from "../../src/domain/key-state";
import {
  startRotation,
  type StartRotationInput,
  type Transition,
  type TransitionError,
} from "../../src/domain/rotation-machine";

export const SECOND = 1000;
export const MINUTE = 60 * SECOND;
export const HOUR = 60 * MINUTE;
export const DAY = 24 * HOUR;

/** An arbitrary, round instant: 2025-01-01T00:00:00Z. */
export const T0 = Date.UTC(2025, 0, 1);

export const KEY_ID = "key_test";
export const CONSUMER_ID = "con_test";

export type Ok = Extract<Transition, { ok: true }>;

export function version(n: number, overrides: Partial<KeyVersion> = {}): KeyVersion {
  return {
    version: n,
    secretHash: `hash-${n}`,
    hint: `h${String(n).padStart(3, "0")}`,
    scopes: ["prices:read"],
    status: "active",
    createdAt: T0,
    expiresAt: null,
    graceUntil: null,
    retiredAt: null,
    lastUsedAt: null,
    ...overrides,
  };
}

export function keyRecord(overrides: Partial<KeyRecord> = {}): KeyRecord {
  return {
    id: KEY_ID,
    consumerId: CONSUMER_ID,
    name: "test key",
    metadata: { team: "pricing" },
    rateLimit: { limit: 10, periodSeconds: 60 },
    status: "active",
    currentVersion: 1,
    createdAt: T0,
    updatedAt: T0,
    revokedAt: null,
    revokeReason: null,
    ...overrides,
  };
}

/** A key with one active version (v1, no expiry unless given) and no rotation. */
export function keyState(
  options: {
    key?: Partial<KeyRecord>;
    versions?: KeyVersion[];
    rotation?: Rotation | null;
    v1?: Partial<KeyVersion>;
  } = {},
): KeyState {
  const versions = options.versions ?? [version(1, options.v1)];
  return {
    key: keyRecord({
      currentVersion: Math.max(...versions.map((v) => v.version)),
      ...options.key,
    }),
    versions,
    rotation: options.rotation ?? null,
  };
}

/** The next version number of `state` (what a caller of `startRotation` must pass). */
export function nextNumber(state: KeyState): number {
  return Math.max(...state.versions.map((v) => v.version)) + 1;
}

let rotationCounter = 0;

/** A `StartRotationInput` for the next version of `state`, started at `now`. */
export function startInput(
  state: KeyState,
  now: number,
  overrides: Partial<Omit<StartRotationInput, "newVersion">> & {
    newVersion?: Partial<KeyVersion>;
  } = {},
): StartRotationInput {
  const { newVersion, ...rest } = overrides;
  const n = newVersion?.version ?? nextNumber(state);
  rotationCounter += 1;
  return {
    rotationId: `rot_${rotationCounter}`,
    newVersion: version(n, { createdAt: now, ...newVersion }),
    gracePeriodMs: DAY,
    graceStartsOnFirstUse: false,
    completeWhenIdleMs: null,
    now,
    ...rest,
  };
}

/** Asserts a transition succeeded and narrows it. */
export function ok(transition: Transition): Ok {
  if (!transition.ok) {
    expect.fail(`expected success, got ${transition.code}: ${transition.detail}`);
  }
  return transition;
}

/** Asserts a transition failed with `code` and narrows it. */
export function failed(transition: Transition, code: TransitionError["code"]): TransitionError {
  if (transition.ok) expect.fail(`expected ${code}, got success`);
  expect(transition.code).toBe(code);
  expect(transition.detail).toEqual(expect.any(String));
  return transition;
}

/** A key whose v1 is rotating to v2 (started at `now`); returns the state and the rotation. */
export function rotating(
  now: number,
  options: Partial<Omit<StartRotationInput, "newVersion">> & {
    newVersion?: Partial<KeyVersion>;
    v1?: Partial<KeyVersion>;
  } = {},
): { state: KeyState; rotation: Rotation } {
  const { v1, ...rest } = options;
  const base = keyState({ v1: { createdAt: now - DAY, ...v1 } });
  const started = ok(startRotation(base, startInput(base, now, rest)));
  const rotation = started.state.rotation;
  if (!rotation) expect.fail("expected an open rotation");
  return { state: started.state, rotation };
}

export function findV(state: KeyState, n: number): KeyVersion {
  const found = state.versions.find((v) => v.version === n);
  if (!found) expect.fail(`version ${n} missing`);
  return found;
}

/** Freezes a value and everything reachable from it, so any mutation throws. */
export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === "object" && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
