import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BASE32, BASE62, newId, randomString } from "../../src/keys/random";

/** Generous timeout for the heavier loops, so a loaded CI machine does not flake them. */
const SLOW = { timeout: 60_000 };

/**
 * Statistical threshold for every chi-square check in this file.
 *
 * The chi-square statistic is turned into an approximately standard-normal z with the
 * Wilson–Hilferty transform, and a check fails only when z > 8, i.e. a p-value below about
 * 6e-16: a correct uniform generator fails it roughly once in 10^15 runs, so it never flakes.
 * The threshold is still far below what real bias produces: a naive `byte % 62` sampler over
 * the same draws scores z > 50 (the "power" tests below prove the check is not vacuous).
 */
const Z_THRESHOLD = 8;

/** Draws per chunk: randomString fills a buffer of 2·length bytes, kept under 64 KiB. */
const CHUNK = 10_000;

function chiSquare(counts: readonly number[], expected: number): number {
  let sum = 0;
  for (const count of counts) sum += (count - expected) ** 2 / expected;
  return sum;
}

/** Wilson–Hilferty: the z-score of a chi-square statistic with `df` degrees of freedom. */
function chiSquareZ(statistic: number, df: number): number {
  const variance = 2 / (9 * df);
  return (Math.cbrt(statistic / df) - (1 - variance)) / Math.sqrt(variance);
}

/** Counts each alphabet character over `total` characters drawn with `draw`. */
function histogram(
  alphabet: string,
  total: number,
  draw: (alphabet: string, length: number) => string,
): number[] {
  const index = new Map<string, number>();
  for (let i = 0; i < alphabet.length; i++) index.set(alphabet[i]!, i);
  const counts = new Array<number>(alphabet.length).fill(0);
  for (let done = 0; done < total; done += CHUNK) {
    const chunk = draw(alphabet, Math.min(CHUNK, total - done));
    for (const char of chunk) {
      const at = index.get(char);
      if (at === undefined) throw new Error(`character ${JSON.stringify(char)} not in alphabet`);
      counts[at]!++;
    }
  }
  return counts;
}

/** z-score of the uniformity chi-square for `perChar` expected draws of each character. */
function uniformityZ(
  alphabet: string,
  perChar: number,
  draw: (alphabet: string, length: number) => string = randomString,
): number {
  const counts = histogram(alphabet, alphabet.length * perChar, draw);
  expect(counts.reduce((a, b) => a + b, 0)).toBe(alphabet.length * perChar);
  return chiSquareZ(chiSquare(counts, perChar), alphabet.length - 1);
}

/** What randomString would be without rejection sampling: `byte % size`, modulo-biased. */
function naiveModuloString(alphabet: string, length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  let out = "";
  for (const byte of bytes) out += alphabet[byte % alphabet.length];
  return out;
}

/** An alphabet of `size` distinct characters (Latin-1 and beyond). */
function alphabetOfSize(size: number): string {
  let out = "";
  for (let i = 0; i < size; i++) out += String.fromCharCode(0x30 + i);
  return out;
}

const alphabetArb = fc
  .uniqueArray(fc.integer({ min: 0x21, max: 0x2ff }), { minLength: 2, maxLength: 256 })
  .map((codes) => String.fromCharCode(...codes));

describe("alphabets", () => {
  it("BASE62 is the 62 digits and letters in ASCII order", () => {
    expect(BASE62).toHaveLength(62);
    expect(new Set(BASE62).size).toBe(62);
    expect([...BASE62].sort().join("")).toBe(BASE62);
    expect(BASE62).toMatch(/^[0-9A-Za-z]+$/);
  });

  it("BASE32 is Crockford's lower-case base32 without i, l, o, u", () => {
    expect(BASE32).toHaveLength(32);
    expect(new Set(BASE32).size).toBe(32);
    expect([...BASE32].sort().join("")).toBe(BASE32);
    expect(BASE32).toMatch(/^[0-9a-hjkmnp-tv-z]+$/);
    for (const banned of "ilou") expect(BASE32).not.toContain(banned);
  });
});

