import { env } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { admin, newKey, type Json } from "../support/api";
import { DAY, auditActions, moveCreation, runCron, runNow } from "./support";

async function deliveries(consumerId: string, type: string): Promise<Json[]> {
  const rows = await env.DB.prepare(
    "SELECT event_id, event_type, payload FROM webhook_deliveries WHERE consumer_id = ? AND event_type = ?",
  )
    .bind(consumerId, type)
    .all<Json>();
  return rows.results;
}

/** As if the coordinator had not answered: the key's reminders recorded, none enqueued. */
async function undoHandOver(consumerId: string, keyId: string): Promise<void> {
  await env.DB.batch([
    env.DB.prepare("DELETE FROM webhook_deliveries WHERE consumer_id = ?").bind(consumerId),
    env.DB.prepare("UPDATE maintenance_notices SET emitted_at = NULL WHERE key_id = ?").bind(keyId),
  ]);
}

describe("reminder webhooks", () => {
  it("hands each reminder to webhook delivery once, with the audit event's id as webhook-id", async () => {
    // nothing listens there: deliveries stay pending, which is all this test looks at
    const created = await admin.post("/consumers", {
      name: "hooked",
      webhookUrl: "http://127.0.0.1:9/hooks",
    });
    expect(created.status).toBe(201);
    const consumer = created.body.id as string;
    const rotated = await newKey(["prices:read"], {}, consumer);
    const rotate = await admin.post(`/keys/${rotated.id}/rotate`, { gracePeriodSeconds: 7200 });
    const rotation = rotate.body.rotation as Json;
    const expiring = await newKey(
      ["prices:read"],
      { expiresAt: new Date(Date.now() + 2 * DAY).toISOString() },
      consumer,
    );
    const old = await newKey(["prices:read"], {}, consumer);
    await moveCreation(old.id, 1, Date.now() - 40 * DAY);

    const vars = { MAX_KEY_AGE_DAYS: "30" };
    const first = await runCron(vars);
    expect(first.failures).toEqual([]);

    const [graceAudit] = await auditActions(rotated.id, "rotation.grace_ending");
    const [graceHook] = await deliveries(consumer, "rotation.grace_ending");
    expect(graceHook!.event_id).toBe(graceAudit!.id);
    const payload = JSON.parse(graceHook!.payload as string) as Json;
    expect(payload).toMatchObject({
      type: "rotation.grace_ending",
      data: {
        consumerId: consumer,
        keyId: rotated.id,
        version: 2,
        rotationId: rotation.id,
        graceUntil: rotation.graceUntil,
      },
    });
    expect(JSON.stringify(payload)).not.toMatch(/[0-9a-f]{64}|kg_/);

    const [expiringHook] = await deliveries(consumer, "key.expiring");
    expect(JSON.parse(expiringHook!.payload as string)).toMatchObject({
      data: { keyId: expiring.id, version: 1, expiresAt: expiring.body.expiresAt },
    });
    const [dueHook] = await deliveries(consumer, "key.rotation_due");
    expect(JSON.parse(dueHook!.payload as string)).toMatchObject({
      data: { keyId: old.id, version: 1, ageDays: 40, maxKeyAgeDays: 30 },
    });

    const pending = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM maintenance_notices WHERE emitted_at IS NULL",
    ).first<{ n: number }>();
    expect(pending?.n).toBe(0);

    await runCron(vars);
    for (const type of ["rotation.grace_ending", "key.expiring", "key.rotation_due"]) {
      expect(await deliveries(consumer, type)).toHaveLength(1);
    }
  });

  it("hands over again a reminder whose hand-over failed", async () => {
    const created = await admin.post("/consumers", {
      name: "hooked later",
      webhookUrl: "http://127.0.0.1:9/hooks",
    });
    const consumer = created.body.id as string;
    const key = await newKey(
      ["prices:read"],
      { expiresAt: new Date(Date.now() + DAY).toISOString() },
      consumer,
    );
    const first = await runCron();
    expect(first.failures).toEqual([]);
    await undoHandOver(consumer, key.id);
    const second = await runCron();
    expect(second.failures).toEqual([]);
    expect(second.reminders).toBe(0);
    expect(await deliveries(consumer, "key.expiring")).toHaveLength(1);
    expect(await auditActions(key.id, "key.expiring")).toHaveLength(1);

    // handed over too late to be news: the key has expired since
    await undoHandOver(consumer, key.id);
    // time travel: the deadline the reminder announced has passed
    await env.DB.prepare(
      "UPDATE audit_events SET details = json_set(details, '$.expiresAt', ?) WHERE key_id = ? AND action = 'key.expiring'",
    )
      .bind(Date.now() - 1000, key.id)
      .run();
    const third = await runCron();
    expect(third.failures).toEqual([]);
    expect(await deliveries(consumer, "key.expiring")).toEqual([]);
    const left = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM maintenance_notices WHERE emitted_at IS NULL",
    ).first<{ n: number }>();
    expect(left?.n).toBe(0);
  });

  it("reports a reminder the coordinator refuses, and does not hand it over again", async () => {
    const created = await admin.post("/consumers", {
      name: "refused",
      webhookUrl: "http://127.0.0.1:9/hooks",
    });
    const consumer = created.body.id as string;
    const key = await newKey(
      ["prices:read"],
      { expiresAt: new Date(Date.now() + 2 * DAY).toISOString() },
      consumer,
    );
    expect((await runCron()).failures).toEqual([]);
    await undoHandOver(consumer, key.id);
    // with details a webhook may not carry
    await env.DB.prepare(
      "UPDATE audit_events SET details = json_set(details, '$.hash', 'x') WHERE key_id = ? AND action = 'key.expiring'",
    )
      .bind(key.id)
      .run();

    const logged = vi.spyOn(console, "error").mockImplementation(() => {});
    let lines: Json[];
    let refused: Json;
    try {
      refused = await runNow();
      lines = logged.mock.calls
        .map(([line]) => String(line))
        .filter((line) => line.startsWith("{"))
        .map((line) => JSON.parse(line) as Json);
    } finally {
      logged.mockRestore();
    }
    expect(lines).toContainEqual(
      expect.objectContaining({
        event: "maintenance_webhook_refused",
        keyId: key.id,
        eventType: "key.expiring",
        code: "validation_failed",
      }),
    );
    expect(refused.failures).toEqual([
      {
        step: "webhooks",
        consumerId: consumer,
        keyId: key.id,
        error: expect.stringMatching(/^validation_failed: .*"hash"/),
      },
    ]);
    expect(await deliveries(consumer, "key.expiring")).toEqual([]);
    // refused for what it says, which a later run would not change: not retried
    expect((await runCron()).failures).toEqual([]);
    expect(await deliveries(consumer, "key.expiring")).toEqual([]);
  });
});
