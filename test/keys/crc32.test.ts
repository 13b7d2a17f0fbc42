import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32 } from "../../src/keys/crc32";

/** Bit-by-bit CRC-32 (reflected polynomial 0xEDB88320), independent of the table in src. */
function referenceCrc32(text: string): number {
  let crc = 0xffffffff;
  for (let i = 0; i < text.length; i++) {
    crc ^= text.charCodeAt(i) & 0xff;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe("crc32", () => {
  it("gives the standard check value 0xCBF43926 for '123456789'", () => {
    expect(crc32("123456789")).toBe(0xcbf43926);
  });

  it("gives 0 for the empty string", () => {
    expect(crc32("")).toBe(0);
  });

  it("matches zlib's CRC-32 for known strings", () => {
    expect(crc32("The quick brown fox jumps over the lazy dog")).toBe(0x414fa339);
    expect(crc32("a")).toBe(0xe8b7be43);
    expect(crc32("abc")).toBe(0x352441c2);
  });

  it("returns an unsigned 32-bit integer", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), (text) => {
        const value = crc32(text);
        expect(Number.isInteger(value)).toBe(true);
        expect(value).toBeGreaterThanOrEqual(0);
        expect(value).toBeLessThanOrEqual(0xffffffff);
      }),
    );
  });

  it("agrees with a bit-by-bit reference implementation on ASCII strings", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        expect(crc32(text)).toBe(referenceCrc32(text));
      }),
      { numRuns: 500 },
    );
  });

  it("detects every single-byte substitution in an ASCII string", () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 80 }),
        fc.nat(),
        fc.integer({ min: 0, max: 127 }),
        (text, rawIndex, code) => {
          const index = rawIndex % text.length;
          fc.pre(text.charCodeAt(index) !== code);
          const changed = text.slice(0, index) + String.fromCharCode(code) + text.slice(index + 1);
          expect(crc32(changed)).not.toBe(crc32(text));
        },
      ),
      { numRuns: 500 },
    );
  });
});
