import { secretHint } from "../keys/key-format";
import { hashSecret } from "../keys/hash";
import { MAX_EXPIRES_AT, type KeyState, type KeyVersion, type RateLimit } from "./key-state";
import type { StartRotationInput, Transition } from "./rotation-machine";

/**
 * The transitions that create and change a key, besides the rotation machine's: pure values
 * built from a request's input and a freshly generated secret (only its hash and hint are
 * kept).
 */

export interface KeyInput {
  name: string | null;
  scopes: string[];
  expiresAt: number | null;
  rateLimit: RateLimit | null;
  metadata: Record<string, unknown> | null;
}

export interface KeyPatch {
  name?: string | null | undefined;
  metadata?: Record<string, unknown> | null | undefined;
  rateLimit?: RateLimit | null | undefined;
  scopes?: string[] | undefined;
  expiresAt?: number | null | undefined;
}

export interface RotateInput {
  gracePeriodSeconds?: number | undefined;
  graceStartsOnFirstUse?: boolean | undefined;
  completeWhenIdleSeconds?: number | undefined;
  scopes?: string[] | undefined;
  expiresAt?: number | null | undefined;
}

function newVersion(
  version: number,
  secret: string,
  scopes: string[],
  expiresAt: number | null,
  now: number,
): KeyVersion {
  return {
    version,
    secretHash: hashSecret(secret),
    hint: secretHint(secret),
    scopes,
    status: "active",
    createdAt: now,
    expiresAt,
    graceUntil: null,
    retiredAt: null,
    lastUsedAt: null,
  };
}

/** A new key of `consumerId` whose version 1 holds `secret`. */
export function createKey(
  consumerId: string,
  keyId: string,
  secret: string,
  input: KeyInput,
  now: number,
): Extract<Transition, { ok: true }> {
  const version = newVersion(1, secret, input.scopes, input.expiresAt, now);
  return {
    ok: true,
    state: {
      key: {
        id: keyId,
        consumerId,
        name: input.name,
        metadata: input.metadata,
        rateLimit: input.rateLimit,
        status: "active",
        currentVersion: 1,
        createdAt: now,
        updatedAt: now,
        revokedAt: null,
        revokeReason: null,
      },
      versions: [version],
      rotation: null,
    },
    rotations: [],
    events: [
      { action: "key.created", details: { version: 1, scopes: input.scopes, hint: version.hint } },
    ],
  };
}

/** Changes a key's name, metadata and rate limit, and its current version's scopes and expiry. */
export function updateKey(state: KeyState, patch: KeyPatch, now: number): Transition {
  if (state.key.status === "revoked")
    return { ok: false, code: "conflict", detail: "the key is revoked" };
  const next: KeyState = structuredClone(state);
  if (patch.name !== undefined) next.key.name = patch.name;
  if (patch.metadata !== undefined) next.key.metadata = patch.metadata;
  if (patch.rateLimit !== undefined) next.key.rateLimit = patch.rateLimit;
  next.key.updatedAt = now;
  if (patch.scopes !== undefined || patch.expiresAt !== undefined) {
    next.versions = next.versions.map((v) =>
      v.version === next.key.currentVersion
        ? {
            ...v,
            scopes: patch.scopes ?? v.scopes,
            expiresAt: patch.expiresAt !== undefined ? patch.expiresAt : v.expiresAt,
          }
        : v,
    );
  }
  const fields = Object.entries(patch)
    .filter(([, value]) => value !== undefined)
    .map(([field]) => field);
  return {
    ok: true,
    state: next,
    rotations: [],
    events: [{ action: "key.updated", details: { fields } }],
  };
}

/**
 * What a rotation to `secret` starts with: the next version number, the current version's
 * scopes unless new ones are given, and its lifetime (capped at the latest expiry the API
 * accepts) unless an expiry is given.
 */
export function rotationInput(
  state: KeyState,
  rotationId: string,
  secret: string,
  input: RotateInput,
  defaultGraceSeconds: number,
  now: number,
): StartRotationInput {
  const current = state.versions.find((v) => v.version === state.key.currentVersion);
  const number = Math.max(...state.versions.map((v) => v.version)) + 1;
  const lifetime = current?.expiresAt != null ? current.expiresAt - current.createdAt : null;
  const expiresAt =
    input.expiresAt !== undefined
      ? input.expiresAt
      : lifetime !== null
        ? Math.min(now + lifetime, MAX_EXPIRES_AT)
        : null;
  return {
    rotationId,
    newVersion: newVersion(number, secret, input.scopes ?? current?.scopes ?? [], expiresAt, now),
    gracePeriodMs: (input.gracePeriodSeconds ?? defaultGraceSeconds) * 1000,
    graceStartsOnFirstUse: input.graceStartsOnFirstUse ?? false,
    completeWhenIdleMs:
      input.completeWhenIdleSeconds !== undefined ? input.completeWhenIdleSeconds * 1000 : null,
    now,
  };
}
