import { env, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { admin, newKey, withKey, type Json } from "../support/api";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("GET /keys/:id/usage", () => {
  it("counts requests per hour and version, before and after the coordinator rolls them into D1", async () => {
    const issued = await newKey();
    for (let i = 0; i < 3; i++) expect((await withKey(issued.key)).status).toBe(200);
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 600 });
    for (let i = 0; i < 2; i++)
      expect((await withKey(rotated.body.key as string)).status).toBe(200);
    let usage: Json = {};
    for (let i = 0; i < 50; i++) {
      usage = (await admin.get(`/keys/${issued.id}/usage`)).body;
      if (usage.total === 5) break;
      await sleep(20);
    }
    expect(usage).toMatchObject({ keyId: issued.id, granularity: "hour", total: 5 });
    const hour = (usage.items as Json[])[0]!;
    expect(hour.versions).toEqual({ "1": 3, "2": 2 });
    expect(Date.parse(hour.hour as string) % 3_600_000).toBe(0);

    // no D1 write per request: until the coordinator's rollup, the counts live in its storage
    const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM usage_hourly WHERE key_id = ?")
      .bind(issued.id)
      .first<{ n: number }>();
    expect(before?.n).toBe(0);
    const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(issued.consumerId));
    await runDurableObjectAlarm(stub);
    const rolled = await env.DB.prepare(
      "SELECT SUM(requests) AS n FROM usage_hourly WHERE key_id = ?",
    )
      .bind(issued.id)
      .first<{ n: number }>();
    expect(rolled?.n).toBe(5);
    const after = await admin.get(`/keys/${issued.id}/usage`);
    expect(after.body.total).toBe(5);
    const versions = await env.DB.prepare(
      "SELECT version, last_used_at FROM key_versions WHERE key_id = ? ORDER BY version",
    )
      .bind(issued.id)
      .all<{ version: number; last_used_at: number | null }>();
    expect(versions.results.every((v) => v.last_used_at !== null)).toBe(true);
    const key = await admin.get(`/keys/${issued.id}`);
    expect((key.body.versions as Json[]).every((v) => typeof v.lastUsedAt === "string")).toBe(true);
  });

  it("answers an empty list for a window with no traffic", async () => {
    const issued = await newKey();
    const res = await admin.get(
      `/keys/${issued.id}/usage?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z`,
    );
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ total: 0, items: [], from: "2026-01-01T00:00:00.000Z" });
  });

  it.each([
    ["from after to", "?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z"],
    ["over 31 days", "?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z"],
    ["not a time", "?from=yesterday"],
    ["unknown parameter", "?granularity=day"],
  ])("refuses %s with 400", async (_label, query) => {
    const issued = await newKey();
    const res = await admin.get(`/keys/${issued.id}/usage${query}`);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation_failed");
  });

  it("answers 404 for an unknown key", async () => {
    expect((await admin.get("/keys/0000000000000000/usage")).status).toBe(404);
  });
});
