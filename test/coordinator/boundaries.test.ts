import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import type { CoordinatorApi } from "../../src/coordinator/client";
import type { KeyCoordinator } from "../../src/coordinator/key-coordinator";
import { hashSecret } from "../../src/keys/hash";
import { getKeyState } from "../../src/store/keys";
import { admin, newConsumer, newKey } from "../support/api";

/**
 * A consumer's KeyCoordinator serves that consumer only: the one named by `idFromName`. Called
 * directly (as a Worker holding the binding could), another consumer's instance finds none of
 * its keys, rotations or deliveries, and an instance reached any other way refuses to exist.
 */

const AUDIT = { actor: "test", requestId: null };
const stubOf = (consumerId: string) =>
  env.COORDINATOR.get(env.COORDINATOR.idFromName(consumerId)) as unknown as CoordinatorApi;

describe("one consumer's coordinator and another's keys", () => {
  it("cannot change, check or count a key of another consumer", async () => {
    const victim = await newKey(["prices:read"]);
    const rotated = await admin.post(`/keys/${victim.id}/rotate`, { gracePeriodSeconds: 3600 });
    expect(rotated.status).toBe(201);
    const rotationId = (rotated.body.rotation as { id: string }).id;
    const other = await newConsumer("Mallory");
    const mallory = stubOf(other);
    const before = await getKeyState(env.DB, victim.id);

    for (const result of [
      await mallory.updateKey(victim.id, { scopes: ["*"] }, AUDIT),
      await mallory.rotateKey(victim.id, {}, AUDIT),
      await mallory.revokeKey(victim.id, "x", AUDIT),
      await mallory.completeRotation(rotationId, AUDIT),
      await mallory.rollbackRotation(rotationId, AUDIT),
      await mallory.extendRotation(rotationId, 60, AUDIT),
      await mallory.redeliverWebhook("whd_nonexistent", AUDIT),
    ]) {
      expect(result).toMatchObject({ ok: false, code: "not_found" });
    }
    expect(await mallory.checkSecret(victim.id, hashSecret(victim.key))).toBeNull();
    expect(await mallory.checkVersion(victim.id, 1)).toBeNull();

    // usage reported for another consumer's key is not counted, nor rolled up into D1
    const now = Date.now();
    const changed = await mallory.recordUsage([
      { keyId: victim.id, version: 2, requests: 1, firstAt: now, lastAt: now },
    ]);
    expect(changed).toEqual([]);
    expect(await mallory.pendingUsage(victim.id)).toEqual([]);
    await runDurableObjectAlarm(env.COORDINATOR.get(env.COORDINATOR.idFromName(other)));
    const rows = await env.DB.prepare("SELECT requests FROM usage_hourly WHERE key_id = ?")
      .bind(victim.id)
      .all();
    expect(rows.results).toEqual([]);
    expect(await getKeyState(env.DB, victim.id)).toEqual(before);
  });
});

describe("a coordinator reached other than by a consumer's name", () => {
  it("refuses every call and keeps nothing", async () => {
    const stub = env.COORDINATOR.get(env.COORDINATOR.newUniqueId());
    await runInDurableObject(stub, async (instance: KeyCoordinator, state) => {
      await expect(
        instance.createConsumer(
          {
            name: "x",
            metadata: null,
            rateLimit: null,
            monthlyQuota: null,
            webhookUrl: "https://hooks.example.com/x",
          },
          AUDIT,
        ),
      ).rejects.toThrow(/idFromName/);
      await expect(
        instance.lease(
          "key_x",
          { rateLimit: { limit: 5, periodSeconds: 60 }, monthlyQuota: null },
          5,
        ),
      ).rejects.toThrow(/idFromName/);
      await expect(instance.recordUsage([])).rejects.toThrow(/idFromName/);
      // not one table was made: no secret, no counter, no usage kept
      const tables = state.storage.sql
        .exec(
          "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\'",
        )
        .toArray();
      expect(tables).toEqual([]);
    });
  });
});
