import { describe, expect, it } from "vitest";
import { admin, call, newKey, type Json } from "../support/api";
import {
  consumerWithWebhook,
  deliverDue,
  deliveryRows,
  endpoint,
  received,
  verify,
} from "./support";

type Delivery = Json & { id: string; eventId: string; type: string; status: string };

function items(body: Json): Delivery[] {
  return body.items as Delivery[];
}

describe("GET /consumers/:id/webhooks", () => {
  it("lists deliveries newest first with attempts, status and the payload, page by page", async () => {
    const consumer = await consumerWithWebhook(endpoint("fail=1"));
    const key = await newKey(["prices:read"], {}, consumer.id);
    await admin.post(`/keys/${key.id}/revoke`, {});
    await deliverDue(consumer.id);

    const all = await admin.get(`/consumers/${consumer.id}/webhooks`);
    expect(all.status).toBe(200);
    expect(items(all.body).map((d) => d.type)).toEqual(["key.revoked", "key.created"]);
    const created = items(all.body)[1]!;
    expect(created).toMatchObject({
      consumerId: consumer.id,
      eventId: expect.stringMatching(/^evt_/),
      status: "pending",
      attempts: 1,
      lastStatusCode: 500,
      lastError: "HTTP 500: not a 2xx answer",
      url: consumer.url,
      redeliveryOf: null,
      deliveredAt: null,
      payload: { type: "key.created", data: { consumerId: consumer.id, keyId: key.id } },
    });
    expect(Date.parse(created.nextAttemptAt as string)).toBeGreaterThan(
      Date.parse(created.lastAttemptAt as string),
    );
    expect(JSON.stringify(all.body)).not.toContain(key.key);
    expect(JSON.stringify(all.body)).not.toContain(consumer.secret);

    const first = await admin.get(`/consumers/${consumer.id}/webhooks?limit=1`);
    expect(items(first.body)).toHaveLength(1);
    const next = await admin.get(
      `/consumers/${consumer.id}/webhooks?limit=1&cursor=${first.body.nextCursor as string}`,
    );
    expect(items(next.body).map((d) => d.id)).toEqual([created.id]);
    expect(next.body.nextCursor).toBeNull();

    const pending = await admin.get(`/consumers/${consumer.id}/webhooks?status=pending`);
    expect(items(pending.body).map((d) => d.id)).toEqual([created.id]);
    const delivered = await admin.get(`/consumers/${consumer.id}/webhooks?status=delivered`);
    expect(items(delivered.body).map((d) => d.type)).toEqual(["key.revoked"]);
  });

  it("refuses an unknown consumer, a bad status and a foreign cursor", async () => {
    expect((await admin.get("/consumers/csm_nope/webhooks")).status).toBe(404);
    const consumer = await consumerWithWebhook();
    const bad = await admin.get(`/consumers/${consumer.id}/webhooks?status=lost`);
    expect(bad.status).toBe(400);
    expect(bad.body.code).toBe("validation_failed");
    expect((await admin.get(`/consumers/${consumer.id}/webhooks?cursor=zzz`)).status).toBe(400);
  });

  it("is readable with keygate:read", async () => {
    const consumer = await consumerWithWebhook();
    const reader = await newKey(["keygate:read"]);
    const res = await call("GET", `/_keygate/v1/consumers/${consumer.id}/webhooks`, undefined, {
      Authorization: `Bearer ${reader.key}`,
    });
    expect(res.status).toBe(200);
  });
});

describe("POST /consumers/:id/webhooks/:deliveryId/redeliver", () => {
  it("sends the same event again as a new delivery with its own attempts, audited", async () => {
    const consumer = await consumerWithWebhook();
    await newKey(["prices:read"], {}, consumer.id);
    const [original] = await deliverDue(consumer.id);
    expect(original!.status).toBe("delivered");

    const res = await admin.post(`/consumers/${consumer.id}/webhooks/${original!.id}/redeliver`);
    expect(res.status).toBe(202);
    expect(res.body).toMatchObject({
      id: expect.stringMatching(/^whd_/),
      eventId: original!.event_id,
      type: "key.created",
      status: "pending",
      attempts: 0,
      redeliveryOf: original!.id,
    });
    const rows = await deliverDue(consumer.id);
    expect(rows.find((r) => r.id === res.body.id)).toMatchObject({
      status: "delivered",
      attempts: 1,
    });
    const requests = await received(consumer.url);
    expect(requests).toHaveLength(2);
    expect(requests[1]!.headers["webhook-id"]).toBe(original!.event_id);
    expect(requests[1]!.body).toBe(requests[0]!.body);
    expect(verify(consumer.secret, requests[1]!)).toMatchObject({ type: "key.created" });

    const audit = await admin.get(`/audit?consumerId=${consumer.id}&action=webhook.redelivered`);
    expect((audit.body.items as Json[])[0]).toMatchObject({
      details: { deliveryId: res.body.id, redeliveryOf: original!.id },
    });
  });

  it("re-sends a delivery that failed for good", async () => {
    const url = endpoint("status=500");
    const consumer = await consumerWithWebhook(url);
    await newKey(["prices:read"], {}, consumer.id);
    await deliverDue(consumer.id);
    const [row] = await deliveryRows(consumer.id);
    const res = await admin.post(`/consumers/${consumer.id}/webhooks/${row!.id}/redeliver`);
    expect(res.status).toBe(202);
    expect(await deliveryRows(consumer.id)).toHaveLength(2);
  });

  it("answers 404 for a delivery of another consumer or none, and 409 without a webhookUrl", async () => {
    const a = await consumerWithWebhook();
    const b = await consumerWithWebhook();
    await newKey(["prices:read"], {}, a.id);
    const [row] = await deliveryRows(a.id);
    expect((await admin.post(`/consumers/${b.id}/webhooks/${row!.id}/redeliver`)).status).toBe(404);
    expect((await admin.post(`/consumers/${a.id}/webhooks/whd_nope/redeliver`)).status).toBe(404);
    await admin.patch(`/consumers/${a.id}`, { webhookUrl: null });
    const refused = await admin.post(`/consumers/${a.id}/webhooks/${row!.id}/redeliver`);
    expect(refused.status).toBe(409);
    expect(refused.body.code).toBe("conflict");
  });

  it("needs keygate:admin", async () => {
    const consumer = await consumerWithWebhook();
    await newKey(["prices:read"], {}, consumer.id);
    const [row] = await deliveryRows(consumer.id);
    const reader = await newKey(["keygate:read"]);
    const res = await call(
      "POST",
      `/_keygate/v1/consumers/${consumer.id}/webhooks/${row!.id}/redeliver`,
      {},
      { Authorization: `Bearer ${reader.key}` },
    );
    expect(res.status).toBe(403);
  });
});

