import { env, SELF } from "cloudflare:test";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JSONWebKeySet } from "jose";
import { beforeEach, describe, expect, it } from "vitest";
import { createAssertionVerifier } from "../../src/origin/verify-assertion.js";
import { stubOrigin } from "../support/origin-stub";
import { newKey, type IssuedKey } from "../support/api";
import { failingNamespace, faultSwitch } from "../support/faults";
import { BASE, claimsOf, fetchWith, rotateSigningKeys, tokenFor } from "./fixtures";

/**
 * `X-Keygate-Assertion` on proxied requests. The origin is the Worker's outbound `fetch`,
 * stubbed in this isolate (the Worker under test runs in it too), so every upstream request
 * is seen here.
 */

const ORIGIN = "https://origin.test";
const origin = stubOrigin();

async function proxied(
  credential: string | null,
  path = "/prices/eur",
  vars: Partial<typeof env> = {},
  headers: Record<string, string> = {},
) {
  return fetchWith({ ORIGIN_URL: `${ORIGIN}/api`, ...vars }, path, {
    headers: { ...(credential ? { Authorization: `Bearer ${credential}` } : {}), ...headers },
  });
}

async function keySet() {
  const res = await SELF.fetch(`${BASE}/.well-known/jwks.json`);
  return createLocalJWKSet((await res.json()) as JSONWebKeySet);
}

function assertionOf(request: Request | undefined): string {
  const value = request?.headers.get("X-Keygate-Assertion");
  if (!value) throw new Error("no assertion reached the origin");
  return value;
}

describe("origin assertions", () => {
  let issued: IssuedKey;
  beforeEach(async () => {
    issued = await newKey(["prices:read"]);
  });

  it("every proxied request carries a 2-minute assertion for the origin, verifiable with the JWKS", async () => {
    const res = await proxied(issued.key);
    expect(res.status).toBe(200);
    expect(origin.requests).toHaveLength(1);
    const assertion = assertionOf(origin.requests[0]);
    const { payload, protectedHeader } = await jwtVerify(assertion, await keySet(), {
      issuer: "keygate",
      audience: ORIGIN,
      typ: "keygate-assertion+jwt",
      algorithms: ["ES256"],
    });
    expect(protectedHeader.kid).toBeTruthy();
    expect(payload).toMatchObject({
      sub: issued.id,
      cid: issued.consumerId,
      ver: 1,
      scope: "prices:read",
    });
    expect(payload.exp! - payload.iat!).toBe(120);
  });

  it("the package's origin helper accepts it and answers who Keygate verified", async () => {
    await proxied(issued.key);
    const verify = createAssertionVerifier({ keys: await keySet(), audience: `${ORIGIN}/api` });
    expect(await verify(assertionOf(origin.requests[0]))).toMatchObject({
      consumerId: issued.consumerId,
      keyId: issued.id,
      keyVersion: 1,
      scopes: ["prices:read"],
    });
    const elsewhere = createAssertionVerifier({
      keys: await keySet(),
      audience: "https://other.test",
    });
    await expect(elsewhere(assertionOf(origin.requests[0]))).rejects.toMatchObject({
      code: "invalid",
    });
  });

  it("requests made with an access token carry the token's narrowed scopes", async () => {
    const wide = await newKey(["prices:read", "orders:read"]);
    const token = await tokenFor(wide.key, { scope: "prices:read" });
    expect((await proxied(token)).status).toBe(200);
    expect(claimsOf(assertionOf(origin.requests[0])).scope).toBe("prices:read");
  });

  it("is reused for one identity and origin, and never sent to another origin", async () => {
    await proxied(issued.key);
    await proxied(issued.key);
    expect(assertionOf(origin.requests[1])).toBe(assertionOf(origin.requests[0]));
    await proxied(issued.key, "/prices/eur", { ORIGIN_URL: "https://second-origin.test" });
    const second = assertionOf(origin.requests[2]);
    expect(second).not.toBe(assertionOf(origin.requests[0]));
    expect(claimsOf(second).aud).toBe("https://second-origin.test");
  });

  it("public routes and refused requests carry none, and a client's own is stripped", async () => {
    const forged = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.";
    await proxied(null, "/public/x", {}, { "X-Keygate-Assertion": forged });
    expect(origin.requests).toHaveLength(1);
    expect(origin.requests[0]!.headers.get("X-Keygate-Assertion")).toBeNull();
    expect((await proxied("kg_not_a_key")).status).toBe(401);
    expect(origin.requests).toHaveLength(1);
  });

  it("after an emergency rotation this isolate stops sending assertions signed by a dropped key", async () => {
    await proxied(issued.key);
    const before = decodeProtectedHeader(assertionOf(origin.requests[0])).kid;
    expect((await rotateSigningKeys(true)).status).toBe(200);
    await proxied(issued.key);
    const after = assertionOf(origin.requests[1]);
    expect(decodeProtectedHeader(after).kid).not.toBe(before);
    await jwtVerify(after, await keySet(), { audience: ORIGIN, issuer: "keygate" });
  });

  it("answers 503 and calls no origin when no assertion can be signed", async () => {
    const fresh = await newKey(["prices:read"]);
    const fault = faultSwitch();
    const res = await proxied(fresh.key, "/prices/eur", {
      SIGNER: failingNamespace(env.SIGNER, fault),
    });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe("unavailable");
    expect(origin.requests).toHaveLength(0);
  });
});
