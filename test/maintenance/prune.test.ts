import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { runMaintenance } from "../../src/maintenance/run";
import { IDEMPOTENCY_TTL_MS } from "../../src/store/idempotency";
import { WEBHOOK_DELIVERY_RETENTION_MS } from "../../src/webhooks/deliveries";
import { admin, newConsumer } from "../support/api";
import { failingStatements } from "../faults/harness";
import { DAY } from "./support";

/**
 * What maintenance prunes: idempotency records past their 24-hour replay window, and webhook
 * deliveries settled more than 30 days ago. Pending deliveries and live records stay.
 */

const HOUR = 3_600_000;

async function idempotencyRecord(key: string, createdAt: number, state = "done"): Promise<void> {
  await env.DB.prepare(
    `INSERT INTO idempotency_records (scope, key, fingerprint, state, status, body, created_at)
     VALUES ('admin', ?, 'f', ?, 201, '{}', ?)`,
  )
    .bind(key, state, createdAt)
    .run();
}

async function idempotencyKeys(prefix: string): Promise<string[]> {
  const { results } = await env.DB.prepare(
    "SELECT key FROM idempotency_records WHERE key LIKE ? ORDER BY key",
  )
    .bind(`${prefix}%`)
    .all<{ key: string }>();
  return results.map((r) => r.key);
}

async function delivery(
  consumerId: string,
  id: string,
  status: "pending" | "delivered" | "failed",
  updatedAt: number,
): Promise<void> {
  await env.DB.prepare(
    `INSERT INTO webhook_deliveries (id, consumer_id, event_id, event_type, payload, status,
       attempts, next_attempt_at, created_at, updated_at)
     VALUES (?, ?, ?, 'key.rotated', '{}', ?, 1, ?, ?, ?)`,
  )
    .bind(
      id,
      consumerId,
      `evt_${id}`,
      status,
      status === "pending" ? updatedAt + HOUR : null,
      updatedAt - HOUR,
      updatedAt,
    )
    .run();
}

async function deliveryIds(consumerId: string): Promise<string[]> {
  const { results } = await env.DB.prepare(
    "SELECT id FROM webhook_deliveries WHERE consumer_id = ? ORDER BY id",
  )
    .bind(consumerId)
    .all<{ id: string }>();
  return results.map((r) => r.id);
}

