/**
 * The pure rotation state machine (src/domain/rotation-machine.ts and key-state.ts):
 * every transition and every state, then fast-check properties over random operation
 * sequences. Times are epoch milliseconds; `T0` is an arbitrary round instant.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { findVersion, verifiesAt, versionStatus, type KeyState } from "../../src/domain/key-state";
import {
  completeRotation,
  extendRotation,
  idleDeadline,
  liveVersions,
  markUsed,
  nextDeadline,
  revokeKey,
  rollbackRotation,
  settle,
  startRotation,
  type Transition,
} from "../../src/domain/rotation-machine";
import {
  DAY,
  HOUR,
  MINUTE,
  SECOND,
  T0,
  deepFreeze,
  failed,
  findV,
  keyState,
  ok,
  rotating,
  startInput,
  version,
} from "./fixtures";

const live = (state: KeyState, now: number) => liveVersions(state, now).map((v) => v.version);

describe("versionStatus and verifiesAt", () => {
  it("an active version without expiry is active and verifies at any time", () => {
    const v = version(1);
    for (const now of [T0 - DAY, T0, T0 + 10 * 365 * DAY]) {
      expect(versionStatus(v, now)).toBe("active");
      expect(verifiesAt(v, now)).toBe(true);
    }
  });

  it("a version expires by timestamp at exactly expiresAt (verifies one ms before, not at)", () => {
    const v = version(1, { expiresAt: T0 + HOUR });
    expect(versionStatus(v, T0 + HOUR - 1)).toBe("active");
    expect(verifiesAt(v, T0 + HOUR - 1)).toBe(true);
    expect(versionStatus(v, T0 + HOUR)).toBe("expired");
    expect(verifiesAt(v, T0 + HOUR)).toBe(false);
    expect(versionStatus(v, T0 + DAY)).toBe("expired");
  });

  it("a grace version ends by timestamp at exactly graceUntil", () => {
    const v = version(1, { status: "grace", graceUntil: T0 + HOUR });
    expect(versionStatus(v, T0)).toBe("grace");
    expect(verifiesAt(v, T0 + HOUR - 1)).toBe(true);
    expect(versionStatus(v, T0 + HOUR)).toBe("expired");
    expect(verifiesAt(v, T0 + HOUR)).toBe(false);
  });

  it("a grace version waiting for first use (graceUntil null) stays in grace until its expiry", () => {
    const waiting = version(1, { status: "grace", graceUntil: null });
    expect(versionStatus(waiting, T0 + 100 * DAY)).toBe("grace");
    const expiring = version(1, { status: "grace", graceUntil: null, expiresAt: T0 + HOUR });
    expect(versionStatus(expiring, T0 + HOUR - 1)).toBe("grace");
    expect(versionStatus(expiring, T0 + HOUR)).toBe("expired");
  });

  it("a grace version whose own expiry comes before graceUntil expires at its expiry", () => {
    const v = version(1, { status: "grace", graceUntil: T0 + DAY, expiresAt: T0 + HOUR });
    expect(versionStatus(v, T0 + HOUR)).toBe("expired");
    expect(verifiesAt(v, T0 + HOUR)).toBe(false);
  });

  it("graceUntil only ends a version in grace: an active version ignores it", () => {
    const v = version(1, { status: "active", graceUntil: T0 });
    expect(versionStatus(v, T0 + DAY)).toBe("active");
    expect(verifiesAt(v, T0 + DAY)).toBe(true);
  });

  it("stored revoked and expired statuses are final whatever the time", () => {
    for (const status of ["revoked", "expired"] as const) {
      const v = version(1, { status, expiresAt: T0 + DAY, graceUntil: T0 + DAY });
      expect(versionStatus(v, T0 - DAY)).toBe(status);
      expect(verifiesAt(v, T0 - DAY)).toBe(false);
    }
  });

  it("findVersion finds a version by number and answers undefined for an unknown one", () => {
    const state = keyState({ versions: [version(1), version(2)] });
    expect(findVersion(state, 2)?.version).toBe(2);
    expect(findVersion(state, 3)).toBeUndefined();
  });
});

describe("startRotation", () => {
  it("normal grace: old version enters grace until now + grace, new version becomes current", () => {
    const base = keyState();
    const input = startInput(base, T0, { gracePeriodMs: 2 * HOUR, completeWhenIdleMs: MINUTE });
    const result = ok(startRotation(base, input));
    const { state } = result;
    expect(state.key.currentVersion).toBe(2);
    expect(state.key.updatedAt).toBe(T0);
    expect(findV(state, 1)).toMatchObject({
      status: "grace",
      graceUntil: T0 + 2 * HOUR,
      retiredAt: null,
    });
    expect(findV(state, 2)).toMatchObject({
      status: "active",
      graceUntil: null,
      retiredAt: null,
      secretHash: "hash-2",
    });
    expect(state.rotation).toEqual({
      id: input.rotationId,
      keyId: base.key.id,
      consumerId: base.key.consumerId,
      state: "in_progress",
      fromVersion: 1,
      toVersion: 2,
      startedAt: T0,
      gracePeriodMs: 2 * HOUR,
      graceUntil: T0 + 2 * HOUR,
      graceStartsOnFirstUse: false,
      completeWhenIdleMs: MINUTE,
      firstUsedAt: null,
      endedAt: null,
      endReason: null,
    });
    expect(result.rotations).toEqual([state.rotation]);
    expect(result.events).toEqual([
      {
        action: "rotation.started",
        details: {
          rotationId: input.rotationId,
          fromVersion: 1,
          toVersion: 2,
          gracePeriodSeconds: 7200,
          graceStartsOnFirstUse: false,
          emergency: false,
        },
      },
    ]);
    expect(live(state, T0)).toEqual([1, 2]);
    expect(live(state, T0 + 2 * HOUR - 1)).toEqual([1, 2]);
    expect(live(state, T0 + 2 * HOUR)).toEqual([2]);
  });

  it("the new version is stored active with no grace or retirement whatever the caller passed", () => {
    const base = keyState();
    const input = startInput(base, T0, {
      newVersion: { status: "revoked", graceUntil: T0, retiredAt: T0, scopes: ["a:b"] },
    });
    const { state } = ok(startRotation(base, input));
    expect(findV(state, 2)).toMatchObject({
      status: "active",
      graceUntil: null,
      retiredAt: null,
      scopes: ["a:b"],
    });
  });

  it("the grace window is capped by the old version's own expiry", () => {
    const base = keyState({ v1: { expiresAt: T0 + HOUR } });
    const { state } = ok(startRotation(base, startInput(base, T0, { gracePeriodMs: DAY })));
    expect(state.rotation?.graceUntil).toBe(T0 + HOUR);
    expect(state.rotation?.gracePeriodMs).toBe(DAY);
    expect(findV(state, 1)).toMatchObject({ status: "grace", graceUntil: T0 + HOUR });
    expect(live(state, T0 + HOUR)).toEqual([2]);
  });

  it("an old expiry later than now + grace does not change the window", () => {
    const base = keyState({ v1: { expiresAt: T0 + 30 * DAY } });
    const { state } = ok(startRotation(base, startInput(base, T0, { gracePeriodMs: DAY })));
    expect(state.rotation?.graceUntil).toBe(T0 + DAY);
    expect(findV(state, 1).graceUntil).toBe(T0 + DAY);
  });

  it("emergency (grace 0): old version revoked at once and the rotation completed", () => {
    const base = keyState();
    const input = startInput(base, T0, { gracePeriodMs: 0 });
    const result = ok(startRotation(base, input));
    const { state } = result;
    expect(state.rotation).toBeNull();
    expect(state.key.currentVersion).toBe(2);
    expect(findV(state, 1)).toMatchObject({ status: "revoked", retiredAt: T0, graceUntil: T0 });
    expect(findV(state, 2).status).toBe("active");
    expect(result.rotations).toHaveLength(1);
    expect(result.rotations[0]).toMatchObject({
      id: input.rotationId,
      state: "completed",
      endReason: "emergency",
      endedAt: T0,
      graceUntil: T0,
      gracePeriodMs: 0,
      fromVersion: 1,
      toVersion: 2,
    });
    expect(result.events.map((e) => e.action)).toEqual(["rotation.started", "rotation.completed"]);
    expect(result.events[0]?.details).toMatchObject({ emergency: true, gracePeriodSeconds: 0 });
    expect(result.events[1]?.details).toMatchObject({
      rotationId: input.rotationId,
      reason: "emergency",
    });
    expect(live(state, T0)).toEqual([2]);
    expect(nextDeadline(state)).toBeNull();
  });

  it("emergency ignores graceStartsOnFirstUse: the old version still stops at once", () => {
    const base = keyState();
    const result = ok(
      startRotation(base, startInput(base, T0, { gracePeriodMs: 0, graceStartsOnFirstUse: true })),
    );
    expect(result.rotations[0]).toMatchObject({
      graceStartsOnFirstUse: false,
      endReason: "emergency",
    });
    expect(live(result.state, T0)).toEqual([2]);
  });

  it("emergency on an old version that had already expired revokes it all the same", () => {
    const base = keyState({ v1: { expiresAt: T0 - HOUR } });
    const result = ok(startRotation(base, startInput(base, T0, { gracePeriodMs: 0 })));
    expect(findV(result.state, 1).status).toBe("revoked");
    expect(result.rotations[0]?.endReason).toBe("emergency");
  });

  it("graceStartsOnFirstUse leaves graceUntil null on rotation and old version; both verify", () => {
    const base = keyState();
    const result = ok(
      startRotation(
        base,
        startInput(base, T0, { gracePeriodMs: HOUR, graceStartsOnFirstUse: true }),
      ),
    );
    const { state } = result;
    expect(state.rotation).toMatchObject({
      state: "in_progress",
      graceUntil: null,
      graceStartsOnFirstUse: true,
      gracePeriodMs: HOUR,
    });
    expect(findV(state, 1)).toMatchObject({ status: "grace", graceUntil: null });
    expect(result.events[0]?.details).toMatchObject({ graceStartsOnFirstUse: true });
    expect(live(state, T0 + 365 * DAY)).toEqual([1, 2]);
    expect(nextDeadline(state)).toBeNull();
  });

  it("a start while a rotation is in progress is refused with rotation_in_progress", () => {
    const { state, rotation } = rotating(T0);
    const error = failed(
      startRotation(state, startInput(state, T0 + MINUTE)),
      "rotation_in_progress",
    );
    expect(error.detail).toContain(rotation.id);
  });

  it("an emergency start is refused too while a rotation is in progress", () => {
    const { state } = rotating(T0);
    failed(
      startRotation(state, startInput(state, T0 + MINUTE, { gracePeriodMs: 0 })),
      "rotation_in_progress",
    );
  });

  it("a start on a revoked key is a conflict", () => {
    const revoked = ok(revokeKey(keyState(), "leaked", T0)).state;
    failed(startRotation(revoked, startInput(revoked, T0 + MINUTE)), "conflict");
  });

  it("a start after the open rotation's grace passed by time settles it first, then starts", () => {
    const { state, rotation: first } = rotating(T0, { gracePeriodMs: HOUR });
    const input = startInput(state, T0 + 2 * HOUR);
    expect(input.newVersion.version).toBe(3);
    const result = ok(startRotation(state, input));
    expect(result.rotations.map((r) => [r.id, r.state, r.endReason, r.endedAt])).toEqual([
      [first.id, "completed", "grace_ended", T0 + HOUR],
      [input.rotationId, "in_progress", null, null],
    ]);
    expect(result.events.map((e) => e.action)).toEqual(["rotation.completed", "rotation.started"]);
    expect(findV(result.state, 1)).toMatchObject({ status: "expired", retiredAt: T0 + HOUR });
    expect(findV(result.state, 2)).toMatchObject({
      status: "grace",
      graceUntil: T0 + 2 * HOUR + DAY,
    });
    expect(findV(result.state, 3).status).toBe("active");
    expect(result.state.rotation).toMatchObject({
      id: input.rotationId,
      fromVersion: 2,
      toVersion: 3,
    });
    expect(live(result.state, T0 + 2 * HOUR)).toEqual([2, 3]);
  });

  it("a start when the old version already expired completes at once with no grace", () => {
    const base = keyState({ v1: { expiresAt: T0 - HOUR } });
    const input = startInput(base, T0, { gracePeriodMs: DAY, completeWhenIdleMs: MINUTE });
    const result = ok(startRotation(base, input));
    const { state } = result;
    expect(state.rotation).toBeNull();
    expect(state.key.currentVersion).toBe(2);
    expect(result.rotations).toEqual([
      expect.objectContaining({
        id: input.rotationId,
        state: "completed",
        endReason: "grace_ended",
        graceUntil: T0 - HOUR,
        endedAt: T0,
      }),
    ]);
    expect(result.events.map((e) => e.action)).toEqual(["rotation.started", "rotation.completed"]);
    expect(result.events[1]?.details).toMatchObject({ reason: "grace_ended" });
    expect(versionStatus(findV(state, 1), T0)).toBe("expired");
    expect(live(state, T0)).toEqual([2]);
  });

  it.each([
    ["the current number", 1],
    ["a skipped number", 3],
    ["zero", 0],
  ])("a new version numbered %s is a conflict", (_label, n) => {
    const base = keyState();
    failed(startRotation(base, startInput(base, T0, { newVersion: { version: n } })), "conflict");
  });

  it("the new version number follows the highest version, revoked ones included", () => {
    const { state, rotation } = rotating(T0);
    const rolledBack = ok(rollbackRotation(state, rotation.id, T0 + MINUTE)).state;
    expect(rolledBack.key.currentVersion).toBe(1);
    failed(
      startRotation(rolledBack, startInput(rolledBack, T0 + HOUR, { newVersion: { version: 2 } })),
      "conflict",
    );
    const again = ok(startRotation(rolledBack, startInput(rolledBack, T0 + HOUR)));
    expect(again.state.rotation).toMatchObject({ fromVersion: 1, toVersion: 3 });
  });

  it("a key whose current version is missing cannot rotate (conflict)", () => {
    const broken = keyState({ key: { currentVersion: 7 } });
    failed(startRotation(broken, startInput(broken, T0)), "conflict");
  });

  it("gracePeriodSeconds in the started event is the grace rounded to whole seconds", () => {
    const base = keyState();
    const result = ok(startRotation(base, startInput(base, T0, { gracePeriodMs: 1499 })));
    expect(result.events[0]?.details).toMatchObject({ gracePeriodSeconds: 1 });
  });
});

describe("markUsed", () => {
  it("the first use of the new version sets firstUsedAt and lastUsedAt, leaving a fixed grace", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY });
    const result = ok(markUsed(state, 2, T0 + MINUTE, T0 + MINUTE));
    expect(result.state.rotation).toMatchObject({ firstUsedAt: T0 + MINUTE, graceUntil: T0 + DAY });
    expect(findV(result.state, 2).lastUsedAt).toBe(T0 + MINUTE);
    expect(findV(result.state, 1).graceUntil).toBe(T0 + DAY);
    expect(result.rotations).toEqual([{ ...rotation, firstUsedAt: T0 + MINUTE }]);
    expect(result.events).toEqual([]);
  });

  it("with graceStartsOnFirstUse, the first use starts grace at use + grace on rotation and old version", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR, graceStartsOnFirstUse: true });
    const at = T0 + 3 * DAY;
    const result = ok(markUsed(state, 2, at, at));
    expect(result.state.rotation).toMatchObject({ firstUsedAt: at, graceUntil: at + HOUR });
    expect(findV(result.state, 1)).toMatchObject({ status: "grace", graceUntil: at + HOUR });
    expect(result.events).toEqual([
      {
        action: "rotation.grace_started",
        details: { rotationId: rotation.id, graceUntil: at + HOUR },
      },
    ]);
    expect(result.rotations).toEqual([result.state.rotation]);
    expect(nextDeadline(result.state)).toBe(at + HOUR);
    expect(live(result.state, at + HOUR - 1)).toEqual([1, 2]);
    expect(live(result.state, at + HOUR)).toEqual([2]);
  });

  it("a first-use grace is capped by the old version's own expiry", () => {
    const { state } = rotating(T0, {
      gracePeriodMs: DAY,
      graceStartsOnFirstUse: true,
      v1: { expiresAt: T0 + 2 * HOUR },
    });
    const result = ok(markUsed(state, 2, T0 + HOUR, T0 + HOUR));
    expect(result.state.rotation?.graceUntil).toBe(T0 + 2 * HOUR);
    expect(findV(result.state, 1).graceUntil).toBe(T0 + 2 * HOUR);
    expect(result.events[0]?.details).toMatchObject({ graceUntil: T0 + 2 * HOUR });
  });

  it("a second use of the new version moves neither firstUsedAt nor graceUntil", () => {
    const { state } = rotating(T0, { gracePeriodMs: HOUR, graceStartsOnFirstUse: true });
    const first = ok(markUsed(state, 2, T0 + MINUTE, T0 + MINUTE)).state;
    const second = ok(markUsed(first, 2, T0 + 30 * MINUTE, T0 + 30 * MINUTE));
    expect(second.state.rotation).toMatchObject({
      firstUsedAt: T0 + MINUTE,
      graceUntil: T0 + MINUTE + HOUR,
    });
    expect(findV(second.state, 1).graceUntil).toBe(T0 + MINUTE + HOUR);
    expect(findV(second.state, 2).lastUsedAt).toBe(T0 + 30 * MINUTE);
    expect(second.events).toEqual([]);
    expect(second.rotations).toEqual([]);
  });

  it("a use of the old version updates its lastUsedAt only", () => {
    const { state } = rotating(T0, { gracePeriodMs: HOUR, graceStartsOnFirstUse: true });
    const result = ok(markUsed(state, 1, T0 + MINUTE, T0 + MINUTE));
    expect(findV(result.state, 1)).toEqual({ ...findV(state, 1), lastUsedAt: T0 + MINUTE });
    expect(result.state.rotation).toEqual(state.rotation);
    expect(result.state.key).toEqual(state.key);
    expect(result.rotations).toEqual([]);
    expect(result.events).toEqual([]);
  });

  it("lastUsedAt never moves backwards on a late, out-of-order report", () => {
    const state = ok(markUsed(keyState(), 1, T0 + HOUR, T0 + HOUR)).state;
    const late = ok(markUsed(state, 1, T0 + MINUTE, T0 + 2 * HOUR)).state;
    expect(findV(late, 1).lastUsedAt).toBe(T0 + HOUR);
  });

  it("a use with no rotation open records lastUsedAt and nothing else", () => {
    const result = ok(markUsed(keyState(), 1, T0, T0));
    expect(findV(result.state, 1).lastUsedAt).toBe(T0);
    expect(result.state.rotation).toBeNull();
    expect(result.rotations).toEqual([]);
    expect(result.events).toEqual([]);
  });

  it("a use of an unknown version changes nothing", () => {
    const { state } = rotating(T0);
    const result = ok(markUsed(state, 9, T0 + MINUTE, T0 + MINUTE));
    expect(result.state).toEqual(state);
    expect(result.events).toEqual([]);
    expect(result.rotations).toEqual([]);
  });

  it("settles first: a use after grace ended closes the rotation, which keeps no first use", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR });
    const result = ok(markUsed(state, 2, T0 + 2 * HOUR, T0 + 2 * HOUR));
    expect(result.state.rotation).toBeNull();
    expect(result.rotations).toEqual([
      expect.objectContaining({
        id: rotation.id,
        endReason: "grace_ended",
        endedAt: T0 + HOUR,
        firstUsedAt: null,
      }),
    ]);
    expect(findV(result.state, 2).lastUsedAt).toBe(T0 + 2 * HOUR);
  });

  // The coordinator reports usage in batches, so `at < now` is normal. A use of the old
  // version at 900 ms, reported at 1100 ms, of a rotation with completeWhenIdleMs 1000 whose
  // new version was already used must count from 900 ms: markUsed settles at `at`, applies
  // the use, then settles at `now`.
  it("a late-reported use of the old version keeps an idle rotation open", () => {
    const { state } = rotating(T0, { gracePeriodMs: DAY, completeWhenIdleMs: 1000 });
    const used = ok(markUsed(state, 2, T0 + 10, T0 + 10)).state;
    const result = ok(markUsed(used, 1, T0 + 900, T0 + 1100));
    expect(result.state.rotation).not.toBeNull();
    expect(result.events).toEqual([]);
    expect(idleDeadline(result.state)).toBe(T0 + 1900);
  });

  // A late-reported first use with graceStartsOnFirstUse may start a window that is already
  // over at `now`; like every other transition, markUsed returns a state settled at `now`.
  it("a late-reported first use whose grace already ended returns a settled state", () => {
    const { state } = rotating(T0, { gracePeriodMs: HOUR, graceStartsOnFirstUse: true });
    const at = T0 + MINUTE;
    const result = ok(markUsed(state, 2, at, at + 2 * HOUR));
    expect(liveVersions(result.state, at + 2 * HOUR).map((v) => v.version)).toEqual([2]);
    expect(result.state.rotation).toBeNull();
    expect(result.rotations).toEqual([
      expect.objectContaining({ endReason: "grace_ended", endedAt: at + HOUR, firstUsedAt: at }),
    ]);
  });

  it("a late-reported first use measures its grace from the use: the window ends at use + grace", () => {
    const { state } = rotating(T0, { gracePeriodMs: HOUR, graceStartsOnFirstUse: true });
    const at = T0 + MINUTE;
    const now = at + 2 * HOUR;
    // holds whether markUsed itself or the next settle closes the rotation
    const used = ok(markUsed(state, 2, at, now));
    const settled = ok(settle(used.state, now));
    const closed = [...used.rotations, ...settled.rotations].filter((r) => r.endedAt !== null);
    expect(closed).toEqual([
      expect.objectContaining({ endReason: "grace_ended", endedAt: at + HOUR, firstUsedAt: at }),
    ]);
    expect(settled.state.rotation).toBeNull();
    expect(live(settled.state, now)).toEqual([2]);
  });
});

describe("completeRotation", () => {
  it("retires the old version now: expired, rotation completed with reason completed", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY });
    const now = T0 + HOUR;
    const result = ok(completeRotation(state, rotation.id, now));
    expect(result.state.rotation).toBeNull();
    expect(findV(result.state, 1)).toMatchObject({
      status: "expired",
      graceUntil: now,
      retiredAt: now,
    });
    expect(findV(result.state, 2).status).toBe("active");
    expect(result.state.key.currentVersion).toBe(2);
    expect(result.rotations).toEqual([
      { ...rotation, state: "completed", endedAt: now, endReason: "completed" },
    ]);
    expect(result.events).toEqual([
      {
        action: "rotation.completed",
        details: { rotationId: rotation.id, fromVersion: 1, toVersion: 2, reason: "completed" },
      },
    ]);
    expect(live(result.state, now)).toEqual([2]);
    expect(nextDeadline(result.state)).toBeNull();
  });

  it("completing a first-use rotation whose grace never started sets the old graceUntil to now", () => {
    const { state, rotation } = rotating(T0, { graceStartsOnFirstUse: true });
    const result = ok(completeRotation(state, rotation.id, T0 + MINUTE));
    expect(findV(result.state, 1)).toMatchObject({ status: "expired", graceUntil: T0 + MINUTE });
  });

  it("a wrong rotation id is a conflict", () => {
    const { state } = rotating(T0);
    failed(completeRotation(state, "rot_other", T0 + MINUTE), "conflict");
  });

  it("with no open rotation, complete is a conflict", () => {
    failed(completeRotation(keyState(), "rot_none", T0), "conflict");
  });

  it("a rotation already completed by time cannot be completed again (conflict)", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR });
    failed(completeRotation(state, rotation.id, T0 + HOUR), "conflict");
    const done = ok(completeRotation(state, rotation.id, T0 + MINUTE)).state;
    failed(completeRotation(done, rotation.id, T0 + 2 * MINUTE), "conflict");
  });
});

describe("rollbackRotation", () => {
  it("revokes the new version and restores the old one to active as the current version", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY });
    const now = T0 + HOUR;
    const withUse = ok(markUsed(state, 1, T0 + MINUTE, T0 + MINUTE)).state;
    const result = ok(rollbackRotation(withUse, rotation.id, now));
    expect(result.state.rotation).toBeNull();
    expect(result.state.key).toMatchObject({ currentVersion: 1, updatedAt: now });
    expect(findV(result.state, 1)).toMatchObject({
      status: "active",
      graceUntil: null,
      retiredAt: null,
      lastUsedAt: T0 + MINUTE,
    });
    expect(findV(result.state, 2)).toMatchObject({ status: "revoked", retiredAt: now });
    expect(result.rotations).toEqual([
      { ...rotation, state: "rolled_back", endedAt: now, endReason: "rolled_back" },
    ]);
    expect(result.events).toEqual([
      {
        action: "rotation.rolled_back",
        details: { rotationId: rotation.id, restoredVersion: 1, revokedVersion: 2 },
      },
    ]);
    expect(live(result.state, now)).toEqual([1]);
    expect(live(result.state, T0 + 365 * DAY)).toEqual([1]);
  });

  it("a restored old version keeps its own expiry", () => {
    const { state, rotation } = rotating(T0, { v1: { expiresAt: T0 + 2 * DAY } });
    const result = ok(rollbackRotation(state, rotation.id, T0 + HOUR));
    expect(findV(result.state, 1)).toMatchObject({ status: "active", expiresAt: T0 + 2 * DAY });
    expect(live(result.state, T0 + 2 * DAY)).toEqual([]);
  });

  it("after the grace passed by time, rollback is a conflict because settle completed it", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR });
    failed(rollbackRotation(state, rotation.id, T0 + HOUR), "conflict");
    expect(ok(rollbackRotation(state, rotation.id, T0 + HOUR - 1)).state.key.currentVersion).toBe(
      1,
    );
  });

  it("after the old version's own expiry, rollback is a conflict", () => {
    const { state, rotation } = rotating(T0, {
      graceStartsOnFirstUse: true,
      v1: { expiresAt: T0 + HOUR },
    });
    failed(rollbackRotation(state, rotation.id, T0 + HOUR), "conflict");
  });

  it("a wrong rotation id or no open rotation is a conflict", () => {
    const { state } = rotating(T0);
    failed(rollbackRotation(state, "rot_other", T0 + MINUTE), "conflict");
    failed(rollbackRotation(keyState(), "rot_none", T0), "conflict");
  });

  it("a rolled-back rotation cannot be rolled back or completed again", () => {
    const { state, rotation } = rotating(T0);
    const back = ok(rollbackRotation(state, rotation.id, T0 + MINUTE)).state;
    failed(rollbackRotation(back, rotation.id, T0 + 2 * MINUTE), "conflict");
    failed(completeRotation(back, rotation.id, T0 + 2 * MINUTE), "conflict");
  });
});

describe("extendRotation", () => {
  const MAX = 30 * DAY;

  it("adds the extra time to graceUntil on the rotation and the old version", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY });
    const result = ok(extendRotation(state, rotation.id, 2 * HOUR, MAX, T0 + HOUR));
    expect(result.state.rotation).toMatchObject({
      graceUntil: T0 + DAY + 2 * HOUR,
      gracePeriodMs: DAY + 2 * HOUR,
      state: "in_progress",
    });
    expect(findV(result.state, 1)).toMatchObject({
      status: "grace",
      graceUntil: T0 + DAY + 2 * HOUR,
    });
    expect(result.rotations).toEqual([result.state.rotation]);
    expect(result.events).toEqual([
      {
        action: "rotation.extended",
        details: {
          rotationId: rotation.id,
          graceUntil: T0 + DAY + 2 * HOUR,
          gracePeriodSeconds: (DAY + 2 * HOUR) / 1000,
        },
      },
    ]);
    expect(live(result.state, T0 + DAY)).toEqual([1, 2]);
    expect(nextDeadline(result.state)).toBe(T0 + DAY + 2 * HOUR);
  });

  it("two extensions add up", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY });
    const once = ok(extendRotation(state, rotation.id, HOUR, MAX, T0)).state;
    const twice = ok(extendRotation(once, rotation.id, HOUR, MAX, T0)).state;
    expect(twice.rotation).toMatchObject({
      graceUntil: T0 + DAY + 2 * HOUR,
      gracePeriodMs: DAY + 2 * HOUR,
    });
  });

  it("a first-use grace not yet started only lengthens gracePeriodMs; the first use then applies it", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR, graceStartsOnFirstUse: true });
    const result = ok(extendRotation(state, rotation.id, HOUR, MAX, T0 + MINUTE));
    expect(result.state.rotation).toMatchObject({ graceUntil: null, gracePeriodMs: 2 * HOUR });
    expect(findV(result.state, 1).graceUntil).toBeNull();
    expect(result.events[0]?.details).toMatchObject({ graceUntil: null, gracePeriodSeconds: 7200 });
    const used = ok(markUsed(result.state, 2, T0 + DAY, T0 + DAY)).state;
    expect(used.rotation?.graceUntil).toBe(T0 + DAY + 2 * HOUR);
  });

  it("an extension taking the total grace over maxGraceMs is validation_failed; exactly max is fine", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY });
    failed(extendRotation(state, rotation.id, DAY + 1, 2 * DAY, T0), "validation_failed");
    const atMax = ok(extendRotation(state, rotation.id, DAY, 2 * DAY, T0));
    expect(atMax.state.rotation?.graceUntil).toBe(T0 + 2 * DAY);
  });

  it("an extension past the old version's expiry is validation_failed; up to it is fine", () => {
    const { state, rotation } = rotating(T0, {
      gracePeriodMs: DAY,
      v1: { expiresAt: T0 + DAY + HOUR },
    });
    const refused = failed(
      extendRotation(state, rotation.id, HOUR + 1, MAX, T0),
      "validation_failed",
    );
    expect(refused.detail).toContain(new Date(T0 + DAY + HOUR).toISOString());
    const upTo = ok(extendRotation(state, rotation.id, HOUR, MAX, T0));
    expect(upTo.state.rotation?.graceUntil).toBe(T0 + DAY + HOUR);
  });

  it("a window already capped at the old version's expiry cannot be extended", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY, v1: { expiresAt: T0 + HOUR } });
    failed(extendRotation(state, rotation.id, SECOND, MAX, T0), "validation_failed");
  });

  it.each([0, -1, -HOUR])("a non-positive extension (%d ms) is validation_failed", (extra) => {
    const { state, rotation } = rotating(T0);
    failed(extendRotation(state, rotation.id, extra, MAX, T0), "validation_failed");
  });

  it("a refused extension leaves the input state as it was", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY });
    const before = structuredClone(state);
    failed(extendRotation(state, rotation.id, MAX, MAX, T0), "validation_failed");
    expect(state).toEqual(before);
  });

  it("a wrong rotation id, no open rotation, or a grace already over is a conflict", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR });
    failed(extendRotation(state, "rot_other", HOUR, MAX, T0), "conflict");
    failed(extendRotation(keyState(), "rot_none", HOUR, MAX, T0), "conflict");
    failed(extendRotation(state, rotation.id, HOUR, MAX, T0 + HOUR), "conflict");
  });
});

describe("revokeKey", () => {
  it("revokes every version and the key, recording reason and time", () => {
    const base = keyState({
      versions: [version(1, { status: "expired", retiredAt: T0 - DAY }), version(2)],
    });
    const now = T0 + HOUR;
    const result = ok(revokeKey(base, "leaked", now));
    expect(result.state.key).toMatchObject({
      status: "revoked",
      revokedAt: now,
      revokeReason: "leaked",
      updatedAt: now,
      currentVersion: 2,
    });
    expect(findV(result.state, 1)).toMatchObject({ status: "revoked", retiredAt: T0 - DAY });
    expect(findV(result.state, 2)).toMatchObject({ status: "revoked", retiredAt: now });
    expect(result.rotations).toEqual([]);
    expect(result.events).toEqual([{ action: "key.revoked", details: { reason: "leaked" } }]);
    expect(live(result.state, now)).toEqual([]);
  });

  it("closes an open rotation with endReason revoked and nothing verifies afterwards", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY });
    const now = T0 + HOUR;
    const result = ok(revokeKey(state, null, now));
    expect(result.state.rotation).toBeNull();
    expect(result.rotations).toEqual([
      { ...rotation, state: "completed", endedAt: now, endReason: "revoked" },
    ]);
    expect(result.state.versions.map((v) => v.status)).toEqual(["revoked", "revoked"]);
    expect(result.state.key.revokeReason).toBeNull();
    expect(live(result.state, now)).toEqual([]);
    expect(nextDeadline(result.state)).toBeNull();
  });

  it("is idempotent: a second revocation changes nothing and emits no events", () => {
    const once = ok(revokeKey(keyState(), "first", T0)).state;
    const twice = ok(revokeKey(once, "second", T0 + DAY));
    expect(twice.events).toEqual([]);
    expect(twice.rotations).toEqual([]);
    expect(twice.state).toEqual(once);
  });

  it("a revocation after grace passed by time reports the rotation as grace_ended, not revoked", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR });
    const result = ok(revokeKey(state, null, T0 + 2 * HOUR));
    expect(result.rotations).toEqual([
      expect.objectContaining({ id: rotation.id, endReason: "grace_ended", endedAt: T0 + HOUR }),
    ]);
    expect(result.events.map((e) => e.action)).toEqual(["rotation.completed", "key.revoked"]);
    expect(findV(result.state, 1)).toMatchObject({ status: "revoked", retiredAt: T0 + HOUR });
  });

  it("a revoked key can be marked used without coming back to life", () => {
    const revoked = ok(revokeKey(keyState(), null, T0)).state;
    const used = ok(markUsed(revoked, 1, T0 + 1, T0 + 1)).state;
    expect(used.key.status).toBe("revoked");
    expect(live(used, T0 + 1)).toEqual([]);
  });
});

describe("settle", () => {
  it("with nothing to do returns an equal copy and no events", () => {
    const base = keyState();
    const result = ok(settle(base, T0 + DAY));
    expect(result.state).toEqual(base);
    expect(result.state).not.toBe(base);
    expect(result.events).toEqual([]);
    expect(result.rotations).toEqual([]);
  });

  it("an open rotation before any deadline is left alone", () => {
    const { state } = rotating(T0, { gracePeriodMs: HOUR, completeWhenIdleMs: MINUTE });
    const result = ok(settle(state, T0 + HOUR - 1));
    expect(result.state).toEqual(state);
    expect(result.events).toEqual([]);
  });

  it("grace ends at graceUntil: endedAt is graceUntil even when settled much later", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR });
    for (const now of [T0 + HOUR, T0 + 30 * DAY]) {
      const result = ok(settle(state, now));
      expect(result.state.rotation).toBeNull();
      expect(result.rotations).toEqual([
        { ...rotation, state: "completed", endedAt: T0 + HOUR, endReason: "grace_ended" },
      ]);
      expect(findV(result.state, 1)).toMatchObject({
        status: "expired",
        graceUntil: T0 + HOUR,
        retiredAt: T0 + HOUR,
      });
      expect(result.events).toEqual([
        {
          action: "rotation.completed",
          details: { rotationId: rotation.id, fromVersion: 1, toVersion: 2, reason: "grace_ended" },
        },
      ]);
    }
  });

  it("at exactly graceUntil, an old version expiring later ends at graceUntil, not its expiry", () => {
    const { state } = rotating(T0, { gracePeriodMs: HOUR, v1: { expiresAt: T0 + DAY } });
    const result = ok(settle(state, T0 + HOUR));
    expect(result.rotations[0]).toMatchObject({ endReason: "grace_ended", endedAt: T0 + HOUR });
    expect(findV(result.state, 1)).toMatchObject({ retiredAt: T0 + HOUR, graceUntil: T0 + HOUR });
  });

  it("the old version's own expiry ends a first-use rotation that never started its grace", () => {
    const { state, rotation } = rotating(T0, {
      graceStartsOnFirstUse: true,
      v1: { expiresAt: T0 + 3 * HOUR },
    });
    expect(ok(settle(state, T0 + 3 * HOUR - 1)).events).toEqual([]);
    const result = ok(settle(state, T0 + 5 * HOUR));
    expect(result.rotations).toEqual([
      expect.objectContaining({
        id: rotation.id,
        endReason: "grace_ended",
        endedAt: T0 + 3 * HOUR,
        graceUntil: null,
      }),
    ]);
    expect(findV(result.state, 1)).toMatchObject({
      status: "expired",
      retiredAt: T0 + 3 * HOUR,
      graceUntil: T0 + 3 * HOUR,
    });
  });

  it("completeWhenIdle never fires before the new version was first used", () => {
    const { state } = rotating(T0, { gracePeriodMs: 30 * DAY, completeWhenIdleMs: MINUTE });
    expect(idleDeadline(state)).toBeNull();
    const result = ok(settle(state, T0 + 10 * DAY));
    expect(result.state.rotation).not.toBeNull();
    expect(result.events).toEqual([]);
  });

  it("completeWhenIdle fires once the new version was used and the old idle since the start, ending at the idle deadline", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: DAY, completeWhenIdleMs: HOUR });
    const used = ok(markUsed(state, 2, T0 + MINUTE, T0 + MINUTE)).state;
    expect(idleDeadline(used)).toBe(T0 + HOUR);
    expect(ok(settle(used, T0 + HOUR - 1)).events).toEqual([]);
    const now = T0 + HOUR + 5 * MINUTE;
    const result = ok(settle(used, now));
    expect(result.state.rotation).toBeNull();
    expect(result.rotations).toEqual([
      expect.objectContaining({
        id: rotation.id,
        state: "completed",
        endReason: "idle",
        endedAt: T0 + HOUR,
      }),
    ]);
    expect(findV(result.state, 1)).toMatchObject({
      status: "expired",
      retiredAt: T0 + HOUR,
      graceUntil: T0 + HOUR,
    });
    expect(result.events[0]?.details).toMatchObject({ reason: "idle" });
    expect(live(result.state, now)).toEqual([2]);
  });

  it("idleness is measured from the old version's last use when it is after the start", () => {
    const { state } = rotating(T0, { gracePeriodMs: DAY, completeWhenIdleMs: HOUR });
    const oldUse = ok(markUsed(state, 1, T0 + 2 * HOUR, T0 + 2 * HOUR)).state;
    const used = ok(markUsed(oldUse, 2, T0 + 2 * HOUR, T0 + 2 * HOUR)).state;
    expect(idleDeadline(used)).toBe(T0 + 3 * HOUR);
    expect(ok(settle(used, T0 + 3 * HOUR - 1)).events).toEqual([]);
    expect(ok(settle(used, T0 + 3 * HOUR)).rotations[0]?.endReason).toBe("idle");
  });

  it("an old-version use before the rotation started counts from the start instead", () => {
    const { state } = rotating(T0, {
      gracePeriodMs: DAY,
      completeWhenIdleMs: HOUR,
      v1: { lastUsedAt: T0 - 10 * DAY },
    });
    const used = ok(markUsed(state, 2, T0 + 1, T0 + 1)).state;
    expect(idleDeadline(used)).toBe(T0 + HOUR);
  });

  it("a busy old version keeps an idle rule from firing; grace still ends the rotation", () => {
    const { state } = rotating(T0, { gracePeriodMs: 3 * HOUR, completeWhenIdleMs: HOUR });
    let s = ok(markUsed(state, 2, T0 + 1, T0 + 1)).state;
    for (let t = T0 + 30 * MINUTE; t < T0 + 3 * HOUR; t += 30 * MINUTE) {
      const step = ok(markUsed(s, 1, t, t));
      expect(step.events).toEqual([]);
      s = step.state;
    }
    expect(s.rotation).not.toBeNull();
    const ended = ok(settle(s, T0 + 3 * HOUR));
    expect(ended.rotations[0]).toMatchObject({ endReason: "grace_ended", endedAt: T0 + 3 * HOUR });
  });

  it("settling twice at the same instant changes nothing the second time", () => {
    const { state } = rotating(T0, { gracePeriodMs: HOUR });
    const once = ok(settle(state, T0 + 2 * HOUR)).state;
    const twice = ok(settle(once, T0 + 2 * HOUR));
    expect(twice.events).toEqual([]);
    expect(twice.rotations).toEqual([]);
    expect(twice.state).toEqual(once);
  });
});

describe("nextDeadline and idleDeadline", () => {
  it("are null with no rotation open", () => {
    expect(nextDeadline(keyState({ v1: { expiresAt: T0 + DAY } }))).toBeNull();
    expect(idleDeadline(keyState())).toBeNull();
  });

  it("nextDeadline is graceUntil for a fixed window", () => {
    const { state } = rotating(T0, { gracePeriodMs: HOUR });
    expect(nextDeadline(state)).toBe(T0 + HOUR);
  });

  it("nextDeadline is the old version's expiry while a first-use grace waits", () => {
    const { state } = rotating(T0, { graceStartsOnFirstUse: true, v1: { expiresAt: T0 + DAY } });
    expect(nextDeadline(state)).toBe(T0 + DAY);
  });

  it("nextDeadline is null while a first-use grace waits with no expiry and no idle rule", () => {
    const { state } = rotating(T0, { graceStartsOnFirstUse: true, completeWhenIdleMs: HOUR });
    expect(nextDeadline(state)).toBeNull();
  });

  it("nextDeadline is the earlier of grace end and idle deadline", () => {
    const { state } = rotating(T0, { gracePeriodMs: DAY, completeWhenIdleMs: HOUR });
    const used = ok(markUsed(state, 2, T0 + 1, T0 + 1)).state;
    expect(nextDeadline(used)).toBe(T0 + HOUR);
    const { state: longIdle } = rotating(T0, { gracePeriodMs: HOUR, completeWhenIdleMs: DAY });
    const used2 = ok(markUsed(longIdle, 2, T0 + 1, T0 + 1)).state;
    expect(idleDeadline(used2)).toBe(T0 + DAY);
    expect(nextDeadline(used2)).toBe(T0 + HOUR);
  });

  it("idleDeadline is null without completeWhenIdleMs, even after first use", () => {
    const { state } = rotating(T0);
    const used = ok(markUsed(state, 2, T0 + 1, T0 + 1)).state;
    expect(idleDeadline(used)).toBeNull();
  });

  it.each([
    ["fixed grace", { gracePeriodMs: HOUR }, false],
    ["grace capped by expiry", { gracePeriodMs: DAY, v1: { expiresAt: T0 + 2 * HOUR } }, false],
    [
      "first use waiting, old expiry",
      { graceStartsOnFirstUse: true, v1: { expiresAt: T0 + DAY } },
      false,
    ],
    ["first-use grace started", { graceStartsOnFirstUse: true, gracePeriodMs: HOUR }, true],
    ["idle rule", { gracePeriodMs: DAY, completeWhenIdleMs: 2 * HOUR }, true],
  ] as const)(
    "settle at nextDeadline closes the rotation and one ms before does nothing (%s)",
    (_label, options, useNew) => {
      const started = rotating(T0, options).state;
      const state = useNew ? ok(markUsed(started, 2, T0 + MINUTE, T0 + MINUTE)).state : started;
      const deadline = nextDeadline(state);
      expect(deadline).not.toBeNull();
      expect(ok(settle(state, deadline! - 1)).events).toEqual([]);
      const closed = ok(settle(state, deadline!));
      expect(closed.state.rotation).toBeNull();
      expect(closed.rotations).toHaveLength(1);
    },
  );
});

describe("liveVersions", () => {
  it("follows each state: one before, two during, one after, none once revoked", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR });
    expect(live(keyState(), T0)).toEqual([1]);
    expect(live(state, T0)).toEqual([1, 2]);
    expect(live(ok(settle(state, T0 + HOUR)).state, T0 + HOUR)).toEqual([2]);
    expect(live(ok(completeRotation(state, rotation.id, T0 + 1)).state, T0 + 1)).toEqual([2]);
    expect(live(ok(rollbackRotation(state, rotation.id, T0 + 1)).state, T0 + 1)).toEqual([1]);
    expect(live(ok(revokeKey(state, null, T0 + 1)).state, T0 + 1)).toEqual([]);
  });

  it("never more than two verify across back-to-back rotations", () => {
    let state = keyState();
    let now = T0;
    for (let i = 0; i < 6; i += 1) {
      state = ok(startRotation(state, startInput(state, now, { gracePeriodMs: HOUR }))).state;
      expect(liveVersions(state, now).length).toBeLessThanOrEqual(2);
      now += HOUR;
    }
    expect(live(state, now - 1)).toEqual([6, 7]);
    expect(state.versions).toHaveLength(7);
  });
});

describe("transitions never mutate their input", () => {
  const cases: [string, (s: KeyState, id: string) => Transition][] = [
    ["settle", (s) => settle(s, T0 + 2 * DAY)],
    ["startRotation (settling first)", (s) => startRotation(s, startInput(s, T0 + 2 * DAY))],
    ["startRotation refused", (s) => startRotation(s, startInput(s, T0 + MINUTE))],
    ["markUsed new", (s) => markUsed(s, 2, T0 + MINUTE, T0 + MINUTE)],
    ["markUsed old", (s) => markUsed(s, 1, T0 + MINUTE, T0 + MINUTE)],
    ["completeRotation", (s, id) => completeRotation(s, id, T0 + MINUTE)],
    ["rollbackRotation", (s, id) => rollbackRotation(s, id, T0 + MINUTE)],
    ["extendRotation", (s, id) => extendRotation(s, id, HOUR, 30 * DAY, T0 + MINUTE)],
    ["revokeKey", (s) => revokeKey(s, "x", T0 + MINUTE)],
  ];

  it.each(cases)("%s works on a deep-frozen state and leaves it equal", (_label, run) => {
    const { state, rotation } = rotating(T0, {
      gracePeriodMs: DAY,
      graceStartsOnFirstUse: true,
      completeWhenIdleMs: HOUR,
    });
    const before = structuredClone(state);
    deepFreeze(state);
    run(state, rotation.id);
    expect(state).toEqual(before);
  });

  it("startRotation does not mutate the newVersion it was given", () => {
    const base = deepFreeze(keyState());
    const input = deepFreeze(startInput(base, T0, { newVersion: { status: "grace" } }));
    const result = ok(startRotation(base, input));
    expect(input.newVersion.status).toBe("grace");
    expect(findV(result.state, 2).status).toBe("active");
  });
});

// ---- properties -----------------------------------------------------------------------------

type Op =
  | { kind: "advance"; ms: number }
  | {
      kind: "start";
      graceMs: number;
      firstUse: boolean;
      idleMs: number | null;
      newExpiresInMs: number | null;
      bump: number;
    }
  | { kind: "use"; pick: number }
  | { kind: "complete"; bogus: boolean }
  | { kind: "rollback"; bogus: boolean }
  | { kind: "extend"; extraMs: number; maxGraceMs: number; bogus: boolean }
  | { kind: "revoke" }
  | { kind: "settle" };

/** true about once in `n` draws */
const rarely = (n: number) =>
  fc.oneof(
    { weight: n - 1, arbitrary: fc.constant(false) },
    { weight: 1, arbitrary: fc.constant(true) },
  );

