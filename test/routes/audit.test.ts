import { describe, expect, it } from "vitest";
import { admin, newKey, type Json } from "../support/api";

describe("GET /audit", () => {
  it("records every change with actor, target and request id, and never a secret", async () => {
    const issued = await newKey(["prices:read"]);
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 60 });
    const rotationId = (rotated.body.rotation as { id: string }).id;
    await admin.post(`/rotations/${rotationId}/complete`);
    const res = await admin.get(`/audit?keyId=${issued.id}`);
    expect(res.status).toBe(200);
    const items = res.body.items as Json[];
    expect(items.map((e) => e.action)).toEqual([
      "rotation.completed",
      "rotation.started",
      "key.created",
    ]);
    for (const event of items) {
      expect(event).toMatchObject({
        actor: "admin",
        keyId: issued.id,
        consumerId: issued.consumerId,
      });
      expect(event.requestId).toMatch(/^req_/);
    }
    expect(items[1]!.requestId).toBe(rotated.headers.get("X-Request-Id"));
    expect(items[1]!.target).toBe(`rotation:${rotationId}`);
    const text = JSON.stringify(items);
    expect(text).not.toContain(issued.key);
    expect(text).not.toContain(rotated.body.key as string);
  });

  it("filters by consumer and action and paginates", async () => {
    const issued = await newKey();
    const byConsumer = await admin.get(`/audit?consumerId=${issued.consumerId}`);
    expect((byConsumer.body.items as Json[]).map((e) => e.action).sort()).toEqual([
      "consumer.created",
      "key.created",
    ]);
    const page = await admin.get(`/audit?consumerId=${issued.consumerId}&limit=1`);
    expect((page.body.items as Json[]).length).toBe(1);
    const next = await admin.get(
      `/audit?consumerId=${issued.consumerId}&limit=1&cursor=${page.body.nextCursor as string}`,
    );
    expect((next.body.items as Json[]).length).toBe(1);
    expect(next.body.nextCursor).toBeNull();
    const byAction = await admin.get(`/audit?keyId=${issued.id}&action=key.created`);
    expect((byAction.body.items as Json[]).length).toBe(1);
  });

  it("names a key principal as the actor", async () => {
    const operator = await newKey(["keygate:admin"]);
    const created = await admin.post(
      "/consumers",
      { name: "by key" },
      { Authorization: `Bearer ${operator.key}` },
    );
    const events = await admin.get(`/audit?consumerId=${created.body.id as string}`);
    expect((events.body.items as Json[])[0]!.actor).toBe(`key:${operator.id}`);
  });
});
