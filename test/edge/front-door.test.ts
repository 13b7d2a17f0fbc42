import { createExecutionContext, env, SELF, waitOnExecutionContext } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import worker from "../../src/index";
import { checksumOf } from "../../src/keys/key-format";
import { admin, newKey, withKey } from "../support/api";

const BASE = "https://keygate.test";

async function problemOf(res: Response) {
  expect(res.headers.get("Content-Type")).toBe("application/problem+json");
  expect(res.headers.get("Cache-Control")).toBe("no-store");
  return (await res.json()) as { code: string; detail: string; requestId: string; status: number };
}

/** Calls the Worker with a modified env (other vars), in this isolate. */
async function fetchWith(vars: Record<string, unknown>, request: Request): Promise<Response> {
  const ctx = createExecutionContext();
  const response = await worker.fetch(request, { ...env, ...vars } as typeof env, ctx);
  await waitOnExecutionContext(ctx);
  return response;
}

describe("front door: credentials", () => {
  it("refuses a request with no credential: 401 missing_credentials with WWW-Authenticate", async () => {
    const res = await SELF.fetch(`${BASE}/anything`);
    expect(res.status).toBe(401);
    expect(res.headers.get("WWW-Authenticate")).toBe(
      'Bearer realm="keygate", error="invalid_token"',
    );
    expect((await problemOf(res)).code).toBe("missing_credentials");
  });

  it("accepts the key in Authorization: Bearer and in X-API-Key", async () => {
    const { key } = await newKey();
    expect(
      (await SELF.fetch(`${BASE}/x`, { headers: { Authorization: `Bearer ${key}` } })).status,
    ).toBe(200);
    expect(
      (await SELF.fetch(`${BASE}/x`, { headers: { Authorization: `bearer  ${key}` } })).status,
    ).toBe(200);
    expect((await SELF.fetch(`${BASE}/x`, { headers: { "X-API-Key": key } })).status).toBe(200);
    expect(
      (
        await SELF.fetch(`${BASE}/x`, {
          headers: { "X-API-Key": key, Authorization: `Bearer ${key}` },
        })
      ).status,
    ).toBe(200);
  });

  it("refuses two different credentials: 400 ambiguous_credentials", async () => {
    const a = await newKey();
    const b = await newKey();
    const res = await SELF.fetch(`${BASE}/x`, {
      headers: { Authorization: `Bearer ${a.key}`, "X-API-Key": b.key },
    });
    expect(res.status).toBe(400);
    expect((await problemOf(res)).code).toBe("ambiguous_credentials");
  });

  it.each(["api_key", "apikey", "key", "access_token", "token", "API_KEY", "Token"])(
    "refuses a credential in the query string (%s): 400 credential_in_url, even on public routes",
    async (param) => {
      const { key } = await newKey();
      for (const path of [`/x?${param}=${key}`, `/public/x?${param}=anything`]) {
        const res = await SELF.fetch(`${BASE}${path}`, {
          headers: { Authorization: `Bearer ${key}` },
        });
        expect(res.status).toBe(400);
        expect((await problemOf(res)).code).toBe("credential_in_url");
      }
    },
  );

  it("answers malformed, unknown, bad-checksum and revoked keys with identical bodies but for requestId", async () => {
    const issued = await newKey();
    const revoked = await newKey();
    await admin.post(`/keys/${revoked.id}/revoke`);
    const body = issued.key.slice(0, -6);
    const flipped =
      issued.key.slice(0, 20) + (issued.key[20] === "A" ? "B" : "A") + issued.key.slice(21);
    const forged = `kg_${issued.id}_${"Z".repeat(32)}`;
    const candidates = [
      "garbage",
      "kg_",
      issued.key.toUpperCase(),
      body + "AAAAAA",
      flipped,
      forged + checksumOf(forged),
      revoked.key,
      `sk_live_${"a".repeat(40)}`,
      "kg_" + "0".repeat(16) + "_" + "ü".repeat(38),
    ];
    const bodies = new Set<string>();
    for (const candidate of candidates) {
      const res = await withKey(candidate);
      expect(res.status).toBe(401);
      expect(res.headers.get("WWW-Authenticate")).toBe(
        'Bearer realm="keygate", error="invalid_token"',
      );
      const { requestId, ...rest } = await problemOf(res);
      expect(requestId).toMatch(/^req_/);
      bodies.add(JSON.stringify(rest));
    }
    expect(bodies.size).toBe(1);
    expect([...bodies][0]).toContain('"code":"invalid_key"');
  });

  it("refuses an oversized credential before hashing, and survives huge headers", async () => {
    const res = await withKey("kg_" + "a".repeat(10_000));
    expect(res.status).toBe(401);
    expect((await problemOf(res)).code).toBe("invalid_key");
    const apiKey = await SELF.fetch(`${BASE}/x`, { headers: { "X-API-Key": "x".repeat(5000) } });
    expect(apiKey.status).toBe(401);
    const { key } = await newKey();
    const noisy = await SELF.fetch(`${BASE}/x`, {
      headers: { Authorization: `Bearer ${key}`, "X-Padding": "p".repeat(32_000) },
    });
    expect(noisy.status).toBe(200);
  });

  it("refuses another Authorization scheme as an invalid key", async () => {
    const res = await SELF.fetch(`${BASE}/x`, { headers: { Authorization: "Basic dXNlcjpwYXNz" } });
    expect(res.status).toBe(401);
    expect((await problemOf(res)).code).toBe("invalid_key");
  });

  it("treats an empty credential header as missing", async () => {
    const res = await SELF.fetch(`${BASE}/x`, { headers: { "X-API-Key": "  " } });
    expect(res.status).toBe(401);
    expect((await problemOf(res)).code).toBe("missing_credentials");
  });
});

