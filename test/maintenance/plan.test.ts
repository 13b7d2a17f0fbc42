import { describe, expect, it } from "vitest";
import { projectVersion } from "../../src/domain/secret-record";
import { recordDrift, upkeep, upkeepChanges } from "../../src/domain/key-upkeep";
import {
  GRACE_ENDING_LEAD_MS,
  KEY_EXPIRING_LEAD_MS,
  assignOrphans,
  classifyListed,
  expectedRecords,
  groupWork,
  planNotices,
  stillNews,
  webhookDataOf,
} from "../../src/maintenance/plan";
import type { CurrentVersionRow, GraceEndingRow } from "../../src/maintenance/queries";
import {
  CONSUMER_ID,
  DAY,
  HOUR,
  KEY_ID,
  T0,
  deepFreeze,
  findV,
  keyState,
  ok,
  rotating,
  version,
} from "../domain/fixtures";

const NO_LIMITS = { rateLimit: null, monthlyQuota: null };

function graceRow(graceUntil: number): GraceEndingRow {
  return {
    rotationId: "rot_1",
    keyId: KEY_ID,
    consumerId: CONSUMER_ID,
    fromVersion: 1,
    toVersion: 2,
    graceUntil,
  };
}

function currentRow(overrides: Partial<CurrentVersionRow> = {}): CurrentVersionRow {
  return {
    keyId: KEY_ID,
    consumerId: CONSUMER_ID,
    version: 1,
    createdAt: T0,
    expiresAt: null,
    ...overrides,
  };
}

describe("planNotices", () => {
  const none = { graceEnding: [], expiring: [], aged: [] };

  it("reminds of a grace window ending within 24 h, not before, and not once it has ended", () => {
    const at = (graceUntil: number) =>
      planNotices({ ...none, graceEnding: [graceRow(graceUntil)] }, T0, null);
    expect(at(T0 + GRACE_ENDING_LEAD_MS)).toEqual([
      {
        kind: "rotation.grace_ending",
        subject: "rot_1",
        consumerId: CONSUMER_ID,
        keyId: KEY_ID,
        version: 2,
        rotationId: "rot_1",
        details: { rotationId: "rot_1", fromVersion: 1, toVersion: 2, graceUntil: T0 + DAY },
      },
    ]);
    expect(at(T0 + GRACE_ENDING_LEAD_MS + 1)).toEqual([]);
    expect(at(T0)).toEqual([]);
  });

  it("reminds of a current version expiring within 7 days, once per version", () => {
    const at = (expiresAt: number | null) =>
      planNotices({ ...none, expiring: [currentRow({ expiresAt })] }, T0, null);
    expect(at(T0 + KEY_EXPIRING_LEAD_MS)).toMatchObject([
      { kind: "key.expiring", subject: `${KEY_ID}:1`, details: { version: 1 } },
    ]);
    expect(at(T0 + KEY_EXPIRING_LEAD_MS + 1)).toEqual([]);
    expect(at(T0 - 1)).toEqual([]);
    expect(at(null)).toEqual([]);
  });

  it("flags versions older than MAX_KEY_AGE_DAYS, and none when it is unset", () => {
    const aged = [
      currentRow({ createdAt: T0 - 90 * DAY }),
      currentRow({ version: 2, createdAt: T0 - 89 * DAY }),
    ];
    expect(planNotices({ ...none, aged }, T0, null)).toEqual([]);
    const notices = planNotices({ ...none, aged }, T0, 90);
    expect(notices).toEqual([
      expect.objectContaining({
        kind: "key.rotation_due",
        subject: `${KEY_ID}:1`,
        details: {
          version: 1,
          createdAt: T0 - 90 * DAY,
          dueAt: T0,
          ageDays: 90,
          maxKeyAgeDays: 90,
        },
      }),
    ]);
  });

  it("gives webhooks the key, the version and the details, with no audit-only field", () => {
    const [due] = planNotices(
      { ...none, aged: [currentRow({ createdAt: T0 - 100 * DAY })] },
      T0,
      90,
    );
    expect(webhookDataOf(KEY_ID, due!.details)).toEqual({
      keyId: KEY_ID,
      version: 1,
      dueAt: T0 - 10 * DAY,
      ageDays: 100,
      maxKeyAgeDays: 90,
    });
    const [ending] = planNotices({ ...none, graceEnding: [graceRow(T0 + HOUR)] }, T0, null);
    expect(webhookDataOf(KEY_ID, ending!.details)).toMatchObject({
      version: 2,
      rotationId: "rot_1",
    });
  });
});

describe("stillNews", () => {
  it("drops a reminder handed over too late: its deadline has passed", () => {
    expect(stillNews({ graceUntil: T0 + 1 }, T0)).toBe(true);
    expect(stillNews({ graceUntil: T0 }, T0)).toBe(false);
    expect(stillNews({ expiresAt: T0 - 1 }, T0)).toBe(false);
    expect(stillNews({ dueAt: T0 - DAY }, T0)).toBe(true);
  });
});

