import { describe, expect, it } from "vitest";
import {
  dropTime,
  markPublished,
  newRing,
  nextDrop,
  promotableAt,
  pruneRing,
  publicJwks,
  recordSigned,
  replaceRing,
  rotateRing,
  type SigningKey,
} from "../../src/tokens/key-ring";

const MIN = 60_000;

function key(kid: string, extra: Partial<SigningKey> = {}): SigningKey {
  return {
    kid,
    alg: "ES256",
    publicJwk: { kty: "EC", crv: "P-256", x: "x", y: "y" },
    privateJwk: { kty: "EC", crv: "P-256", x: "x", y: "y", d: "secret" },
    createdAt: 0,
    publishedAt: null,
    activatedAt: null,
    longestTtlSeconds: 0,
    retiredAt: null,
    dropAfter: null,
    ...extra,
  };
}

const retention = { maxTtlSeconds: 3600, toleranceSeconds: 30 };

describe("key ring (pure)", () => {
  it("keeps a retired key for max(longest token TTL, assertion TTL) plus tolerance", () => {
    const now = 1_000_000;
    expect(dropTime(key("a"), now, { maxTtlSeconds: 3600, toleranceSeconds: 30 })).toBe(
      now + 3630_000,
    );
    // a key that signed a longer token than today's setting keeps it published that long
    expect(dropTime(key("a", { longestTtlSeconds: 7200 }), now, retention)).toBe(now + 7230_000);
  });

  it("fixes the drop time at retirement", () => {
    const ring = newRing(key("a"), key("b", { publishedAt: 0 }), 0);
    const rotated = rotateRing(ring, key("c"), 10 * MIN, retention);
    expect(rotated.current.kid).toBe("b");
    expect(rotated.current.activatedAt).toBe(10 * MIN);
    expect(rotated.next.kid).toBe("c");
    expect(rotated.previous).toEqual([
      expect.objectContaining({ kid: "a", retiredAt: 10 * MIN, dropAfter: 10 * MIN + 3630_000 }),
    ]);
    expect(nextDrop(rotated)).toBe(10 * MIN + 3630_000);
  });

  it("promotes next only once it has been published for the minimum age", () => {
    const unpublished = newRing(key("a"), key("b"), 0);
    expect(promotableAt(unpublished, 3 * MIN)).toBeNull();
    const published = markPublished(unpublished, 5 * MIN);
    expect(published.next.publishedAt).toBe(5 * MIN);
    expect(promotableAt(published, 3 * MIN)).toBe(8 * MIN);
    // marking again keeps the first publication time
    expect(markPublished(published, 9 * MIN).next.publishedAt).toBe(5 * MIN);
  });

  it("drops retired keys once their drop time has passed", () => {
    const ring = {
      ...newRing(key("a"), key("b"), 0),
      previous: [key("old", { dropAfter: 100 }), key("older", { dropAfter: 50 })],
    };
    expect(pruneRing(ring, 50).dropped).toEqual(["older"]);
    expect(pruneRing(ring, 100).ring.previous).toEqual([]);
    expect(pruneRing(ring, 10).dropped).toEqual([]);
  });

  it("an emergency replaces every key, the stored next included", () => {
    const ring = {
      ...newRing(key("a"), key("b"), 0),
      previous: [key("old", { dropAfter: 100 })],
    };
    const replaced = replaceRing(ring, key("x"), key("y"), 5);
    expect(replaced.dropped.sort()).toEqual(["a", "b", "old"]);
    expect(replaced.ring.current.kid).toBe("x");
    expect(replaced.ring.next.kid).toBe("y");
    expect(replaced.ring.previous).toEqual([]);
  });

  it("remembers the longest lifetime the current key signed", () => {
    const ring = newRing(key("a"), key("b"), 0);
    const noted = recordSigned(ring, "a", 600)!;
    expect(noted.current.longestTtlSeconds).toBe(600);
    expect(recordSigned(noted, "a", 120)).toBeNull();
    expect(recordSigned(noted, "b", 9999)).toBeNull();
  });

  it("publishes public members only", () => {
    const jwks = publicJwks(newRing(key("a"), key("b"), 0));
    expect(jwks.keys).toEqual([
      { kty: "EC", crv: "P-256", x: "x", y: "y", kid: "a", alg: "ES256", use: "sig" },
      { kty: "EC", crv: "P-256", x: "x", y: "y", kid: "b", alg: "ES256", use: "sig" },
    ]);
  });
});