describe("randomString", () => {
  it("returns exactly `length` characters, all from the alphabet", SLOW, () => {
    fc.assert(
      fc.property(alphabetArb, fc.integer({ min: 0, max: 300 }), (alphabet, length) => {
        const out = randomString(alphabet, length);
        expect(out).toHaveLength(length);
        for (const char of out) expect(alphabet).toContain(char);
      }),
      { numRuns: 300 },
    );
  });

  it("returns the empty string for length 0", () => {
    expect(randomString(BASE62, 0)).toBe("");
  });

  it("works at the alphabet size limits 2 and 256", () => {
    expect(randomString("01", 500)).toMatch(/^[01]{500}$/);
    const full = alphabetOfSize(256);
    const out = randomString(full, 1000);
    expect(out).toHaveLength(1000);
    for (const char of out) expect(full).toContain(char);
  });

  it("refuses alphabets with fewer than 2 or more than 256 characters", () => {
    expect(() => randomString("", 10)).toThrow(RangeError);
    expect(() => randomString("a", 10)).toThrow(RangeError);
    expect(() => randomString(alphabetOfSize(257), 10)).toThrow(RangeError);
  });

  it("fills long strings even when most bytes are rejected (alphabet of 129)", () => {
    // 256 % 129 = 127, so almost half of all bytes are discarded
    const alphabet = alphabetOfSize(129);
    for (const length of [1, 16, 32, 1000])
      expect(randomString(alphabet, length)).toHaveLength(length);
  });

  it("has no modulo bias over BASE62 (chi-square, 62 × 5000 draws)", () => {
    expect(uniformityZ(BASE62, 5000)).toBeLessThan(Z_THRESHOLD);
  });

  it("is uniform over BASE32 (chi-square, 32 × 5000 draws)", () => {
    expect(uniformityZ(BASE32, 5000)).toBeLessThan(Z_THRESHOLD);
  });

  it("has no modulo bias over a 200-character alphabet (chi-square, 200 × 1000 draws)", () => {
    // 256 % 200 = 56: a modulo sampler would make the first 56 characters twice as likely
    expect(uniformityZ(alphabetOfSize(200), 1000)).toBeLessThan(Z_THRESHOLD);
  });

  it("has no modulo bias over a 3-character alphabet (chi-square, 3 × 100000 draws)", () => {
    expect(uniformityZ("abc", 100_000)).toBeLessThan(Z_THRESHOLD);
  });

  it("power check: the same chi-square test flags a naive byte % size sampler", () => {
    // proves the thresholds above are able to see modulo bias, so their passing means something
    expect(uniformityZ(BASE62, 5000, naiveModuloString)).toBeGreaterThan(Z_THRESHOLD * 3);
    expect(uniformityZ(alphabetOfSize(200), 1000, naiveModuloString)).toBeGreaterThan(
      Z_THRESHOLD * 3,
    );
  });

  it(
    "is uniform at every position of a 32-character secret (chi-square per position)",
    SLOW,
    () => {
      const strings = 62 * 500;
      const counts = Array.from({ length: 32 }, () => new Array<number>(62).fill(0));
      for (let n = 0; n < strings; n++) {
        const out = randomString(BASE62, 32);
        for (let i = 0; i < 32; i++) counts[i]![BASE62.indexOf(out[i]!)]!++;
      }
      for (const position of counts) {
        expect(chiSquareZ(chiSquare(position, 500), 61)).toBeLessThan(Z_THRESHOLD);
      }
    },
  );

  it("draws adjacent characters independently (chi-square over BASE62 pairs)", SLOW, () => {
    // 62² = 3844 pair cells, ≈52 expected per cell, non-overlapping pairs
    const pairs = 200_000;
    const counts = new Array<number>(62 * 62).fill(0);
    for (let done = 0; done < pairs;) {
      const take = Math.min(CHUNK / 2, pairs - done);
      const out = randomString(BASE62, take * 2);
      for (let i = 0; i < take * 2; i += 2) {
        counts[BASE62.indexOf(out[i]!) * 62 + BASE62.indexOf(out[i + 1]!)]!++;
      }
      done += take;
    }
    expect(chiSquareZ(chiSquare(counts, pairs / (62 * 62)), 62 * 62 - 1)).toBeLessThan(Z_THRESHOLD);
  });

  it("does not repeat itself across calls", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 10_000; i++) seen.add(randomString(BASE62, 16));
    expect(seen.size).toBe(10_000);
  });
});

describe("newId", () => {
  it("is the prefix, an underscore and 20 lower-case Crockford base32 characters", () => {
    for (const prefix of ["csm", "rot", "evt", "req"]) {
      expect(newId(prefix)).toMatch(new RegExp(`^${prefix}_[0-9a-hjkmnp-tv-z]{20}$`));
    }
  });

  it("honours an explicit length", () => {
    expect(newId("req", 16)).toMatch(/^req_[0-9a-hjkmnp-tv-z]{16}$/);
    expect(newId("x", 1)).toMatch(/^x_[0-9a-hjkmnp-tv-z]$/);
    fc.assert(
      fc.property(
        fc.stringMatching(/^[a-z]{1,8}$/),
        fc.integer({ min: 1, max: 64 }),
        (prefix, length) => {
          const id = newId(prefix, length);
          expect(id.startsWith(`${prefix}_`)).toBe(true);
          expect(id.slice(prefix.length + 1)).toMatch(
            new RegExp(`^[0-9a-hjkmnp-tv-z]{${length}}$`),
          );
        },
      ),
    );
  });

  it("gives unique ids", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) seen.add(newId("csm"));
    expect(seen.size).toBe(20_000);
  });
});