describe("pruning", () => {
  it("deletes idempotency records past their replay window, pending or done, and keeps the rest", async () => {
    const now = Date.now();
    await idempotencyRecord("prune-a-old", now - IDEMPOTENCY_TTL_MS - HOUR);
    await idempotencyRecord("prune-a-stuck", now - IDEMPOTENCY_TTL_MS - 1000, "pending");
    await idempotencyRecord("prune-a-fresh", now - IDEMPOTENCY_TTL_MS + HOUR);

    const report = await runMaintenance(env);
    expect(report.failures).toEqual([]);
    expect(report.pruned.idempotencyRecords).toBeGreaterThanOrEqual(2);
    expect(await idempotencyKeys("prune-a-")).toEqual(["prune-a-fresh"]);
  });

  it("a request replayed within the window still replays after a pass; past it, it runs anew", async () => {
    const name = { name: "idempotent" };
    const first = await admin.post("/consumers", name, { "Idempotency-Key": "prune-b" });
    expect(first.status).toBe(201);
    await runMaintenance(env);
    const replay = await admin.post("/consumers", name, { "Idempotency-Key": "prune-b" });
    expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
    expect(replay.body.id).toBe(first.body.id);

    await env.DB.prepare("UPDATE idempotency_records SET created_at = ? WHERE key = 'prune-b'")
      .bind(Date.now() - IDEMPOTENCY_TTL_MS - 1000)
      .run();
    const report = await runMaintenance(env);
    expect(report.pruned.idempotencyRecords).toBeGreaterThanOrEqual(1);
    expect(await idempotencyKeys("prune-b")).toEqual([]);
    const again = await admin.post("/consumers", name, { "Idempotency-Key": "prune-b" });
    expect(again.status).toBe(201);
    expect(again.headers.get("Idempotent-Replayed")).toBeNull();
    expect(again.body.id).not.toBe(first.body.id);
  });

  it("deletes webhook deliveries settled more than 30 days ago, never a pending one", async () => {
    const consumerId = await newConsumer("pruned-webhooks");
    const old = Date.now() - WEBHOOK_DELIVERY_RETENTION_MS - DAY;
    const recent = Date.now() - WEBHOOK_DELIVERY_RETENTION_MS + DAY;
    await delivery(consumerId, "whd_old_delivered", "delivered", old);
    await delivery(consumerId, "whd_old_failed", "failed", old);
    await delivery(consumerId, "whd_old_pending", "pending", old);
    await delivery(consumerId, "whd_recent_delivered", "delivered", recent);

    const report = await runMaintenance(env);
    expect(report.failures).toEqual([]);
    expect(report.pruned.webhookDeliveries).toBeGreaterThanOrEqual(2);
    expect(await deliveryIds(consumerId)).toEqual(["whd_old_pending", "whd_recent_delivered"]);
    const listed = await admin.get(`/consumers/${consumerId}/webhooks`);
    expect(listed.status).toBe(200);
    const ids = (listed.body.items as { id: string }[]).map((d) => d.id).sort();
    expect(ids).toEqual(["whd_old_pending", "whd_recent_delivered"]);
  });

  it("prunes at most pruneRows of each per pass; the rest goes in the next, then nothing", async () => {
    const consumerId = await newConsumer("pruned-in-pages");
    const old = Date.now() - WEBHOOK_DELIVERY_RETENTION_MS - DAY;
    for (let i = 0; i < 3; i++) {
      await idempotencyRecord(`prune-c-${i}`, Date.now() - IDEMPOTENCY_TTL_MS - HOUR);
      await delivery(consumerId, `whd_page_${i}`, "delivered", old);
    }
    // whatever earlier suites left past its time goes first: drain it, two at a time
    const passes = [];
    for (let run = 0; run < 50; run++) {
      const report = await runMaintenance(env, { limits: { pruneRows: 2 } });
      expect(report.failures).toEqual([]);
      expect(report.pruned.idempotencyRecords).toBeLessThanOrEqual(2);
      expect(report.pruned.webhookDeliveries).toBeLessThanOrEqual(2);
      passes.push(report.pruned);
      if (report.pruned.idempotencyRecords === 0 && report.pruned.webhookDeliveries === 0) break;
    }
    expect(passes.length).toBeGreaterThanOrEqual(3);
    expect(passes.at(-1)).toEqual({ idempotencyRecords: 0, webhookDeliveries: 0 });
    expect(await idempotencyKeys("prune-c-")).toEqual([]);
    expect(await deliveryIds(consumerId)).toEqual([]);
  });

  it("reports what it pruned in the route's answer and counts it among the changes", async () => {
    await idempotencyRecord("prune-d-old", Date.now() - IDEMPOTENCY_TTL_MS - HOUR);
    const res = await admin.post("/maintenance/run", {});
    expect(res.status).toBe(200);
    expect(res.body.pruned).toMatchObject({ idempotencyRecords: expect.any(Number) });
    const pruned = res.body.pruned as { idempotencyRecords: number; webhookDeliveries: number };
    expect(pruned.idempotencyRecords).toBeGreaterThanOrEqual(1);
    expect(res.body.changes as number).toBeGreaterThanOrEqual(pruned.idempotencyRecords);
    expect(await idempotencyKeys("prune-d-")).toEqual([]);
  });

  it("a prune D1 refuses is a listed failure; the other prune and the rest of the pass go on", async () => {
    const consumerId = await newConsumer("prune-fault");
    await idempotencyRecord("prune-e-old", Date.now() - IDEMPOTENCY_TTL_MS - HOUR);
    await delivery(consumerId, "whd_fault_old", "delivered", Date.now() - 31 * DAY);
    const fault = { on: true, refused: 0 };
    const db = failingStatements(env.DB, /DELETE FROM idempotency_records/, fault);
    const report = await runMaintenance({ ...env, DB: db });
    expect(fault.refused).toBe(1);
    expect(report.failures).toEqual([
      expect.objectContaining({ step: "prune_idempotency_records", consumerId: null }),
    ]);
    expect(report.pruned.idempotencyRecords).toBe(0);
    expect(report.pruned.webhookDeliveries).toBeGreaterThanOrEqual(1);
    expect(await idempotencyKeys("prune-e-")).toEqual(["prune-e-old"]);
    expect(await deliveryIds(consumerId)).toEqual([]);
    // D1 back: the next pass prunes what was left
    expect((await runMaintenance(env)).pruned.idempotencyRecords).toBeGreaterThanOrEqual(1);
    expect(await idempotencyKeys("prune-e-")).toEqual([]);
  });
});