/**
 * Weighted so that rotations are usually open long enough for uses, extensions, rollbacks and
 * completions to meet them; revocation (which ends every interesting path) is rare.
 */
const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.record({
      kind: fc.constant("advance" as const),
      ms: fc.oneof(
        { weight: 3, arbitrary: fc.integer({ min: 0, max: 10 * SECOND }) },
        { weight: 4, arbitrary: fc.integer({ min: 0, max: 6 * HOUR }) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: 3 * DAY }) },
      ),
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant("start" as const),
      graceMs: fc.oneof(
        { weight: 1, arbitrary: fc.constant(0) },
        { weight: 6, arbitrary: fc.integer({ min: 1, max: 2 * DAY }) },
      ),
      firstUse: fc.boolean(),
      idleMs: fc.option(fc.integer({ min: 1, max: 12 * HOUR }), { nil: null }),
      newExpiresInMs: fc.option(fc.integer({ min: 1, max: 5 * DAY }), { nil: null }),
      // mostly the right number, sometimes a wrong one
      bump: fc.oneof(
        { weight: 8, arbitrary: fc.constant(0) },
        { weight: 1, arbitrary: fc.integer({ min: -2, max: 2 }) },
      ),
    }),
  },
  { weight: 16, arbitrary: fc.record({ kind: fc.constant("use" as const), pick: fc.nat(20) }) },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("complete" as const), bogus: rarely(6) }),
  },
  {
    weight: 4,
    arbitrary: fc.record({ kind: fc.constant("rollback" as const), bogus: rarely(6) }),
  },
  {
    weight: 6,
    arbitrary: fc.record({
      kind: fc.constant("extend" as const),
      extraMs: fc.oneof(
        { weight: 1, arbitrary: fc.integer({ min: -HOUR, max: 0 }) },
        { weight: 6, arbitrary: fc.integer({ min: 1, max: 2 * DAY }) },
      ),
      maxGraceMs: fc.integer({ min: HOUR, max: 10 * DAY }),
      bogus: rarely(6),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ kind: "revoke" as const }) },
  { weight: 3, arbitrary: fc.constant({ kind: "settle" as const }) },
);

