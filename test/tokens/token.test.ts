import { env } from "cloudflare:test";
import { decodeProtectedHeader } from "jose";
import { describe, expect, it } from "vitest";
import { admin, newKey, withKey } from "../support/api";
import { failingNamespace, faultSwitch } from "../support/faults";
import { claimsOf, exchange, fetchWith, signerStub, tokenFor } from "./fixtures";

describe("POST /_keygate/v1/token: happy path", () => {
  it("exchanges a key for a 10-minute bearer token holding all of its scopes", async () => {
    const issued = await newKey(["prices:read", "orders:read"]);
    const res = await exchange(issued.key);
    expect(res.status).toBe(200);
    expect(res.headers.get("Cache-Control")).toBe("no-store");
    expect(res.body).toMatchObject({
      token_type: "Bearer",
      expires_in: 600,
      scope: "prices:read orders:read",
    });
    expect(Object.keys(res.body).sort()).toEqual([
      "access_token",
      "expires_in",
      "scope",
      "token_type",
    ]);
  });

  it("signs the documented claims and headers with the current key", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key);
    const header = decodeProtectedHeader(token);
    const { current } = await signerStub().summary();
    expect(header).toEqual({ alg: "ES256", kid: current.kid, typ: "at+jwt" });
    const claims = claimsOf(token);
    expect(claims).toMatchObject({
      iss: "keygate",
      aud: "keygate",
      sub: issued.id,
      cid: issued.consumerId,
      ver: 1,
      scope: "prices:read",
    });
    expect(claims.jti).toMatch(/^tok_/);
    expect(claims.exp! - claims.iat!).toBe(600);
    expect(Math.abs(claims.iat! * 1000 - Date.now())).toBeLessThan(5_000);
    // each token is its own
    expect(claimsOf(await tokenFor(issued.key)).jti).not.toBe(claims.jti);
  });

  it("accepts the key in X-API-Key too", async () => {
    const issued = await newKey();
    const res = await exchange("", undefined, { Authorization: "", "X-API-Key": issued.key });
    expect(res.status).toBe(200);
  });

  it("narrows scopes on request, wildcards included, and drops duplicates", async () => {
    const issued = await newKey(["prices:*", "orders:read"]);
    const narrowed = await exchange(issued.key, { scope: "prices:read prices:read orders:read" });
    expect(narrowed.status).toBe(200);
    expect(narrowed.body.scope).toBe("prices:read orders:read");
    expect(claimsOf(narrowed.body.access_token as string).scope).toBe("prices:read orders:read");
    const token = narrowed.body.access_token as string;
    expect((await withKey(token, "/prices/eur")).status).toBe(200);

    const dupes = await newKey(["prices:read"]);
    const all = await exchange(dupes.key, { scope: "  prices:read   prices:read " });
    expect(all.body.scope).toBe("prices:read");
  });

  it("a token narrowed to no scope opens only routes that need none", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key, { scope: "" });
    expect((await withKey(token, "/anything")).status).toBe(200);
    expect((await withKey(token, "/prices/eur")).status).toBe(403);
  });

  it("caps the lifetime at MAX_TOKEN_TTL_SECONDS and honours a shorter expiresIn", async () => {
    const issued = await newKey();
    const short = await exchange(issued.key, { expiresIn: 60 });
    expect(short.body.expires_in).toBe(60);
    const capped = await exchange(issued.key, { expiresIn: 10 * 86_400 });
    expect(capped.body.expires_in).toBe(3600);
    const claims = claimsOf(capped.body.access_token as string);
    expect(claims.exp! - claims.iat!).toBe(3600);
    const lowered = await fetchWith(
      { TOKEN_TTL_SECONDS: "30", MAX_TOKEN_TTL_SECONDS: "120" },
      "/_keygate/v1/token",
      {
        method: "POST",
        headers: { Authorization: `Bearer ${issued.key}`, "Content-Type": "application/json" },
        body: JSON.stringify({ expiresIn: 600 }),
      },
    );
    expect(((await lowered.json()) as { expires_in: number }).expires_in).toBe(120);
  });

  it("never outlives the key version's expiry", async () => {
    const expiresAt = new Date(Date.now() + 90_000);
    const issued = await newKey(["prices:read"], { expiresAt: expiresAt.toISOString() });
    const res = await exchange(issued.key, { expiresIn: 3600 });
    expect(res.status).toBe(200);
    const claims = claimsOf(res.body.access_token as string);
    expect(claims.exp).toBeLessThanOrEqual(Math.floor(expiresAt.getTime() / 1000));
    expect(res.body.expires_in).toBe(claims.exp! - claims.iat!);
    expect(res.body.expires_in as number).toBeLessThanOrEqual(90);
  });

  it("never outlives the grace window of a rotated-out version", async () => {
    const issued = await newKey(["prices:read"]);
    const rotated = await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 45 });
    expect(rotated.status).toBe(201);
    const graceUntil = Date.parse((rotated.body.rotation as { graceUntil: string }).graceUntil);
    const res = await exchange(issued.key);
    expect(res.status).toBe(200);
    expect(claimsOf(res.body.access_token as string).exp).toBeLessThanOrEqual(
      Math.floor(graceUntil / 1000),
    );
  });
});