describe("the webhook secret", () => {
  it("is shown when the consumer is created, never by a read or an idempotent replay", async () => {
    const body = { name: "Once", webhookUrl: endpoint() };
    const headers = { "Idempotency-Key": crypto.randomUUID() };
    const created = await admin.post("/consumers", body, headers);
    expect(created.body.webhookSecret).toMatch(/^whsec_/);
    const replay = await admin.post("/consumers", body, headers);
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.body.id).toBe(created.body.id);
    expect(replay.body).not.toHaveProperty("webhookSecret");
    const read = await admin.get(`/consumers/${created.body.id as string}`);
    expect(read.body).not.toHaveProperty("webhookSecret");
    const listed = await admin.get("/consumers?limit=100");
    expect(JSON.stringify(listed.body)).not.toContain(created.body.webhookSecret as string);
  });

  it("is generated by the first PATCH that sets a webhookUrl, and only by that one", async () => {
    const created = await admin.post("/consumers", { name: "Later" });
    const id = created.body.id as string;
    expect(created.body).not.toHaveProperty("webhookSecret");
    const url = endpoint();
    const first = await admin.patch(`/consumers/${id}`, { webhookUrl: url });
    expect(first.status).toBe(200);
    const secret = first.body.webhookSecret as string;
    expect(secret).toMatch(/^whsec_/);
    const second = await admin.patch(`/consumers/${id}`, { webhookUrl: endpoint() });
    expect(second.body).not.toHaveProperty("webhookSecret");
    await admin.patch(`/consumers/${id}`, { webhookUrl: url });
    await newKey(["prices:read"], {}, id);
    await deliverDue(id);
    expect(verify(secret, (await received(url))[0]!)).toMatchObject({ type: "key.created" });
  });

  it("rotates: the new one is shown once and the old one keeps signing beside it", async () => {
    const consumer = await consumerWithWebhook();
    const rotated = await admin.post(
      `/consumers/${consumer.id}/webhook-secret/rotate`,
      {},
      { "Idempotency-Key": crypto.randomUUID() },
    );
    expect(rotated.status).toBe(200);
    const secret = rotated.body.webhookSecret as string;
    expect(secret).toMatch(/^whsec_/);
    expect(secret).not.toBe(consumer.secret);
    expect(Date.parse(rotated.body.previousSecretRetiresAt as string)).toBeGreaterThan(Date.now());

    await newKey(["prices:read"], {}, consumer.id);
    await deliverDue(consumer.id);
    const [request] = await received(consumer.url);
    expect(request!.headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    expect(verify(secret, request!)).toMatchObject({ type: "key.created" });
    expect(verify(consumer.secret, request!)).toMatchObject({ type: "key.created" });

    const audit = await admin.get(
      `/audit?consumerId=${consumer.id}&action=consumer.webhook_secret_rotated`,
    );
    expect(audit.body.items as Json[]).toHaveLength(1);
    expect(JSON.stringify(audit.body)).not.toContain(secret);
  });

  it("rotates with keepPreviousSeconds 0: the old one stops signing at once", async () => {
    const consumer = await consumerWithWebhook();
    const rotated = await admin.post(`/consumers/${consumer.id}/webhook-secret/rotate`, {
      keepPreviousSeconds: 0,
    });
    expect(rotated.body.previousSecretRetiresAt).toBeNull();
    await newKey(["prices:read"], {}, consumer.id);
    await deliverDue(consumer.id);
    const [request] = await received(consumer.url);
    expect(verify(rotated.body.webhookSecret as string, request!)).toBeTruthy();
    expect(() => verify(consumer.secret, request!)).toThrow(/signature/i);
  });

  it("refuses to rotate for an unknown or deleted consumer, and an overlap over 7 days", async () => {
    expect((await admin.post("/consumers/csm_nope/webhook-secret/rotate")).status).toBe(404);
    const consumer = await consumerWithWebhook();
    const long = await admin.post(`/consumers/${consumer.id}/webhook-secret/rotate`, {
      keepPreviousSeconds: 8 * 86_400,
    });
    expect(long.status).toBe(400);
    await admin.delete(`/consumers/${consumer.id}`);
    expect((await admin.post(`/consumers/${consumer.id}/webhook-secret/rotate`)).status).toBe(404);
  });
});