/** Operation sequences long enough to chain several rotations. */
const opsArb = (maxLength: number) => fc.array(opArb, { minLength: 1, maxLength, size: "max" });

const initialArb = fc.record({
  v1ExpiresInMs: fc.option(fc.integer({ min: 1, max: 5 * DAY }), { nil: null }),
});

let propertyRotationCounter = 0;

function apply(state: KeyState, op: Op, now: number): Transition | null {
  const openId = state.rotation?.id ?? "rot_unknown";
  switch (op.kind) {
    case "advance":
      return null;
    case "start": {
      const n = Math.max(...state.versions.map((v) => v.version)) + 1 + op.bump;
      propertyRotationCounter += 1;
      return startRotation(state, {
        rotationId: `prop_${propertyRotationCounter}`,
        newVersion: version(n, {
          createdAt: now,
          expiresAt: op.newExpiresInMs === null ? null : now + op.newExpiresInMs,
        }),
        gracePeriodMs: op.graceMs,
        graceStartsOnFirstUse: op.firstUse,
        completeWhenIdleMs: op.idleMs,
        now,
      });
    }
    case "use": {
      const n = (op.pick % (state.versions.length + 1)) + 1;
      return markUsed(state, n, now, now);
    }
    case "complete":
      return completeRotation(state, op.bogus ? "rot_bogus" : openId, now);
    case "rollback":
      return rollbackRotation(state, op.bogus ? "rot_bogus" : openId, now);
    case "extend":
      return extendRotation(state, op.bogus ? "rot_bogus" : openId, op.extraMs, op.maxGraceMs, now);
    case "revoke":
      return revokeKey(state, "prop", now);
    case "settle":
      return settle(state, now);
  }
}