describe("front door: route rules and scopes", () => {
  it("lets a public route through with no credential", async () => {
    const res = await SELF.fetch(`${BASE}/public/status`);
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ authenticated: false, path: "/public/status" });
  });

  it("requires the rule's scope: 403 insufficient_scope naming it", async () => {
    const { key } = await newKey(["orders:read"]);
    const res = await withKey(key, "/prices/eur");
    expect(res.status).toBe(403);
    expect(res.headers.get("WWW-Authenticate")).toBe(
      'Bearer realm="keygate", error="insufficient_scope", scope="prices:read"',
    );
    expect((await problemOf(res)).code).toBe("insufficient_scope");
  });

  it("honours resource:* and * on the granted side", async () => {
    for (const scopes of [["prices:*"], ["*"], ["prices:read"]]) {
      const { key } = await newKey(scopes);
      expect((await withKey(key, "/prices/eur")).status).toBe(200);
    }
    const { key } = await newKey(["pricesx:*"]);
    expect((await withKey(key, "/prices/eur")).status).toBe(403);
  });

  it("matches the method: a GET rule does not guard POST, and also matches HEAD", async () => {
    const { key } = await newKey([]);
    expect((await withKey(key, "/prices/eur", { method: "POST", body: "{}" })).status).toBe(200);
    expect((await withKey(key, "/prices/eur", { method: "HEAD" })).status).toBe(403);
  });

  it("needs a valid key and no scope where no rule matches", async () => {
    const { key } = await newKey([]);
    expect((await withKey(key, "/unruled/path")).status).toBe(200);
  });

  it("strict routes see a revocation made by another isolate at once", async () => {
    const issued = await newKey(["trade:write"]);
    expect((await withKey(issued.key, "/trade/order", { method: "POST", body: "{}" })).status).toBe(
      200,
    );
    expect((await withKey(issued.key, "/anything")).status).toBe(200); // now cached
    // revoke behind this isolate's back: straight through the coordinator, no cache drop here
    const stub = env.COORDINATOR.get(env.COORDINATOR.idFromName(issued.consumerId));
    await stub.revokeKey(issued.id, "test", { actor: "test", requestId: null });
    expect((await withKey(issued.key, "/trade/order", { method: "POST", body: "{}" })).status).toBe(
      401,
    );
    expect((await withKey(issued.key, "/strict/x")).status).toBe(401);
  });

  it("a revocation through the API takes effect at once in the isolate that made it", async () => {
    const issued = await newKey();
    expect((await withKey(issued.key)).status).toBe(200);
    expect((await withKey(issued.key)).status).toBe(200);
    await admin.post(`/keys/${issued.id}/revoke`);
    expect((await withKey(issued.key)).status).toBe(401);
  });

  it("fails closed with 503 when ROUTE_RULES is invalid", async () => {
    const { key } = await newKey();
    const res = await fetchWith(
      { ROUTE_RULES: "[{not json" },
      new Request(`${BASE}/x`, { headers: { Authorization: `Bearer ${key}` } }),
    );
    expect(res.status).toBe(503);
    expect((await problemOf(res)).code).toBe("unavailable");
    const health = await fetchWith(
      { ROUTE_RULES: '[{"path":"nope"}]' },
      new Request(`${BASE}/_keygate/health`),
    );
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ status: "misconfigured" });
  });
});

describe("front door: proxying", () => {
  it("answers from the echo origin with the verified identity when ORIGIN_URL is empty", async () => {
    const issued = await newKey(["prices:read"]);
    const res = await withKey(issued.key, "/prices/eur?day=today");
    expect(res.status).toBe(200);
    expect(res.headers.get("X-Request-Id")).toMatch(/^req_/);
    expect(await res.json()).toEqual({
      origin: "keygate-echo",
      method: "GET",
      path: "/prices/eur",
      authenticated: true,
      consumerId: issued.consumerId,
      keyId: issued.id,
      keyVersion: 1,
      scopes: ["prices:read"],
    });
  });

  it("answers 502 origin_unavailable when the origin cannot be reached", async () => {
    const { key } = await newKey();
    const res = await fetchWith(
      { ORIGIN_URL: "http://127.0.0.1:9/" },
      new Request(`${BASE}/x`, { headers: { Authorization: `Bearer ${key}` } }),
    );
    expect(res.status).toBe(502);
    expect((await problemOf(res)).code).toBe("origin_unavailable");
  });

  it("serves health and the OpenAPI document without credentials", async () => {
    const health = await SELF.fetch(`${BASE}/_keygate/health`);
    expect(await health.json()).toMatchObject({ status: "ok", version: expect.any(String) });
    const doc = await SELF.fetch(`${BASE}/_keygate/openapi.json`);
    const openapi = (await doc.json()) as { paths: Record<string, unknown> };
    expect(Object.keys(openapi.paths)).toEqual(
      expect.arrayContaining([
        "/_keygate/v1/consumers",
        "/_keygate/v1/keys/{id}/rotate",
        "/_keygate/v1/verify",
      ]),
    );
    expect((await SELF.fetch(`${BASE}/_keygate/nope`)).status).toBe(404);
    expect((await SELF.fetch(`${BASE}/.well-known/nope`)).status).toBe(404);
  });
});
