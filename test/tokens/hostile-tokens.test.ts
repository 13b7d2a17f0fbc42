import { env } from "cloudflare:test";
import { CompactEncrypt, exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import { beforeAll, describe, expect, it } from "vitest";
import { newKey, withKey, type IssuedKey } from "../support/api";
import { counting } from "../support/faults";
import {
  accessClaims,
  fetchWith,
  signerStub,
  signWithRealKey,
  storedRing,
  tokenFor,
} from "./fixtures";

/**
 * Tokens an attacker can build, each refused with 401 by the front door. Where a refusal
 * must come from one check alone, the token is signed with the signer's real private key,
 * so nothing else could be what refuses it.
 */

let issued: IssuedKey;
let kid: string;
const encoder = new TextEncoder();
const AT = { typ: "at+jwt" };

beforeAll(async () => {
  issued = await newKey(["prices:read"]);
  kid = (await signerStub().summary()).current.kid;
});

const b64 = (value: unknown) =>
  btoa(JSON.stringify(value)).replace(/=+$/, "").replace(/\+/g, "-").replace(/\//g, "_");

async function expect401(token: string, code = "invalid_key", path = "/anything") {
  const res = await withKey(token, path);
  expect(res.status).toBe(401);
  expect(res.headers.get("WWW-Authenticate")).toContain('error="invalid_token"');
  expect(((await res.json()) as { code: string }).code).toBe(code);
}

async function attackerKey() {
  const pair = await generateKeyPair("ES256", { extractable: true });
  return { ...pair, publicJwk: await exportJWK(pair.publicKey) };
}

describe("hostile tokens", () => {
  it("control: a well-formed token signed with the real key is accepted", async () => {
    const token = await signWithRealKey(AT, accessClaims(issued));
    expect((await withKey(token, "/prices/eur")).status).toBe(200);
  });

  it("refuses alg none", async () => {
    const unsigned = `${b64({ alg: "none", kid, typ: "at+jwt" })}.${b64(accessClaims(issued))}.`;
    await expect401(unsigned);
    await expect401(`${unsigned}AAAA`);
  });

  it("refuses HS256 signed with the public key's bytes", async () => {
    const { current } = await storedRing();
    const publicJwk = { ...current.publicJwk };
    delete publicJwk.d;
    for (const secret of [
      encoder.encode(JSON.stringify(publicJwk)),
      encoder.encode(JSON.stringify(current.publicJwk)),
      encoder.encode(`${publicJwk.x}${publicJwk.y}`),
    ]) {
      const token = await new SignJWT(accessClaims(issued))
        .setProtectedHeader({ alg: "HS256", kid, typ: "at+jwt" })
        .sign(secret);
      await expect401(token);
    }
  });

  it("refuses an unknown kid", async () => {
    const attacker = await attackerKey();
    const token = await new SignJWT(accessClaims(issued))
      .setProtectedHeader({ alg: "ES256", kid: "sk_not_a_real_kid", typ: "at+jwt" })
      .sign(attacker.privateKey);
    await expect401(token);
  });

  it("refuses the real kid signed with an attacker's key", async () => {
    const attacker = await attackerKey();
    const token = await new SignJWT(accessClaims(issued))
      .setProtectedHeader({ alg: "ES256", kid, typ: "at+jwt" })
      .sign(attacker.privateKey);
    await expect401(token);
  });

  it("refuses jku, jwk and x5u headers even on a token the real key signed", async () => {
    const attacker = await attackerKey();
    const headers: Record<string, unknown>[] = [
      { jku: "https://attacker.example/jwks.json" },
      { jwk: attacker.publicJwk as JWK },
      { x5u: "https://attacker.example/cert.pem" },
      { x5c: ["MIIB"] },
    ];
    for (const header of headers) {
      await expect401(await signWithRealKey({ ...AT, ...header }, accessClaims(issued)));
    }
  });

  it("refuses a JWE", async () => {
    const jwe = await new CompactEncrypt(encoder.encode(JSON.stringify(accessClaims(issued))))
      .setProtectedHeader({ alg: "dir", enc: "A256GCM", kid, typ: "at+jwt" })
      .encrypt(crypto.getRandomValues(new Uint8Array(32)));
    expect(jwe.split(".")).toHaveLength(5);
    await expect401(jwe);
  });

  it("refuses a token for another audience or from another issuer", async () => {
    await expect401(await signWithRealKey(AT, accessClaims(issued, { aud: "someone-else" })));
    await expect401(await signWithRealKey(AT, accessClaims(issued, { iss: "not-keygate" })));
  });

  it("refuses typ JWT, and no typ at all", async () => {
    await expect401(await signWithRealKey({ typ: "JWT" }, accessClaims(issued)));
    await expect401(await signWithRealKey({}, accessClaims(issued)));
  });

  it("refuses an origin assertion presented as a bearer token", async () => {
    const claims = accessClaims(issued);
    const typOnly = await signWithRealKey({ typ: "keygate-assertion+jwt" }, claims);
    await expect401(typOnly);
    const genuineShape = await signWithRealKey(
      { typ: "keygate-assertion+jwt" },
      { ...claims, aud: "https://origin.example" },
    );
    await expect401(genuineShape);
  });

  it("refuses a tampered payload and a token missing Keygate's claims", async () => {
    const token = await tokenFor(issued.key);
    const [header, , signature] = token.split(".");
    const widened = { ...accessClaims(issued), scope: "*" };
    await expect401(`${header}.${b64(widened)}.${signature}`);
    const { cid: _cid, ...noConsumer } = accessClaims(issued);
    await expect401(await signWithRealKey(AT, noConsumer));
  });

  it("refuses an oversized token before any storage read", async () => {
    const kv = counting(env.KEYS);
    const padding = "A".repeat(5000);
    const oversized = `eyJhbGciOiJFUzI1NiJ9.${padding}.${padding}`;
    const res = await fetchWith({ KEYS: kv.binding }, "/anything", {
      headers: { Authorization: `Bearer ${oversized}` },
    });
    expect(res.status).toBe(401);
    expect(kv.calls).toEqual({});
    const large = await signWithRealKey(AT, { ...accessClaims(issued), pad: "x".repeat(4000) });
    const again = await fetchWith({ KEYS: kv.binding }, "/anything", {
      headers: { Authorization: `Bearer ${large}` },
    });
    expect(again.status).toBe(401);
    expect(kv.calls).toEqual({});
  });

  it("answers key_expired for an expired token", async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await signWithRealKey(
      AT,
      accessClaims(issued, { iat: now - 720, exp: now - 120 }),
    );
    await expect401(expired, "key_expired");
  });

  it("accepts a token expired within the 30 s clock tolerance", async () => {
    const now = Math.floor(Date.now() / 1000);
    const token = await signWithRealKey(
      AT,
      accessClaims(issued, { iat: now - 610, exp: now - 10 }),
    );
    expect((await withKey(token, "/prices/eur")).status).toBe(200);
  });

  it("refuses a token not yet valid (nbf beyond the tolerance), accepts one within it", async () => {
    const now = Math.floor(Date.now() / 1000);
    await expect401(await signWithRealKey(AT, accessClaims(issued, { nbf: now + 120 })));
    const soon = await signWithRealKey(AT, accessClaims(issued, { nbf: now + 10 }));
    expect((await withKey(soon, "/prices/eur")).status).toBe(200);
  });
});