function maxNonRevoked(state: KeyState): number {
  return Math.max(...state.versions.filter((v) => v.status !== "revoked").map((v) => v.version));
}

/** What holds of every state a transition returns at `now`. */
function checkInvariants(state: KeyState, now: number): void {
  const live = liveVersions(state, now);
  expect(live.length).toBeLessThanOrEqual(2);

  // version numbers are 1..n, each once
  expect(state.versions.map((v) => v.version)).toEqual(state.versions.map((_, i) => i + 1));

  const current = findVersion(state, state.key.currentVersion);
  expect(current).toBeDefined();

  if (state.key.status === "revoked") {
    expect(live).toEqual([]);
    expect(state.rotation).toBeNull();
    expect(state.versions.every((v) => v.status === "revoked")).toBe(true);
    expect(state.key.revokedAt).not.toBeNull();
    return;
  }

  // the current version is the newest one not revoked, and it is active
  expect(state.key.currentVersion).toBe(maxNonRevoked(state));
  expect(current!.status).toBe("active");
  if (current!.expiresAt === null || current!.expiresAt > now) {
    expect(verifiesAt(current!, now)).toBe(true);
  }

  // only the current version and an open rotation's old version may verify
  const allowed = new Set([state.key.currentVersion, state.rotation?.fromVersion]);
  for (const v of live) expect(allowed.has(v.version)).toBe(true);
  // no stored status other than the current one is `active`, unless already expired by time
  for (const v of state.versions) {
    if (v.version !== state.key.currentVersion && v.status === "active") {
      expect(v.expiresAt !== null && v.expiresAt <= now).toBe(true);
    }
  }

  const rotation = state.rotation;
  if (rotation) {
    expect(rotation.state).toBe("in_progress");
    expect(rotation.endedAt).toBeNull();
    expect(rotation.endReason).toBeNull();
    expect(rotation.toVersion).toBe(state.key.currentVersion);
    expect(rotation.fromVersion).toBeLessThan(rotation.toVersion);
    const from = findVersion(state, rotation.fromVersion)!;
    expect(from.status).toBe("grace");
    expect(verifiesAt(from, now)).toBe(true);
    expect(from.graceUntil).toBe(rotation.graceUntil);
    expect(rotation.gracePeriodMs).toBeGreaterThan(0);
    if (rotation.graceUntil !== null) {
      expect(rotation.graceUntil).toBeGreaterThan(now);
      if (from.expiresAt !== null) expect(rotation.graceUntil).toBeLessThanOrEqual(from.expiresAt);
    } else {
      expect(rotation.graceStartsOnFirstUse).toBe(true);
      expect(rotation.firstUsedAt).toBeNull();
    }
    // nothing changes before the next deadline; something changes at it
    const deadline = nextDeadline(state);
    if (deadline !== null && deadline > now) {
      expect(ok(settle(state, deadline - 1)).events).toEqual([]);
      expect(ok(settle(state, deadline)).state.rotation).toBeNull();
    }
  } else {
    expect(nextDeadline(state)).toBeNull();
    expect(state.versions.filter((v) => v.status === "grace")).toEqual([]);
  }
}

