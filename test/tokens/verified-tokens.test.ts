import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { forgetJwks } from "../../src/tokens/jwks-cache";
import { newKey, withKey } from "../support/api";
import { status, tokenFor } from "./fixtures";

/**
 * The isolate's cache of verified tokens: a JWT seen again costs a hash and a lookup, not a
 * signature check, and never outlives the token's exp or the JWKS copy it was checked with.
 */

beforeEach(() => forgetJwks());
afterEach(() => {
  vi.restoreAllMocks();
  vi.useRealTimers();
});

describe("verified-token cache", () => {
  it("checks a token's signature once per isolate, not once per request", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key);
    const verify = vi.spyOn(crypto.subtle, "verify");
    for (let i = 0; i < 5; i++) expect(await status(token)).toBe(200);
    expect(verify).toHaveBeenCalledTimes(1);
  });

  it("checks the signature again once the JWKS copy it was checked with is replaced", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key);
    const verify = vi.spyOn(crypto.subtle, "verify");
    expect(await status(token)).toBe(200);
    forgetJwks();
    expect(await status(token)).toBe(200);
    expect(verify).toHaveBeenCalledTimes(2);
  });

  it("never serves a token from the cache past its exp", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key, { expiresIn: 10 });
    expect(await status(token)).toBe(200);
    // past exp and the 30 s clock tolerance, while the JWKS copy (60 s) is still fresh
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.now() + 10_000 + 31_000);
    const res = await withKey(token, "/prices/eur");
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe("key_expired");
  });

  it("keeps a token cached through the clock tolerance after exp, then refuses it", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key, { expiresIn: 10 });
    const verify = vi.spyOn(crypto.subtle, "verify");
    const start = Date.now();
    vi.useFakeTimers({ toFake: ["Date"] });
    // past exp, inside the 30 s tolerance: accepted, and checked in full only once
    vi.setSystemTime(start + 10_000 + 5_000);
    for (let i = 0; i < 3; i++) expect(await status(token)).toBe(200);
    expect(verify).toHaveBeenCalledTimes(1);
    vi.setSystemTime(start + 10_000 + 31_000);
    expect(await status(token)).toBe(401);
  });

  it("a token differing by one character is checked in full, not matched to a cached one", async () => {
    const issued = await newKey(["prices:read"]);
    const token = await tokenFor(issued.key);
    expect(await status(token)).toBe(200);
    const [header, payload, signature] = token.split(".") as [string, string, string];
    const flipped =
      signature.slice(0, -2) + (signature.at(-2) === "A" ? "B" : "A") + signature.at(-1);
    expect(await status(`${header}.${payload}.${flipped}`)).toBe(401);
  });
});
