import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { constantTimeEqual, hashSecret } from "../../src/keys/hash";

async function webCryptoSha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

describe("hashSecret", () => {
  it("gives the known SHA-256 hex digest of 'abc'", () => {
    expect(hashSecret("abc")).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
  });

  it("gives the known SHA-256 hex digest of the empty string", () => {
    expect(hashSecret("")).toBe("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  });

  it("gives the known SHA-256 hex digest of a key-shaped string", () => {
    expect(hashSecret("kg_test")).toBe(
      "c1cebbda37b24df34970cea6edd12b084464d3c73cb8ffd60f6fedfcb116a50a",
    );
  });

  it("hashes the UTF-8 encoding of the string", () => {
    // SHA-256 of the bytes C3 A9
    expect(hashSecret("é")).toBe(
      "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c",
    );
  });

  it("always returns 64 lower-case hex characters, deterministically", () => {
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 100 }), (text) => {
        const first = hashSecret(text);
        expect(first).toMatch(/^[0-9a-f]{64}$/);
        expect(hashSecret(text)).toBe(first);
      }),
      { numRuns: 200 },
    );
  });

  it("matches WebCrypto's SHA-256 of the UTF-8 bytes for any string", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.string({ unit: "grapheme", maxLength: 200 }),
          // any UTF-16 code units, lone surrogates included
          fc.string({ unit: "binary", maxLength: 200 }),
          // ASCII of any length up to several blocks (an access token is ~500 characters)
          fc.string({ maxLength: 1200 }),
        ),
        async (text) => {
          expect(hashSecret(text)).toBe(await webCryptoSha256(text));
        },
      ),
      { numRuns: 300 },
    );
  });

  it("matches WebCrypto at every length around SHA-256's padding boundaries", async () => {
    for (const length of [0, 1, 54, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129]) {
      const text = "k".repeat(length);
      expect(hashSecret(text), `length ${length}`).toBe(await webCryptoSha256(text));
    }
  });

  it("hashes a lone surrogate as TextEncoder encodes it (U+FFFD)", async () => {
    expect(hashSecret("a\uD800b")).toBe(hashSecret("a\uFFFDb"));
    expect(hashSecret("\uDC00")).toBe(await webCryptoSha256("\uDC00"));
  });

  it("gives different digests for different strings", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "grapheme", maxLength: 50 }),
        fc.string({ unit: "grapheme", maxLength: 50 }),
        (a, b) => {
          fc.pre(a !== b);
          expect(hashSecret(a)).not.toBe(hashSecret(b));
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe("constantTimeEqual", () => {
  it("is true for identical strings", () => {
    expect(constantTimeEqual("abc", "abc")).toBe(true);
    expect(constantTimeEqual("", "")).toBe(true);
    const digest = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
    expect(constantTimeEqual(digest, digest.slice())).toBe(true);
  });

  it("is false for equal-length strings that differ", () => {
    expect(constantTimeEqual("abc", "abd")).toBe(false);
    expect(constantTimeEqual("abc", "Abc")).toBe(false);
    expect(constantTimeEqual("a".repeat(64), "a".repeat(63) + "b")).toBe(false);
  });

  it("is false for strings of different lengths", () => {
    expect(constantTimeEqual("abc", "abcd")).toBe(false);
    expect(constantTimeEqual("abcd", "abc")).toBe(false);
    expect(constantTimeEqual("", "a")).toBe(false);
    expect(constantTimeEqual("a", "")).toBe(false);
  });

  it("is false when the UTF-8 byte lengths differ even if the UTF-16 lengths match", () => {
    expect(constantTimeEqual("é", "e")).toBe(false);
  });

  it("is false when the UTF-8 byte lengths match but the characters differ", () => {
    expect(constantTimeEqual("é", "ab")).toBe(false);
  });

  it("agrees with === on well-formed strings", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "grapheme", maxLength: 40 }),
        fc.string({ unit: "grapheme", maxLength: 40 }),
        (a, b) => {
          expect(constantTimeEqual(a, b)).toBe(a === b);
          expect(constantTimeEqual(a, a)).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it("is false for any one-character change of a hex digest", () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[0-9a-f]{64}$/),
        fc.nat({ max: 63 }),
        fc.constantFrom(..."0123456789abcdef"),
        (digest, index, replacement) => {
          fc.pre(digest[index] !== replacement);
          const changed = digest.slice(0, index) + replacement + digest.slice(index + 1);
          expect(constantTimeEqual(digest, changed)).toBe(false);
          expect(constantTimeEqual(changed, digest)).toBe(false);
        },
      ),
      { numRuns: 300 },
    );
  });
});