function checkTransition(before: KeyState, result: Extract<Transition, { ok: true }>, now: number) {
  // at most one rotation left open, and it is the state's
  const open = result.rotations.filter((r) => r.state === "in_progress");
  expect(open.length).toBeLessThanOrEqual(1);
  if (open[0]) expect(result.state.rotation).toEqual(open[0]);
  // every closed rotation says when and why
  for (const r of result.rotations) {
    if (r.state === "in_progress") continue;
    expect(r.endReason).not.toBeNull();
    expect(r.endedAt).not.toBeNull();
    expect(r.endedAt!).toBeGreaterThanOrEqual(r.startedAt);
    expect(r.endedAt!).toBeLessThanOrEqual(now);
    expect(r.state === "rolled_back").toBe(r.endReason === "rolled_back");
  }
  // rotation ids are unique in a result
  expect(new Set(result.rotations.map((r) => r.id)).size).toBe(result.rotations.length);
  // versions are never removed, their secrets never change, lastUsedAt never goes back
  expect(result.state.versions.length).toBeGreaterThanOrEqual(before.versions.length);
  for (const old of before.versions) {
    const next = findVersion(result.state, old.version)!;
    expect(next.secretHash).toBe(old.secretHash);
    if (old.lastUsedAt !== null) expect(next.lastUsedAt).toBeGreaterThanOrEqual(old.lastUsedAt);
    if (old.status === "revoked") expect(next.status).toBe("revoked");
  }
  if (before.key.status === "revoked") expect(result.state.key.status).toBe("revoked");
}