describe("upkeep", () => {
  it("marks an active version past its expiry expired, with a key.expired event", () => {
    const state = deepFreeze(keyState({ v1: { expiresAt: T0 - 1 } }));
    const result = ok(upkeep(state, T0));
    expect(findV(result.state, 1)).toMatchObject({ status: "expired", expiresAt: T0 - 1 });
    expect(result.events).toEqual([
      { action: "key.expired", details: { version: 1, expiresAt: T0 - 1 } },
    ]);
    expect(upkeepChanges(KEY_ID, result.events).versionsExpired).toEqual([
      { keyId: KEY_ID, version: 1 },
    ]);
    // the KV record says what it said (expiry is applied by timestamp at the edge anyway)
    expect(projectVersion(result.state.key, findV(result.state, 1), null, T0, NO_LIMITS)).toEqual(
      projectVersion(state.key, findV(state, 1), null, T0, NO_LIMITS),
    );
  });

  it("changes nothing before expiry, on a revoked key, or a second time", () => {
    expect(ok(upkeep(keyState({ v1: { expiresAt: T0 + 1 } }), T0)).events).toEqual([]);
    const revoked = keyState({
      key: { status: "revoked" },
      v1: { status: "revoked", expiresAt: T0 - 1 },
    });
    expect(ok(upkeep(revoked, T0)).events).toEqual([]);
    const once = ok(upkeep(keyState({ v1: { expiresAt: T0 - 1 } }), T0));
    const twice = ok(upkeep(once.state, T0 + HOUR));
    expect(twice.events).toEqual([]);
    expect(twice.state).toEqual(once.state);
  });

  it("completes a rotation whose grace has ended, as the alarm would", () => {
    const { state, rotation } = rotating(T0, { gracePeriodMs: HOUR });
    const result = ok(upkeep(state, T0 + 2 * HOUR));
    expect(result.rotations).toMatchObject([
      { id: rotation.id, state: "completed", endReason: "grace_ended" },
    ]);
    expect(upkeepChanges(KEY_ID, result.events).rotationsCompleted).toEqual([
      { keyId: KEY_ID, rotationId: rotation.id },
    ]);
    expect(findV(result.state, 1).status).toBe("expired");
    expect(findV(result.state, 2).status).toBe("active");
  });

  it("leaves a rotation in grace alone", () => {
    const { state } = rotating(T0, { gracePeriodMs: DAY });
    const result = ok(upkeep(state, T0 + HOUR));
    expect(result.events).toEqual([]);
    expect(result.state).toEqual(state);
  });
});

describe("recordDrift", () => {
  const record = projectVersion(keyState().key, version(1), null, T0, NO_LIMITS).record!;

  it("tells missing, stale and retired records from matching ones, whatever the field order", () => {
    expect(recordDrift(null, record)).toBe("missing");
    expect(recordDrift({ ...record, scopes: ["*"] }, record)).toBe("stale");
    expect(recordDrift(record, null)).toBe("retired");
    expect(recordDrift(null, null)).toBeNull();
    const reordered = Object.fromEntries(Object.entries(record).reverse());
    expect(recordDrift(reordered, record)).toBeNull();
  });
});

describe("reconciliation planning", () => {
  it("expects a record for live and recently expired versions, none for revoked or long expired", () => {
    const state = keyState({
      versions: [
        version(4),
        version(3, { status: "expired", retiredAt: T0 - DAY }),
        version(2, { status: "expired", retiredAt: T0 - 31 * DAY }),
        version(1, { status: "revoked", retiredAt: T0 - 40 * DAY }),
      ],
    });
    expect(expectedRecords(state, NO_LIMITS, T0).map((r) => r.version)).toEqual([4, 3]);
  });

  it("sorts listed records into retired (D1 says none) and unknown (D1 has no such secret)", () => {
    const live = keyState();
    // revoked past retention: no record, not even a tombstone
    const revoked = keyState({
      key: { id: "key_revoked", status: "revoked" },
      versions: [version(1, { secretHash: "hash-r", status: "revoked", retiredAt: T0 - 31 * DAY })],
    });
    // revoked lately: its record is a tombstone, neither retired nor unknown
    const tombstoned = keyState({
      key: { id: "key_tombstoned", status: "revoked" },
      versions: [version(1, { secretHash: "hash-t", status: "revoked", retiredAt: T0 - DAY })],
    });
    const known = new Map([
      ["hash-1", live],
      ["hash-r", revoked],
      ["hash-t", tombstoned],
    ]);
    expect(
      classifyListed(["hash-1", "hash-r", "hash-t", "hash-x"], known, T0, new Set(["hash-t"])),
    ).toEqual({
      retired: [{ consumerId: CONSUMER_ID, keyId: "key_revoked" }],
      unknown: ["hash-x"],
    });
    // a tombstone's version whose listed record is not one (brought back to life) is fixed
    expect(classifyListed(["hash-t"], known, T0).retired).toEqual([
      { consumerId: CONSUMER_ID, keyId: "key_tombstoned" },
    ]);
  });

  it("leaves an orphan naming an active consumer to its coordinator, and removes the others", () => {
    const { byConsumer, removeNow } = assignOrphans(
      [
        { hash: "a", record: { consumerId: CONSUMER_ID, keyId: "k1", version: 2 } },
        { hash: "b", record: { consumerId: "con_deleted", keyId: "k2", version: 1 } },
        { hash: "c", record: "not json we wrote" },
        { hash: "d", record: null },
      ],
      new Set([CONSUMER_ID]),
    );
    expect([...byConsumer]).toEqual([[CONSUMER_ID, [{ hash: "a", keyId: "k1", version: 2 }]]]);
    expect(removeNow).toEqual([
      { hash: "b", keyId: "k2", version: 1 },
      { hash: "c", keyId: null, version: null },
    ]);
  });

  it("groups the work by consumer, each key once", () => {
    const work = groupWork(
      [
        { consumerId: "c1", keyId: "k1" },
        { consumerId: "c1", keyId: "k1" },
        { consumerId: "c2", keyId: "k2" },
      ],
      new Map([["c1", [{ hash: "h", keyId: null, version: null }]]]),
    );
    expect(work).toEqual([
      { consumerId: "c1", keyIds: ["k1"], orphans: [{ hash: "h", keyId: null, version: null }] },
      { consumerId: "c2", keyIds: ["k2"], orphans: [] },
    ]);
  });
});
