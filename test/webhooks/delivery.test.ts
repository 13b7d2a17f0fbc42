import { env } from "cloudflare:test";
import { describe, expect, it, vi } from "vitest";
import { admin, newKey } from "../support/api";
import { consumerWithWebhook, deliverDue, deliveryRows, received, stubOf, verify } from "./support";

interface Payload {
  type: string;
  timestamp: string;
  data: Record<string, unknown>;
}

async function payloadsAt(url: string, secret: string): Promise<Payload[]> {
  return (await received(url)).map((request) => verify(secret, request) as Payload);
}

describe("webhooks: events and signatures", () => {
  it("signs key.created per Standard Webhooks with the secret shown when the consumer was created", async () => {
    const consumer = await consumerWithWebhook();
    const key = await newKey(["prices:read"], {}, consumer.id);
    const rows = await deliverDue(consumer.id);
    expect(rows).toMatchObject([
      { event_type: "key.created", status: "delivered", attempts: 1, last_status_code: 204 },
    ]);
    const [request] = await received(consumer.url);
    expect(request!.method).toBe("POST");
    expect(request!.headers["content-type"]).toBe("application/json");
    expect(request!.headers["webhook-id"]).toBe(rows[0]!.event_id);
    expect(request!.headers["webhook-signature"]).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    const payload = verify(consumer.secret, request!) as Payload;
    expect(payload).toEqual({
      type: "key.created",
      timestamp: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      data: {
        consumerId: consumer.id,
        keyId: key.id,
        version: 1,
        scopes: ["prices:read"],
        hint: key.body.hint,
        expiresAt: null,
      },
    });
    // never the secret, nor anything derived from it but the public hint
    expect(request!.body).not.toContain(key.key);
    expect(request!.body).not.toContain(key.key.slice(-12));
  });

  it("the webhook-id is the audit event of the change", async () => {
    const consumer = await consumerWithWebhook();
    await newKey(["prices:read"], {}, consumer.id);
    const [row] = await deliverDue(consumer.id);
    const audit = await admin.get(`/audit?consumerId=${consumer.id}&action=key.created`);
    expect((audit.body.items as { id: string }[])[0]!.id).toBe(row!.event_id);
  });

  it("a signature made with another secret does not verify", async () => {
    const consumer = await consumerWithWebhook();
    const other = await consumerWithWebhook();
    await newKey(["prices:read"], {}, consumer.id);
    await deliverDue(consumer.id);
    const [request] = await received(consumer.url);
    expect(() => verify(other.secret, request!)).toThrow(/signature/i);
    const tampered = { ...request!, body: request!.body.replace('"version":1', '"version":2') };
    expect(() => verify(consumer.secret, tampered)).toThrow(/signature/i);
  });

  it("reports a rotation from start to completion, then a rollback and a revocation", async () => {
    const consumer = await consumerWithWebhook();
    const key = await newKey(["prices:read"], {}, consumer.id);
    const first = await admin.post(`/keys/${key.id}/rotate`, { gracePeriodSeconds: 3600 });
    expect(first.status).toBe(201);
    const rotation = first.body.rotation as { id: string; graceUntil: string };
    expect((await admin.post(`/rotations/${rotation.id}/complete`)).status).toBe(200);
    const second = await admin.post(`/keys/${key.id}/rotate`, { gracePeriodSeconds: 3600 });
    const rolledBack = (second.body.rotation as { id: string }).id;
    expect((await admin.post(`/rotations/${rolledBack}/rollback`)).status).toBe(200);
    expect((await admin.post(`/keys/${key.id}/revoke`, { reason: "leaked" })).status).toBe(200);

    const rows = await deliverDue(consumer.id);
    expect(rows.every((r) => r.status === "delivered")).toBe(true);
    const payloads = await payloadsAt(consumer.url, consumer.secret);
    expect(payloads.map((p) => p.type)).toEqual([
      "key.created",
      "rotation.started",
      "rotation.completed",
      "rotation.started",
      "rotation.rolled_back",
      "key.revoked",
    ]);
    expect(payloads[1]!.data).toEqual({
      consumerId: consumer.id,
      keyId: key.id,
      version: 2,
      rotationId: rotation.id,
      fromVersion: 1,
      toVersion: 2,
      graceUntil: rotation.graceUntil,
      graceStartsOnFirstUse: false,
      emergency: false,
      expiresAt: null,
    });
    expect(payloads[2]!.data).toMatchObject({
      rotationId: rotation.id,
      version: 2,
      reason: "completed",
    });
    expect(payloads[4]!.data).toMatchObject({
      rotationId: rolledBack,
      version: 2,
      fromVersion: 2,
      toVersion: 3,
      revokedVersion: 3,
    });
    expect(payloads[5]!.data).toMatchObject({ keyId: key.id, version: 2, reason: "leaked" });
    for (const request of await received(consumer.url)) {
      expect(request.body).not.toMatch(/kg_[0-9a-z]+_/);
    }
  });

  it("an emergency rotation reports its start and its immediate completion", async () => {
    const consumer = await consumerWithWebhook();
    const key = await newKey(["prices:read"], {}, consumer.id);
    expect((await admin.post(`/keys/${key.id}/rotate`, { gracePeriodSeconds: 0 })).status).toBe(
      201,
    );
    await deliverDue(consumer.id);
    const payloads = await payloadsAt(consumer.url, consumer.secret);
    expect(payloads.slice(1).map((p) => [p.type, p.data.emergency ?? p.data.reason])).toEqual([
      ["rotation.started", true],
      ["rotation.completed", "emergency"],
    ]);
  });

  it("the alarm that ends a grace window sends rotation.completed", async () => {
    const consumer = await consumerWithWebhook();
    const key = await newKey(["prices:read"], {}, consumer.id);
    const rotated = await admin.post(`/keys/${key.id}/rotate`, { gracePeriodSeconds: 1 });
    expect(rotated.status).toBe(201);
    // the coordinator's alarm is set for graceUntil, a second away: it ends the rotation
    const rows = await vi.waitFor(
      async () => {
        const found = await deliverDue(consumer.id);
        if (!found.some((r) => r.event_type === "rotation.completed")) throw new Error("not yet");
        return found;
      },
      { timeout: 10_000, interval: 100 },
    );
    const completed = rows.find((r) => r.event_type === "rotation.completed")!;
    expect(JSON.parse(completed.payload)).toMatchObject({
      data: { keyId: key.id, version: 2, reason: "grace_ended" },
    });
  });

  it("deleting the consumer sends key.revoked for each of its keys", async () => {
    const consumer = await consumerWithWebhook();
    const a = await newKey(["prices:read"], {}, consumer.id);
    const b = await newKey(["prices:read"], {}, consumer.id);
    expect((await admin.delete(`/consumers/${consumer.id}`)).status).toBe(200);
    await deliverDue(consumer.id);
    const revoked = (await payloadsAt(consumer.url, consumer.secret)).filter(
      (p) => p.type === "key.revoked",
    );
    expect(revoked.map((p) => p.data.keyId).sort()).toEqual([a.id, b.id].sort());
    expect(revoked.every((p) => p.data.reason === "consumer deleted")).toBe(true);
  });

  it("a consumer without a webhookUrl gets no secret and no deliveries", async () => {
    const created = await admin.post("/consumers", { name: "Quiet" });
    expect(created.body).not.toHaveProperty("webhookSecret");
    await newKey(["prices:read"], {}, created.body.id as string);
    expect(await deliveryRows(created.body.id as string)).toEqual([]);
  });

  it("emitEvent enqueues a time-based event once per eventId, with ISO times", async () => {
    const consumer = await consumerWithWebhook();
    const key = await newKey(["prices:read"], {}, consumer.id);
    const expiresAt = Date.UTC(2030, 0, 1);
    const stub = stubOf(consumer.id);
    const emit = () =>
      stub.emitEvent(
        "key.expiring",
        { keyId: key.id, version: 1, expiresAt },
        { eventId: `expiring:${key.id}:1` },
      );
    const first = await emit();
    expect(first).toEqual({
      ok: true,
      value: { deliveryId: expect.stringMatching(/^whd_/), enqueued: true },
    });
    const again = await emit();
    expect(again).toEqual({
      ok: true,
      value: { deliveryId: first.ok && first.value.deliveryId, enqueued: false },
    });
    await deliverDue(consumer.id);
    const requests = await received(consumer.url);
    const expiring = requests.filter((r) => r.headers["webhook-id"] === `expiring:${key.id}:1`);
    expect(expiring).toHaveLength(1);
    expect(verify(consumer.secret, expiring[0]!)).toMatchObject({
      type: "key.expiring",
      data: {
        consumerId: consumer.id,
        keyId: key.id,
        version: 1,
        expiresAt: "2030-01-01T00:00:00.000Z",
      },
    });
  });

  it("emitEvent refuses a secret in the data and an unknown type", async () => {
    const consumer = await consumerWithWebhook();
    const stub = stubOf(consumer.id);
    expect(
      await stub.emitEvent("key.expiring", { keyId: "k", version: 1, secret: "x" }),
    ).toMatchObject({
      ok: false,
      code: "validation_failed",
      detail: expect.stringContaining("never carries"),
    });
    expect(
      await stub.emitEvent("key.exploded" as "key.expiring", {
        keyId: "k",
        version: 1,
      }),
    ).toMatchObject({ ok: false, code: "validation_failed" });
    expect(await deliveryRows(consumer.id)).toEqual([]);
  });

  it("emitEvent enqueues nothing for a consumer without a webhookUrl", async () => {
    const quiet = (await admin.post("/consumers", { name: "Quiet" })).body.id as string;
    expect(await stubOf(quiet).emitEvent("key.rotation_due", { keyId: "k", version: 1 })).toEqual({
      ok: true,
      value: { deliveryId: null, enqueued: false },
    });
    const count = await env.DB.prepare(
      "SELECT COUNT(*) AS n FROM webhook_deliveries WHERE consumer_id = ?",
    )
      .bind(quiet)
      .first("n");
    expect(count).toBe(0);
  });
});