describe("properties over random operation sequences", () => {
  it("every reachable state keeps the invariants, and no transition mutates its input", () => {
    fc.assert(
      fc.property(initialArb, opsArb(60), (init, ops) => {
        let now = T0;
        let state = keyState({
          v1: { expiresAt: init.v1ExpiresInMs === null ? null : T0 + init.v1ExpiresInMs },
        });
        // once a version stops verifying it never verifies again
        const dead = new Set<number>();
        for (const op of ops) {
          if (op.kind === "advance") {
            now += op.ms;
            // time alone settles nothing in storage, but verification follows timestamps
            const settled = ok(settle(state, now)).state;
            checkInvariants(settled, now);
            for (const v of settled.versions) if (!verifiesAt(v, now)) dead.add(v.version);
            continue;
          }
          const before = structuredClone(state);
          deepFreeze(state);
          const result = apply(state, op, now);
          expect(state).toEqual(before);
          if (!result || !result.ok) {
            // a refusal changes nothing; retrying is safe
            continue;
          }
          checkTransition(before, result, now);
          state = result.state;
          checkInvariants(state, now);
          for (const v of state.versions) {
            if (verifiesAt(v, now)) expect(dead.has(v.version)).toBe(false);
            else dead.add(v.version);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("each transition succeeds or is refused exactly when the rules say, with the documented code", () => {
    fc.assert(
      fc.property(opsArb(40), (ops) => {
        let now = T0;
        let state = keyState();
        for (const op of ops) {
          if (op.kind === "advance") {
            now += op.ms;
            continue;
          }
          const result = apply(state, op, now);
          if (!result) continue;
          // what the refusal rules look at: the state settled at `now`
          const settled = ok(settle(state, now)).state;
          const open = settled.rotation;
          const revoked = settled.key.status === "revoked";
          const code = result.ok ? "ok" : result.code;
          switch (op.kind) {
            case "start":
              expect(code).toBe(
                revoked
                  ? "conflict"
                  : open
                    ? "rotation_in_progress"
                    : op.bump !== 0
                      ? "conflict"
                      : "ok",
              );
              break;
            case "complete":
            case "rollback":
              expect(code).toBe(open && !op.bogus ? "ok" : "conflict");
              break;
            case "extend": {
              if (!open || op.bogus) {
                expect(code).toBe("conflict");
                break;
              }
              const from = findVersion(settled, open.fromVersion)!;
              const tooLong = open.gracePeriodMs + op.extraMs > op.maxGraceMs;
              const pastExpiry =
                open.graceUntil !== null &&
                from.expiresAt !== null &&
                open.graceUntil + op.extraMs > from.expiresAt;
              expect(code).toBe(
                op.extraMs <= 0 || tooLong || pastExpiry ? "validation_failed" : "ok",
              );
              break;
            }
            default:
              // markUsed, revokeKey and settle never refuse
              expect(code).toBe("ok");
          }
          if (result.ok) state = result.state;
        }
      }),
      { numRuns: 300 },
    );
  });

  it("settle is idempotent and agrees with verification by timestamp at any instant", () => {
    fc.assert(
      fc.property(opsArb(40), fc.integer({ min: 0, max: 10 * DAY }), (ops, later) => {
        let now = T0;
        let state = keyState();
        for (const op of ops) {
          if (op.kind === "advance") {
            now += op.ms;
            continue;
          }
          const result = apply(state, op, now);
          if (result?.ok) state = result.state;
        }
        const at = now + later;
        const once = ok(settle(state, at));
        const twice = ok(settle(once.state, at));
        expect(twice.events).toEqual([]);
        expect(twice.state).toEqual(once.state);
        // settling never changes which versions verify at that instant, except that an
        // idle-completed rotation stops its old version (idle is not checked by timestamp)
        const idleClosed = once.rotations.some((r) => r.endReason === "idle");
        if (!idleClosed) {
          expect(liveVersions(once.state, at).map((v) => v.version)).toEqual(
            liveVersions(state, at).map((v) => v.version),
          );
        }
      }),
      { numRuns: 200 },
    );
  });
});
