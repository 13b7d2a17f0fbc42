import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { stubOf } from "../faults/harness";
import { admin, codeOf, newKey, withKey, type Json } from "../support/api";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function rotate(keyId: string, body: Json = {}) {
  const res = await admin.post(`/keys/${keyId}/rotate`, body);
  if (res.status !== 201) throw new Error(`rotate: ${res.status} ${JSON.stringify(res.body)}`);
  return { key: res.body.key as string, rotation: res.body.rotation as Json, body: res.body };
}

describe("rotation", () => {
  it("issues version n+1 under the same key id; both secrets work in grace", async () => {
    const issued = await newKey(["prices:read"]);
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 3600 });
    expect(rotated.key).not.toBe(issued.key);
    expect(rotated.key).toContain(issued.id);
    expect(rotated.body).toMatchObject({ id: issued.id, version: 2, status: "active" });
    expect(rotated.rotation).toMatchObject({ state: "in_progress", fromVersion: 1, toVersion: 2 });
    const graceUntil = Date.parse(rotated.rotation.graceUntil as string);
    expect(graceUntil).toBeGreaterThan(Date.now() + 3590_000);
    const old = await withKey(issued.key, "/prices/eur");
    expect(old.status).toBe(200);
    expect(old.headers.get("Sunset")).toBe(new Date(graceUntil).toUTCString());
    const deprecation = Number(old.headers.get("Deprecation")!.slice(1));
    expect(
      Math.abs(deprecation * 1000 - Date.parse(rotated.rotation.startedAt as string)),
    ).toBeLessThan(1000);
    const fresh = await withKey(rotated.key, "/prices/eur");
    expect(fresh.status).toBe(200);
    expect(fresh.headers.get("Deprecation")).toBeNull();
    const key = await admin.get(`/keys/${issued.id}`);
    expect((key.body.versions as Json[]).map((v) => [v.version, v.status])).toEqual([
      [2, "active"],
      [1, "grace"],
    ]);
  });

  it("uses DEFAULT_GRACE_SECONDS (7 days) when the body names no grace", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id);
    const grace =
      Date.parse(rotated.rotation.graceUntil as string) -
      Date.parse(rotated.rotation.startedAt as string);
    expect(grace).toBe(604_800_000);
  });

  it("sets the new version's scopes without touching the old one's", async () => {
    const issued = await newKey(["prices:read"]);
    const rotated = await rotate(issued.id, { scopes: ["orders:read"] });
    expect((await withKey(issued.key, "/prices/x")).status).toBe(200);
    expect((await withKey(rotated.key, "/prices/x")).status).toBe(403);
  });

  it("ends the old secret at graceUntil by timestamp, and the alarm marks the rotation completed", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 1 });
    expect((await withKey(issued.key)).status).toBe(200);
    await sleep(1100);
    const old = await withKey(issued.key);
    expect(old.status).toBe(401);
    expect(await codeOf(old)).toBe("key_expired");
    expect((await withKey(rotated.key)).status).toBe(200);
    const shown = await admin.get(`/rotations/${rotated.rotation.id as string}`);
    expect(shown.body).toMatchObject({ state: "completed", endReason: "grace_ended" });
    expect(await runDurableObjectAlarm(stubOf(issued.consumerId))).toBe(true);
    const stored = await env.DB.prepare("SELECT state, end_reason FROM rotations WHERE id = ?")
      .bind(rotated.rotation.id)
      .first();
    expect(stored).toEqual({ state: "completed", end_reason: "grace_ended" });
    // idempotent: a second alarm run changes nothing
    await runDurableObjectAlarm(stubOf(issued.consumerId));
    const events = await admin.get(`/audit?keyId=${issued.id}&action=rotation.completed`);
    expect((events.body.items as unknown[]).length).toBe(1);
  });

  it("emergency rotation (grace 0) revokes the old secret at once", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 0 });
    expect(rotated.rotation).toMatchObject({ state: "completed", endReason: "emergency" });
    const old = await withKey(issued.key);
    expect(old.status).toBe(401);
    expect(await codeOf(old)).toBe("invalid_key");
    expect((await withKey(rotated.key)).status).toBe(200);
    expect((await rotate(issued.id, { gracePeriodSeconds: 60 })).rotation.fromVersion).toBe(2);
  });

  it("completes a rotation now: old secret refused, new one works", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 3600 });
    const done = await admin.post(`/rotations/${rotated.rotation.id as string}/complete`);
    expect(done.status).toBe(200);
    expect(done.body).toMatchObject({ state: "completed", endReason: "completed" });
    const old = await withKey(issued.key);
    expect(old.status).toBe(401);
    expect(await codeOf(old)).toBe("key_expired");
    expect((await withKey(rotated.key)).status).toBe(200);
    const again = await admin.post(`/rotations/${rotated.rotation.id as string}/complete`);
    expect(again.status).toBe(409);
  });

  it("rolls back in one call: new secret revoked, old one active again", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 3600 });
    const back = await admin.post(`/rotations/${rotated.rotation.id as string}/rollback`);
    expect(back.status).toBe(200);
    expect(back.body.state).toBe("rolled_back");
    const old = await withKey(issued.key);
    expect(old.status).toBe(200);
    expect(old.headers.get("Deprecation")).toBeNull();
    expect((await withKey(rotated.key)).status).toBe(401);
    const key = await admin.get(`/keys/${issued.id}`);
    expect(key.body).toMatchObject({ version: 1, status: "active", rotation: null });
    expect((await admin.post(`/rotations/${rotated.rotation.id as string}/rollback`)).status).toBe(
      409,
    );
  });

  it("extends graceUntil later, within MAX_GRACE_SECONDS", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 3600 });
    const id = rotated.rotation.id as string;
    const extended = await admin.post(`/rotations/${id}/extend`, { gracePeriodSeconds: 1800 });
    expect(extended.status).toBe(200);
    expect(
      Date.parse(extended.body.graceUntil as string) -
        Date.parse(rotated.rotation.graceUntil as string),
    ).toBe(1_800_000);
    const old = await withKey(issued.key);
    expect(old.headers.get("Sunset")).toBe(
      new Date(extended.body.graceUntil as string).toUTCString(),
    );
    const tooLong = await admin.post(`/rotations/${id}/extend`, {
      gracePeriodSeconds: 90 * 86_400,
    });
    expect(tooLong.status).toBe(400);
    expect((await admin.post(`/rotations/${id}/extend`, { gracePeriodSeconds: 0 })).status).toBe(
      400,
    );
    expect((await admin.post(`/rotations/${id}/extend`, {})).status).toBe(400);
  });

  it("never lets grace outlive the old version's expiry", async () => {
    const expiresAt = new Date(Date.now() + 60_000).toISOString();
    const issued = await newKey(["prices:read"], { expiresAt });
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 3600 });
    expect(rotated.rotation.graceUntil).toBe(expiresAt);
    const extend = await admin.post(`/rotations/${rotated.rotation.id as string}/extend`, {
      gracePeriodSeconds: 60,
    });
    expect(extend.status).toBe(400);
  });

  it("refuses a grace over MAX_GRACE_SECONDS and unknown fields", async () => {
    const issued = await newKey();
    expect(
      (await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 91 * 86_400 })).status,
    ).toBe(400);
    expect((await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: -1 })).status).toBe(
      400,
    );
    expect((await admin.post(`/keys/${issued.id}/rotate`, { grace: 5 })).status).toBe(400);
  });

  it("refuses a second rotation while one is open (409 rotation_in_progress)", async () => {
    const issued = await newKey();
    await rotate(issued.id, { gracePeriodSeconds: 3600 });
    const second = await admin.post(`/keys/${issued.id}/rotate`, {});
    expect(second.status).toBe(409);
    expect(second.body.code).toBe("rotation_in_progress");
  });

  it("20 concurrent rotations of one key give one 201 and nineteen 409s", async () => {
    const issued = await newKey();
    const results = await Promise.all(
      Array.from({ length: 20 }, () =>
        admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 }),
      ),
    );
    const statuses = results.map((r) => r.status).sort();
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(19);
    expect(
      results.filter((r) => r.status === 409).every((r) => r.body.code === "rotation_in_progress"),
    ).toBe(true);
    const key = await admin.get(`/keys/${issued.id}`);
    expect((key.body.versions as unknown[]).length).toBe(2);
    const winner = results.find((r) => r.status === 201)!;
    expect((await withKey(winner.body.key as string)).status).toBe(200);
    expect((await withKey(issued.key)).status).toBe(200);
  });

  it("graceStartsOnFirstUse: the grace clock starts when the new secret is first used", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id, {
      gracePeriodSeconds: 600,
      graceStartsOnFirstUse: true,
    });
    expect(rotated.rotation.graceUntil).toBeNull();
    const old = await withKey(issued.key);
    expect(old.status).toBe(200);
    expect(old.headers.get("Deprecation")).toMatch(/^@\d+$/);
    expect(old.headers.get("Sunset")).toBeNull();
    const firstUse = Date.now();
    expect((await withKey(rotated.key)).status).toBe(200);
    let shown: Json = {};
    for (let i = 0; i < 50 && !shown.graceUntil; i++) {
      await sleep(20);
      shown = (await admin.get(`/rotations/${rotated.rotation.id as string}`)).body;
    }
    const graceUntil = Date.parse(shown.graceUntil as string);
    expect(graceUntil).toBeGreaterThanOrEqual(firstUse + 600_000);
    expect(graceUntil).toBeLessThan(firstUse + 605_000);
    expect(shown.firstUsedAt).toEqual(expect.any(String));
    expect((await withKey(issued.key)).headers.get("Sunset")).toBe(
      new Date(graceUntil).toUTCString(),
    );
  });

  it("completeWhenIdleSeconds retires the old secret once the new one is used and the old is idle", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id, {
      gracePeriodSeconds: 3600,
      completeWhenIdleSeconds: 1,
    });
    expect((await withKey(rotated.key)).status).toBe(200);
    const rotationId = rotated.rotation.id as string;
    for (let i = 0; i < 50; i++) {
      const shown = await admin.get(`/rotations/${rotationId}`);
      if (shown.body.firstUsedAt) break;
      await sleep(20);
    }
    await sleep(1100);
    await runDurableObjectAlarm(stubOf(issued.consumerId));
    const shown = await admin.get(`/rotations/${rotationId}`);
    expect(shown.body).toMatchObject({ state: "completed", endReason: "idle" });
    expect(await codeOf(await withKey(issued.key))).toBe("key_expired");
  });

  it("reports traffic on the old and new secret since the rotation began", async () => {
    const issued = await newKey();
    for (let i = 0; i < 3; i++) await withKey(issued.key);
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 3600 });
    const rotationId = rotated.rotation.id as string;
    for (let i = 0; i < 2; i++) await withKey(issued.key);
    for (let i = 0; i < 5; i++) await withKey(rotated.key);
    let usage: { old: Json; new: Json } | undefined;
    for (let i = 0; i < 100; i++) {
      usage = (await admin.get(`/rotations/${rotationId}`)).body.usage as { old: Json; new: Json };
      if (usage.old.requests === 2 && usage.new.requests === 5) break;
      await sleep(30);
    }
    expect(usage?.old.requests).toBe(2);
    expect(usage?.new.requests).toBe(5);
    expect(usage?.new.lastUsedAt).toEqual(expect.any(String));
    const listed = await admin.get(`/keys/${issued.id}/rotations`);
    expect((listed.body.items as Json[])[0]!.id).toBe(rotationId);
  });

  it("lists a key's rotations settled by timestamp (no alarm), with usage, as GET /rotations/:id shows them", async () => {
    const issued = await newKey();
    const rotated = await rotate(issued.id, { gracePeriodSeconds: 2 });
    const rotationId = rotated.rotation.id as string;
    expect((await withKey(issued.key)).status).toBe(200);
    expect((await withKey(rotated.key)).status).toBe(200);
    for (let i = 0; i < 50; i++) {
      const usage = (await admin.get(`/rotations/${rotationId}`)).body.usage as { old: Json };
      if (usage.old.requests === 1) break;
      await sleep(20);
    }
    // no alarm marks it: only the timestamp can say it is over
    await runInDurableObject(stubOf(issued.consumerId), (_, state) => state.storage.deleteAlarm());
    await sleep(Date.parse(rotated.rotation.graceUntil as string) - Date.now() + 100);
    const stored = await env.DB.prepare("SELECT state FROM rotations WHERE id = ?")
      .bind(rotationId)
      .first<{ state: string }>();
    expect(stored?.state).toBe("in_progress");
    const listed = await admin.get(`/keys/${issued.id}/rotations`);
    expect(listed.status).toBe(200);
    const [item] = listed.body.items as Json[];
    expect(item).toMatchObject({
      id: rotationId,
      state: "completed",
      endReason: "grace_ended",
      usage: {
        old: { requests: 1, lastUsedAt: expect.any(String) },
        new: { requests: 1, lastUsedAt: expect.any(String) },
      },
    });
    const one = await admin.get(`/rotations/${rotationId}`);
    expect(item).toEqual(one.body);
  });

  it("pages a key's rotations with a cursor, each with its usage", async () => {
    const issued = await newKey();
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.unshift((await rotate(issued.id, { gracePeriodSeconds: 0 })).rotation.id as string);
    }
    const first = await admin.get(`/keys/${issued.id}/rotations?limit=2`);
    expect(first.status).toBe(200);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await admin.get(
      `/keys/${issued.id}/rotations?limit=2&cursor=${first.body.nextCursor as string}`,
    );
    expect(second.body.nextCursor).toBeNull();
    const items = [...(first.body.items as Json[]), ...(second.body.items as Json[])];
    expect(items.map((r) => r.id)).toEqual(ids);
    for (const r of items) {
      expect(r).toMatchObject({ state: "completed", endReason: "emergency" });
      expect(r.usage).toEqual({
        old: { requests: 0, lastUsedAt: null },
        new: { requests: 0, lastUsedAt: null },
      });
    }
  });

  it("answers 404 for an unknown rotation", async () => {
    for (const res of [
      await admin.get("/rotations/rot_nope"),
      await admin.post("/rotations/rot_nope/complete"),
      await admin.post("/rotations/rot_nope/rollback"),
      await admin.post("/rotations/rot_nope/extend", { gracePeriodSeconds: 10 }),
      await admin.get("/keys/k_nope/rotations"),
    ]) {
      expect(res.status).toBe(404);
    }
  });
});