describe("POST /_keygate/v1/token: refusals", () => {
  it("refuses to widen scopes: 403 insufficient_scope naming the scope", async () => {
    const issued = await newKey(["prices:read"]);
    const res = await exchange(issued.key, { scope: "prices:read trade:write" });
    expect(res.status).toBe(403);
    expect(res.body.code).toBe("insufficient_scope");
    expect(res.headers.get("WWW-Authenticate")).toContain('scope="trade:write"');
    const wildcard = await exchange(issued.key, { scope: "prices:*" });
    expect(wildcard.status).toBe(403);
  });

  it("never lets a * key mint a token claiming Keygate's own scopes", async () => {
    const issued = await newKey(["*"]);
    for (const scope of ["keygate:admin", "keygate:read", "keygate:verify", "keygate:*"]) {
      const res = await exchange(issued.key, { scope });
      expect(res.status).toBe(403);
      expect(res.headers.get("WWW-Authenticate")).toContain(`scope="${scope}"`);
    }
    const holder = await newKey(["keygate:admin"]);
    expect((await exchange(holder.key, { scope: "keygate:admin" })).status).toBe(200);
  });

  it("refuses a malformed scope with 400", async () => {
    const issued = await newKey(["*"]);
    const res = await exchange(issued.key, { scope: "Not A Scope!" });
    expect(res.status).toBe(400);
    expect(res.body.code).toBe("validation_failed");
  });

  it("refuses a revoked key with 401 invalid_key", async () => {
    const issued = await newKey();
    expect((await admin.post(`/keys/${issued.id}/revoke`, {})).status).toBe(200);
    const res = await exchange(issued.key);
    expect(res.status).toBe(401);
    expect(res.body.code).toBe("invalid_key");
  });

  it("refuses an expired key with 401 key_expired", async () => {
    const issued = await newKey(["prices:read"]);
    await admin.post(`/keys/${issued.id}/rotate`, { gracePeriodSeconds: 1 });
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const res = await exchange(issued.key);
    expect(res.status).toBe(401);
    expect(res.body.code).toBe("key_expired");
  });

  it("refuses a token as the credential: no token for a token", async () => {
    const issued = await newKey();
    const token = await tokenFor(issued.key);
    const res = await exchange(token);
    expect(res.status).toBe(401);
    expect(res.body.code).toBe("invalid_key");
  });

  it("answers 401 missing_credentials with no credential, and 401 for the admin token", async () => {
    const none = await exchange("", undefined, { Authorization: "" });
    expect(none.status).toBe(401);
    expect(none.body.code).toBe("missing_credentials");
    expect(none.headers.get("WWW-Authenticate")).toContain('error="invalid_token"');
    const adminToken = await exchange(env.ADMIN_TOKEN);
    expect(adminToken.status).toBe(401);
  });

  it("refuses unknown body fields and bad types with 400 validation_failed", async () => {
    const issued = await newKey();
    for (const body of [{ scopes: ["prices:read"] }, { expiresIn: "600" }, { expiresIn: 5 }]) {
      const res = await exchange(issued.key, body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.code).toBe("validation_failed");
    }
  });

  it("refuses a body over 8 KiB with 413", async () => {
    const issued = await newKey();
    const res = await exchange(issued.key, { scope: "prices:read ".repeat(1000) });
    expect(res.status).toBe(413);
    expect(res.body.code).toBe("payload_too_large");
  });

  it("answers 503 when the signer is down, and the failed exchange costs no budget", async () => {
    const issued = await newKey(["prices:read"], {
      rateLimit: { limit: 1, periodSeconds: 86_400 },
    });
    const fault = faultSwitch();
    const request = () => ({
      method: "POST",
      headers: { Authorization: `Bearer ${issued.key}` },
    });
    const failed = await fetchWith(
      { SIGNER: failingNamespace(env.SIGNER, fault) },
      "/_keygate/v1/token",
      request(),
    );
    expect(failed.status).toBe(503);
    expect(((await failed.json()) as { code: string }).code).toBe("unavailable");
    expect(fault.refused).toBeGreaterThan(0);
    // the one request of the day is still there
    const ok = await exchange(issued.key);
    expect(ok.status).toBe(200);
    expect(ok.headers.get("RateLimit")).toContain('"key";r=0');
    const limited = await exchange(issued.key);
    expect(limited.status).toBe(429);
    expect(limited.body.code).toBe("rate_limited");
  });
});
