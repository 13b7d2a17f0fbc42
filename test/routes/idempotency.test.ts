import { createExecutionContext, env, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { ADMIN, admin, newConsumer, newKey } from "../support/api";
import { failing, faultSwitch, type FaultSwitch } from "../support/faults";

const idem = (key: string) => ({ "Idempotency-Key": key });
const unique = () => `idem-${crypto.randomUUID()}`;

async function countRows(sql: string, ...bound: string[]): Promise<number> {
  const row = await env.DB.prepare(sql)
    .bind(...bound)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** The real DB, where statements whose SQL matches `pattern` fail while `fault.on`. */
function failingSql(db: D1Database, pattern: RegExp, fault: FaultSwitch): D1Database {
  const faulty = failing(db, ["prepare"], fault);
  return new Proxy(db, {
    get(object, property) {
      if (property === "prepare") {
        return (sql: string) => (pattern.test(sql) ? faulty : object).prepare(sql);
      }
      const value: unknown = Reflect.get(object, property, object);
      return typeof value === "function" ? (value as () => unknown).bind(object) : value;
    },
  });
}

/** A switch that refuses the first `times` calls, then lets every call through. */
function failsTimes(times: number): FaultSwitch {
  return {
    refused: 0,
    get on() {
      return this.refused < times;
    },
  };
}

/** POSTs a consumer through the Worker with `db` in place of the DB binding. */
async function postConsumerWith(db: D1Database, name: string, key: string) {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request("https://keygate.test/_keygate/v1/consumers", {
      method: "POST",
      headers: { ...ADMIN, "Content-Type": "application/json", "Idempotency-Key": key },
      body: JSON.stringify({ name }),
    }),
    { ...env, DB: db } as typeof env,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

/** Makes the record look as if its request began `ms` ago. */
async function age(key: string, ms: number): Promise<void> {
  await env.DB.prepare("UPDATE idempotency_records SET created_at = created_at - ? WHERE key = ?")
    .bind(ms, key)
    .run();
}

const SAVE = /UPDATE idempotency_records/;

describe("Idempotency-Key", () => {
  it("replays a consumer creation without creating a second one", async () => {
    const key = unique();
    const name = `idem-${crypto.randomUUID()}`;
    const first = await admin.post("/consumers", { name }, idem(key));
    const second = await admin.post("/consumers", { name }, idem(key));
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.headers.get("Idempotent-Replayed")).toBe("true");
    expect(first.headers.get("Idempotent-Replayed")).toBeNull();
    expect(second.body).toEqual(first.body);
    expect(await countRows("SELECT COUNT(*) AS n FROM consumers WHERE name = ?", name)).toBe(1);
  });

  it("replays a key creation with the plaintext secret removed", async () => {
    const consumer = await newConsumer();
    const key = unique();
    const first = await admin.post(`/consumers/${consumer}/keys`, { scopes: ["a:b"] }, idem(key));
    const second = await admin.post(`/consumers/${consumer}/keys`, { scopes: ["a:b"] }, idem(key));
    expect(first.body.key).toEqual(expect.any(String));
    expect(second.status).toBe(201);
    expect(second.body.key).toBeUndefined();
    expect(second.body.id).toBe(first.body.id);
    expect(await countRows("SELECT COUNT(*) AS n FROM keys WHERE consumer_id = ?", consumer)).toBe(
      1,
    );
    const stored = await env.DB.prepare("SELECT body FROM idempotency_records WHERE key = ?")
      .bind(key)
      .first<{ body: string }>();
    expect(stored?.body).not.toContain(first.body.key as string);
  });

  it("a retried rotation issues no second version", async () => {
    const issued = await newKey();
    const key = unique();
    const first = await admin.post(
      `/keys/${issued.id}/rotate`,
      { gracePeriodSeconds: 60 },
      idem(key),
    );
    const second = await admin.post(
      `/keys/${issued.id}/rotate`,
      { gracePeriodSeconds: 60 },
      idem(key),
    );
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.headers.get("Idempotent-Replayed")).toBe("true");
    expect(second.body.key).toBeUndefined();
    expect(second.body.rotation).toEqual(first.body.rotation);
    expect(
      await countRows("SELECT COUNT(*) AS n FROM key_versions WHERE key_id = ?", issued.id),
    ).toBe(2);
  });

  it("refuses the same key with a different request (409 conflict)", async () => {
    const key = unique();
    expect((await admin.post("/consumers", { name: "a" }, idem(key))).status).toBe(201);
    const other = await admin.post("/consumers", { name: "b" }, idem(key));
    expect(other.status).toBe(409);
    expect(other.body.code).toBe("conflict");
  });

  it("keeps nothing for a failed request, so a corrected retry with the same key works", async () => {
    const key = unique();
    expect((await admin.post("/consumers", { name: "" }, idem(key))).status).toBe(400);
    const retried = await admin.post("/consumers", { name: "fixed" }, idem(key));
    expect(retried.status).toBe(201);
    expect(retried.headers.get("Idempotent-Replayed")).toBeNull();
  });

  it("concurrent requests with one key create exactly one resource", async () => {
    const consumer = await newConsumer();
    const key = unique();
    const results = await Promise.all(
      Array.from({ length: 8 }, () =>
        admin.post(`/consumers/${consumer}/keys`, { scopes: [] }, idem(key)),
      ),
    );
    for (const r of results) expect([201, 409]).toContain(r.status);
    expect(results.filter((r) => r.status === 201 && r.body.key !== undefined)).toHaveLength(1);
    expect(await countRows("SELECT COUNT(*) AS n FROM keys WHERE consumer_id = ?", consumer)).toBe(
      1,
    );
  });

  it("scopes keys per caller", async () => {
    const key = unique();
    const operator = await newKey(["keygate:admin"]);
    const a = await admin.post("/consumers", { name: "same" }, idem(key));
    const b = await admin.post(
      "/consumers",
      { name: "same" },
      { ...idem(key), Authorization: `Bearer ${operator.key}` },
    );
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    expect(b.body.id).not.toBe(a.body.id);
  });

  it.each([["x".repeat(256)], ["has space"], ["ünïcode"]])(
    "refuses a malformed key %#",
    async (value) => {
      const res = await admin.post("/consumers", { name: "x" }, { "Idempotency-Key": value });
      expect(res.status).toBe(400);
    },
  );

  describe("POST /verify is a read: never replayed", () => {
    it("answers valid:false after a revocation, with the same Idempotency-Key", async () => {
      const target = await newKey(["prices:read"]);
      const key = unique();
      const before = await admin.post("/verify", { key: target.key }, idem(key));
      expect(before.body.valid).toBe(true);
      expect((await admin.post(`/keys/${target.id}/revoke`)).status).toBe(200);
      const after = await admin.post("/verify", { key: target.key }, idem(key));
      expect(after.status).toBe(200);
      expect(after.headers.get("Idempotent-Replayed")).toBeNull();
      expect(after.body).toMatchObject({ valid: false, code: "invalid_key" });
    });

    it("keeps no record, even for a malformed Idempotency-Key", async () => {
      const target = await newKey(["prices:read"]);
      const key = unique();
      expect((await admin.post("/verify", { key: target.key }, idem(key))).status).toBe(200);
      expect(
        await countRows("SELECT COUNT(*) AS n FROM idempotency_records WHERE key = ?", key),
      ).toBe(0);
      const odd = await admin.post("/verify", { key: target.key }, idem("has space"));
      expect(odd.status).toBe(200);
    });
  });

  describe("when the replay cannot be saved", () => {
    it("a retry answers 409 conflict and never runs the change again", async () => {
      const key = unique();
      const name = `unsaved-${crypto.randomUUID()}`;
      // the save and its one retry fail; marking the record succeeds
      const fault = failsTimes(2);
      const first = await postConsumerWith(failingSql(env.DB, SAVE, fault), name, key);
      expect(first.status).toBe(201);
      expect(fault.refused).toBe(2);
      for (const wait of [0, 61_000]) {
        await age(key, wait);
        const retry = await admin.post("/consumers", { name }, idem(key));
        expect(retry.status).toBe(409);
        expect(retry.body.code).toBe("conflict");
        expect(retry.body.detail).toMatch(/applied/);
      }
      expect(await countRows("SELECT COUNT(*) AS n FROM consumers WHERE name = ?", name)).toBe(1);
    });

    it("a save that fails once is retried, so the replay still works", async () => {
      const key = unique();
      const name = `saved-late-${crypto.randomUUID()}`;
      const fault = failsTimes(1);
      const first = await postConsumerWith(failingSql(env.DB, SAVE, fault), name, key);
      expect(first.status).toBe(201);
      expect(fault.refused).toBe(1);
      const replay = await admin.post("/consumers", { name }, idem(key));
      expect(replay.status).toBe(201);
      expect(replay.headers.get("Idempotent-Replayed")).toBe("true");
      expect(replay.body).toEqual(await first.json());
      expect(await countRows("SELECT COUNT(*) AS n FROM consumers WHERE name = ?", name)).toBe(1);
    });

    it("the change still answers 201 when every write of the record fails", async () => {
      const key = unique();
      const name = `never-saved-${crypto.randomUUID()}`;
      const first = await postConsumerWith(failingSql(env.DB, SAVE, faultSwitch()), name, key);
      expect(first.status).toBe(201);
      const retry = await admin.post("/consumers", { name }, idem(key));
      expect(retry.status).toBe(409);
      expect(await countRows("SELECT COUNT(*) AS n FROM consumers WHERE name = ?", name)).toBe(1);
    });
  });
});
