import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { hashSecret } from "../../src/keys/hash";
import { runMaintenance } from "../../src/maintenance/run";
import { admin, call, newConsumer, newKey, type Json } from "../support/api";
import { expectKvMatchesD1 } from "../faults/harness";
import { DAY, moveExpiry, moveGraceEnd, putRecord, randomHash, runNow } from "./support";

describe("POST /_keygate/v1/maintenance/run", () => {
  it("runs maintenance on demand and answers the report; a rerun changes nothing", async () => {
    const consumer = await newConsumer("on-demand");
    const rotated = await newKey(["prices:read"], {}, consumer);
    const rotation = (await admin.post(`/keys/${rotated.id}/rotate`, { gracePeriodSeconds: 3600 }))
      .body.rotation as Json;
    await moveGraceEnd(rotation, Date.now() - 1000);
    const expiring = await newKey(
      ["prices:read"],
      { expiresAt: new Date(Date.now() + DAY).toISOString() },
      consumer,
    );
    await moveExpiry(expiring.id, 1, Date.now() - 1000);
    const missing = await newKey(["prices:read"], {}, consumer);
    await env.KEYS.delete(`secret:v1:${hashSecret(missing.key)}`);
    const orphanHash = randomHash();
    await putRecord(orphanHash, {
      hash: orphanHash,
      consumerId: consumer,
      keyId: "ghost",
      version: 1,
    });

    const report = await runNow();
    expect(report.failures).toEqual([]);
    expect(report.rotationsCompleted).toContainEqual({
      consumerId: consumer,
      keyId: rotated.id,
      rotationId: rotation.id,
    });
    expect(report.versionsExpired).toContainEqual({
      consumerId: consumer,
      keyId: expiring.id,
      version: 1,
    });
    const reconciliation = report.reconciliation as Json;
    expect(reconciliation.fixed).toEqual(
      expect.arrayContaining([
        { consumerId: consumer, keyId: missing.id, version: 1, drift: "missing", queued: false },
        { consumerId: consumer, keyId: "ghost", version: 1, drift: "orphan", queued: false },
      ]),
    );
    expect(reconciliation).toMatchObject({ keysWalk: "complete", kvWalk: "complete" });
    expect(reconciliation.keysChecked).toBeGreaterThanOrEqual(3);
    expect(report.changes).toBeGreaterThanOrEqual(4);
    expect(Date.parse(report.finishedAt as string)).toBeGreaterThanOrEqual(
      Date.parse(report.startedAt as string),
    );
    for (const key of [rotated, expiring, missing]) await expectKvMatchesD1(key.id);

    // the changes carry the request that ran them
    const events = await admin.get(`/audit?keyId=${expiring.id}&action=key.expired`);
    const [expired] = events.body.items as Json[];
    expect(expired).toMatchObject({ actor: "system" });
    expect(expired!.requestId).toMatch(/^req_/);

    const again = await runNow();
    expect(again).toMatchObject({
      changes: 0,
      rotationsCompleted: [],
      versionsExpired: [],
      reminders: [],
      failures: [],
      reconciliation: { fixed: [] },
    });
  });

  it("refuses unknown body fields and needs keygate:admin", async () => {
    const res = await admin.post("/maintenance/run", { full: true });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation_failed");
    const reader = await newKey(["keygate:read"]);
    const refused = await call(
      "POST",
      "/_keygate/v1/maintenance/run",
      {},
      {
        Authorization: `Bearer ${reader.key}`,
      },
    );
    expect(refused.status).toBe(403);
    const get = await admin.get("/maintenance/run");
    expect(get.status).toBe(405);
    expect(get.headers.get("Allow")).toBe("POST");
  });

  it("is documented in the OpenAPI document", async () => {
    const res = await call("GET", "/_keygate/openapi.json");
    const doc = res.body as { paths: Record<string, Record<string, Json>> };
    const operation = doc.paths["/_keygate/v1/maintenance/run"]?.post;
    expect(operation).toBeDefined();
    expect(operation!.tags).toEqual(["maintenance"]);
  });
});

describe("concurrent runs", () => {
  it("two passes at once (cron and an operator) change each thing once", async () => {
    const consumer = await newConsumer("racing");
    const rotated = await newKey(["prices:read"], {}, consumer);
    const rotation = (await admin.post(`/keys/${rotated.id}/rotate`, { gracePeriodSeconds: 600 }))
      .body.rotation as Json;
    const expired = await newKey(
      ["prices:read"],
      { expiresAt: new Date(Date.now() + DAY).toISOString() },
      consumer,
    );
    await moveExpiry(expired.id, 1, Date.now() - 1000);

    const reports = await Promise.all([runMaintenance(env), runMaintenance(env)]);
    for (const report of reports) expect(report.failures).toEqual([]);
    const reminded = reports.flatMap((r) => r.reminders).filter((r) => r.keyId === rotated.id);
    expect(reminded).toEqual([
      {
        type: "rotation.grace_ending",
        consumerId: consumer,
        keyId: rotated.id,
        version: 2,
        rotationId: rotation.id,
      },
    ]);
    const expiredIn = reports
      .flatMap((r) => r.versionsExpired)
      .filter((v) => v.keyId === expired.id);
    expect(expiredIn).toHaveLength(1);
    for (const [keyId, action] of [
      [rotated.id, "rotation.grace_ending"],
      [expired.id, "key.expired"],
    ] as const) {
      const events = await admin.get(`/audit?keyId=${keyId}&action=${action}`);
      expect(events.body.items as Json[]).toHaveLength(1);
    }
  });
});

describe("bounded work", () => {
  it("walks D1 and KV a page at a time, resuming from the saved cursors, until all is fixed", async () => {
    const consumer = await newConsumer("pages");
    const keys = [];
    for (let i = 0; i < 4; i++) keys.push(await newKey(["prices:read"], {}, consumer));
    // drift placed on every key: each record missing from KV
    for (const key of keys) await env.KEYS.delete(`secret:v1:${hashSecret(key.key)}`);
    const orphanHash = randomHash();
    await putRecord(orphanHash, { hash: orphanHash, consumerId: "csm_gone", keyId: "stray" });

    const limits = { keysPerRun: 1, kvPagesPerRun: 1, kvPageSize: 1 };
    const fixed = new Set<string>();
    let keysComplete = false;
    let kvComplete = false;
    for (let run = 0; run < 200 && !(keysComplete && kvComplete); run++) {
      const report = await runMaintenance(env, { limits });
      expect(report.failures).toEqual([]);
      expect(report.reconciliation.keysChecked).toBeLessThanOrEqual(1);
      expect(report.reconciliation.recordsListed).toBeLessThanOrEqual(1);
      for (const f of report.reconciliation.fixed) fixed.add(`${f.keyId}:${f.drift}`);
      if (report.reconciliation.keysWalk === "complete") keysComplete = true;
      if (report.reconciliation.kvWalk === "complete") kvComplete = true;
      if (!keysComplete) {
        const cursor = await env.DB.prepare(
          "SELECT value FROM maintenance_cursors WHERE name = 'keys'",
        ).first<{ value: string }>();
        expect(cursor?.value).toBeTruthy();
      }
    }
    expect(keysComplete && kvComplete).toBe(true);
    for (const key of keys) {
      expect(fixed).toContain(`${key.id}:missing`);
      await expectKvMatchesD1(key.id);
    }
    expect(fixed).toContain("stray:orphan");
    expect(await env.KEYS.get(`secret:v1:${orphanHash}`)).toBeNull();
  });
});
