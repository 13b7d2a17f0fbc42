import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { crc32 } from "../../src/keys/crc32";
import {
  CHECKSUM_LENGTH,
  KEY_ID_LENGTH,
  KEY_ID_PATTERN,
  MAX_SECRET_LENGTH,
  PREFIX_PATTERN,
  RANDOM_LENGTH,
  checksumOf,
  generateSecret,
  newKeyId,
  parseSecret,
  scannerPattern,
  secretHint,
  secretPattern,
} from "../../src/keys/key-format";
import { BASE32, BASE62 } from "../../src/keys/random";

/** Generous timeout for the heavier loops, so a loaded CI machine does not flake them. */
const SLOW = { timeout: 60_000 };

const LOWER = "abcdefghijklmnopqrstuvwxyz";
const DIGITS = "0123456789";

/** Characters tried as replacements/insertions: every key character and some that never are. */
const UNIVERSE = [...new Set(BASE62 + BASE32 + "_")]
  .concat(["-", ".", " ", "\t", "\n", "\0", "/", "+", "=", "é", "İ", "\u00a0", "\uffff"])
  .join("");

/** A valid KEY_PREFIX: 1–16 of [a-z0-9], starting with a letter. */
const prefixArb = fc.stringMatching(PREFIX_PATTERN);

/** A fresh key with an arbitrary valid prefix and a key id from newKeyId. */
const keyArb = prefixArb.map((prefix) => {
  const keyId = newKeyId();
  return { prefix, keyId, key: generateSecret(prefix, keyId) };
});

/** Prefixes with every length and both kinds of second character, for exhaustive checks. */
const SAMPLE_PREFIXES = [
  "kg",
  "k",
  "a1",
  "sk",
  "x9z",
  "live",
  "abcdefghijklmnop",
  "z000000000000009",
];

/** The characters the format allows at `index` of a key with `prefix`. */
function alphabetAt(prefix: string, index: number): string {
  if (index === 0) return LOWER;
  if (index < prefix.length) return LOWER + DIGITS;
  if (index === prefix.length || index === prefix.length + 1 + KEY_ID_LENGTH) return "_";
  if (index < prefix.length + 1 + KEY_ID_LENGTH) return BASE32;
  return BASE62;
}

function substitute(text: string, index: number, char: string): string {
  return text.slice(0, index) + char + text.slice(index + 1);
}

function swapAdjacent(text: string, index: number): string {
  return text.slice(0, index) + text[index + 1] + text[index] + text.slice(index + 2);
}

/** Base62 digits back to a number (inverse of the checksum encoding). */
function decodeBase62(digits: string): number {
  let value = 0;
  for (const digit of digits) value = value * 62 + BASE62.indexOf(digit);
  return value;
}

function expectValid(key: string, prefix: string, keyId: string): void {
  expect(parseSecret(key, prefix)).toEqual({ prefix, keyId, secret: key });
}

describe("format constants", () => {
  it("pins the lengths: 16-char key id, 32 random, 6 checksum, 72 at most", () => {
    expect(KEY_ID_LENGTH).toBe(16);
    expect(RANDOM_LENGTH).toBe(32);
    expect(CHECKSUM_LENGTH).toBe(6);
    expect(MAX_SECRET_LENGTH).toBe(72);
  });

  it("MAX_SECRET_LENGTH is the length of a key with a 16-character prefix", () => {
    expect(generateSecret("abcdefghijklmnop", newKeyId())).toHaveLength(MAX_SECRET_LENGTH);
  });

  it("PREFIX_PATTERN accepts 1–16 of [a-z0-9] starting with a letter, and nothing else", () => {
    for (const ok of ["k", "kg", "a1", "z9z9", "abcdefghijklmnop"]) {
      expect(PREFIX_PATTERN.test(ok)).toBe(true);
    }
    for (const bad of [
      "",
      "1kg",
      "Kg",
      "kG",
      "k_g",
      "k-g",
      "kg_",
      "abcdefghijklmnopq",
      "kg\n",
      " kg",
      "é",
    ]) {
      expect(PREFIX_PATTERN.test(bad)).toBe(false);
    }
  });

  it("KEY_ID_PATTERN accepts exactly 16 lower-case Crockford base32 characters", () => {
    expect(KEY_ID_PATTERN.test("0123456789abcdef")).toBe(true);
    expect(KEY_ID_PATTERN.test("ghjkmnpqrstvwxyz")).toBe(true);
    for (const bad of [
      "",
      "0123456789abcde",
      "0123456789abcdef0",
      "0123456789ABCDEF",
      "0123456789abcdei",
      "0123456789abcdel",
      "0123456789abcdeo",
      "0123456789abcdeu",
      "0123456789abcde_",
    ]) {
      expect(KEY_ID_PATTERN.test(bad)).toBe(false);
    }
  });
});

describe("newKeyId", () => {
  it("returns 16 lower-case Crockford base32 characters", () => {
    for (let i = 0; i < 1000; i++) {
      const keyId = newKeyId();
      expect(keyId).toHaveLength(KEY_ID_LENGTH);
      expect(keyId).toMatch(KEY_ID_PATTERN);
    }
  });
});

describe("checksumOf", () => {
  it("encodes CRC-32 as 6 base62 digits, most significant first", () => {
    // crc32("123456789") = 0xCBF43926 = 3421780262 = 3·62⁵ + 45·62⁴ + 61·62³ + 27·62² + 22·62 + 14
    expect(checksumOf("123456789")).toBe("3jZRME");
    expect(checksumOf("")).toBe("000000");
  });

  it("always gives 6 base62 digits that decode back to the CRC-32 (first digit 0–4)", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (body) => {
        const checksum = checksumOf(body);
        // 2³² − 1 < 5·62⁵, so the leading digit can only be 0–4
        expect(checksum).toMatch(/^[0-4][0-9A-Za-z]{5}$/);
        expect(decodeBase62(checksum)).toBe(crc32(body));
      }),
      { numRuns: 500 },
    );
  });
});

describe("generateSecret / parseSecret round trip", () => {
  it("parses a known key (golden vector) and returns its key id", () => {
    const key = "kg_0123456789abcdef_0123456789ABCDEFGHIJabcdefghij0149YfdF";
    expectValid(key, "kg", "0123456789abcdef");
    expect(parseSecret(key.slice(0, -1) + "G", "kg")).toBeNull();
  });

  it("makes keys of the shape <prefix>_<keyId>_<32 random><6 checksum>", () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, keyId, key }) => {
        expect(key).toHaveLength(prefix.length + 1 + KEY_ID_LENGTH + 1 + RANDOM_LENGTH + 6);
        expect(key.length).toBeLessThanOrEqual(MAX_SECRET_LENGTH);
        expect(key.startsWith(`${prefix}_${keyId}_`)).toBe(true);
        const tail = key.slice(prefix.length + 1 + KEY_ID_LENGTH + 1);
        expect(tail).toMatch(/^[0-9A-Za-z]{38}$/);
        expect(tail.slice(RANDOM_LENGTH)).toBe(checksumOf(key.slice(0, -CHECKSUM_LENGTH)));
      }),
      { numRuns: 500 },
    );
  });

  it("every generated key parses, with the right prefix and key id", SLOW, () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, keyId, key }) => {
        expectValid(key, prefix, keyId);
      }),
      { numRuns: 1000 },
    );
  });

  it("every generated key parses for arbitrary valid key ids too", () => {
    fc.assert(
      fc.property(prefixArb, fc.stringMatching(KEY_ID_PATTERN), (prefix, keyId) => {
        expectValid(generateSecret(prefix, keyId), prefix, keyId);
      }),
      { numRuns: 500 },
    );
  });

  it("every generated key passes its checksum", () => {
    fc.assert(
      fc.property(keyArb, ({ key }) => {
        const cut = key.length - CHECKSUM_LENGTH;
        expect(checksumOf(key.slice(0, cut))).toBe(key.slice(cut));
      }),
      { numRuns: 500 },
    );
  });

  it("every generated key matches secretPattern(prefix)", () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, key }) => {
        expect(secretPattern(prefix).test(key)).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it("every generated key matches the published scanner regex, whole", () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, key }) => {
        const match = new RegExp(scannerPattern(prefix)).exec(key);
        expect(match?.[0]).toBe(key);
        expect(match?.index).toBe(0);
      }),
      { numRuns: 500 },
    );
  });

  it("generates a different secret for each call with the same key id", () => {
    const keyId = newKeyId();
    const first = generateSecret("kg", keyId);
    const second = generateSecret("kg", keyId);
    expect(first).not.toBe(second);
    expectValid(first, "kg", keyId);
    expectValid(second, "kg", keyId);
  });
});

describe("generateSecret input validation", () => {
  it("refuses prefixes that do not match PREFIX_PATTERN", () => {
    const keyId = newKeyId();
    for (const bad of ["", "1kg", "Kg", "k_g", "kg-", "abcdefghijklmnopq", "kg\n", "k.g", "k+"]) {
      expect(() => generateSecret(bad, keyId)).toThrow(RangeError);
    }
    fc.assert(
      fc.property(
        fc.string({ maxLength: 20 }).filter((s) => !PREFIX_PATTERN.test(s)),
        (bad) => {
          expect(() => generateSecret(bad, keyId)).toThrow(RangeError);
        },
      ),
    );
  });

  it("refuses key ids that do not match KEY_ID_PATTERN", () => {
    for (const bad of [
      "",
      "0123456789abcde",
      "0123456789abcdef0",
      "0123456789ABCDEF",
      "0123456789abcdeu",
      "0123456789abcdei",
      "0123456789abcd_f",
    ]) {
      expect(() => generateSecret("kg", bad)).toThrow(RangeError);
    }
    fc.assert(
      fc.property(
        fc.string({ maxLength: 20 }).filter((s) => !KEY_ID_PATTERN.test(s)),
        (bad) => {
          expect(() => generateSecret("kg", bad)).toThrow(RangeError);
        },
      ),
    );
  });
});

describe("parseSecret refuses altered keys", () => {
  it("rejects any single-character change to a character of the position's own alphabet", () => {
    fc.assert(
      fc.property(keyArb, fc.nat(), fc.nat(), ({ prefix, key }, rawIndex, rawChar) => {
        const index = rawIndex % key.length;
        const choices = [...alphabetAt(prefix, index)].filter((c) => c !== key[index]);
        fc.pre(choices.length > 0); // the "_" separators have no same-alphabet alternative
        const changed = substitute(key, index, choices[rawChar % choices.length]!);
        expect(parseSecret(changed, prefix)).toBeNull();
      }),
      { numRuns: 2000 },
    );
  });

  it("rejects any single-character change to an arbitrary UTF-16 code unit", () => {
    fc.assert(
      fc.property(
        keyArb,
        fc.nat(),
        fc.integer({ min: 0, max: 0xffff }),
        ({ prefix, key }, rawIndex, code) => {
          const index = rawIndex % key.length;
          const char = String.fromCharCode(code);
          fc.pre(char !== key[index]);
          expect(parseSecret(substitute(key, index, char), prefix)).toBeNull();
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("rejects any single-character change (exhaustive over positions and characters)", SLOW, () => {
    for (const prefix of SAMPLE_PREFIXES) {
      for (let round = 0; round < 3; round++) {
        const key = generateSecret(prefix, newKeyId());
        for (let index = 0; index < key.length; index++) {
          for (const char of UNIVERSE) {
            if (char === key[index]) continue;
            const changed = substitute(key, index, char);
            if (parseSecret(changed, prefix) !== null) {
              throw new Error(`accepted ${JSON.stringify(changed)} (changed index ${index})`);
            }
          }
        }
      }
    }
  });

  it("rejects a change to a character of the checksum itself", () => {
    fc.assert(
      fc.property(keyArb, fc.nat({ max: CHECKSUM_LENGTH - 1 }), fc.nat(), (k, offset, raw) => {
        const index = k.key.length - CHECKSUM_LENGTH + offset;
        const choices = [...BASE62].filter((c) => c !== k.key[index]);
        const changed = substitute(k.key, index, choices[raw % choices.length]!);
        expect(parseSecret(changed, k.prefix)).toBeNull();
      }),
      { numRuns: 500 },
    );
  });

  it("control: re-checksumming a changed key id or random part makes it parse again", () => {
    // shows that the single-character rejections inside the body come from the checksum
    fc.assert(
      fc.property(keyArb, fc.nat(), fc.nat(), ({ prefix, key }, rawIndex, rawChar) => {
        const start = prefix.length + 1;
        const bodyLength = key.length - CHECKSUM_LENGTH;
        const index = start + (rawIndex % (bodyLength - start));
        const choices = [...alphabetAt(prefix, index)].filter((c) => c !== key[index]);
        fc.pre(choices.length > 0);
        const body = substitute(
          key.slice(0, bodyLength),
          index,
          choices[rawChar % choices.length]!,
        );
        const resealed = body + checksumOf(body);
        expect(parseSecret(body + key.slice(bodyLength), prefix)).toBeNull();
        expectValid(resealed, prefix, resealed.slice(start, start + KEY_ID_LENGTH));
      }),
      { numRuns: 500 },
    );
  });

  it("rejects the deletion of any one character", () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, key }) => {
        for (let index = 0; index < key.length; index++) {
          const changed = key.slice(0, index) + key.slice(index + 1);
          expect(parseSecret(changed, prefix)).toBeNull();
        }
      }),
      { numRuns: 200 },
    );
  });

  it("rejects the insertion of any one character anywhere", SLOW, () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, key }) => {
        for (let index = 0; index <= key.length; index++) {
          for (const char of UNIVERSE) {
            const changed = key.slice(0, index) + char + key.slice(index);
            if (parseSecret(changed, prefix) !== null) {
              throw new Error(`accepted ${JSON.stringify(changed)} (inserted at ${index})`);
            }
          }
        }
      }),
      { numRuns: 30 },
    );
  });

  it("rejects the insertion of an arbitrary string (including astral characters)", SLOW, () => {
    fc.assert(
      fc.property(
        keyArb,
        fc.nat(),
        fc.string({ unit: "binary", minLength: 1, maxLength: 4 }),
        ({ prefix, key }, rawIndex, extra) => {
          const index = rawIndex % (key.length + 1);
          expect(parseSecret(key.slice(0, index) + extra + key.slice(index), prefix)).toBeNull();
        },
      ),
      { numRuns: 500 },
    );
  });

  it("rejects the transposition of any two adjacent different characters", SLOW, () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, key }) => {
        for (let index = 0; index + 1 < key.length; index++) {
          if (key[index] === key[index + 1]) continue;
          const changed = swapAdjacent(key, index);
          if (parseSecret(changed, prefix) !== null) {
            throw new Error(`accepted ${JSON.stringify(changed)} (swapped at ${index})`);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it("rejects truncation, extension and surrounding whitespace", () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, key }) => {
        for (const changed of [
          key.slice(0, -1),
          key.slice(1),
          key + "0",
          key + key,
          ` ${key}`,
          `${key} `,
          `${key}\n`,
          key.slice(0, -CHECKSUM_LENGTH),
          key.toUpperCase(),
        ]) {
          expect(parseSecret(changed, prefix)).toBeNull();
        }
      }),
      { numRuns: 200 },
    );
  });
});

describe("parseSecret refuses strings that are not keys", () => {
  it("rejects arbitrary strings", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), prefixArb, (candidate, prefix) => {
        expect(parseSecret(candidate, "kg")).toBeNull();
        expect(parseSecret(candidate, prefix)).toBeNull();
      }),
      { numRuns: 1000 },
    );
  });

  it("rejects arbitrary UTF-16 strings of exactly the right length", () => {
    fc.assert(
      fc.property(
        fc.string({ unit: "binary", minLength: 58, maxLength: 58 }),
        fc.string({ unit: "binary-ascii", minLength: 58, maxLength: 58 }),
        (unicode, ascii) => {
          expect(parseSecret(unicode, "kg")).toBeNull();
          expect(parseSecret(ascii, "kg")).toBeNull();
        },
      ),
      { numRuns: 500 },
    );
  });

  it("rejects strings of the right shape with a random checksum", () => {
    // a random 6-character checksum is right with probability 62⁻⁶ ≈ 1.8e-11
    fc.assert(
      fc.property(fc.stringMatching(/^kg_[0-9a-hjkmnp-tv-z]{16}_[0-9A-Za-z]{38}$/), (candidate) => {
        expect(secretPattern("kg").test(candidate)).toBe(true);
        expect(parseSecret(candidate, "kg")).toBeNull();
      }),
      { numRuns: 2000 },
    );
  });

  it(
    "rejects strings of the right shape for arbitrary prefixes with a random checksum",
    SLOW,
    () => {
      const shaped = fc
        .tuple(
          prefixArb,
          fc.stringMatching(/^[0-9a-hjkmnp-tv-z]{16}$/),
          fc.stringMatching(/^[0-9A-Za-z]{38}$/),
        )
        .map(([prefix, keyId, tail]) => ({ prefix, candidate: `${prefix}_${keyId}_${tail}` }));
      fc.assert(
        fc.property(shaped, ({ prefix, candidate }) => {
          expect(secretPattern(prefix).test(candidate)).toBe(true);
          expect(parseSecret(candidate, prefix)).toBeNull();
        }),
        { numRuns: 1000 },
      );
    },
  );

  it("rejects a genuine body with any checksum but its own", () => {
    fc.assert(
      fc.property(keyArb, fc.stringMatching(/^[0-9A-Za-z]{6}$/), ({ prefix, key }, checksum) => {
        const body = key.slice(0, -CHECKSUM_LENGTH);
        fc.pre(checksum !== key.slice(-CHECKSUM_LENGTH));
        expect(parseSecret(body + checksum, prefix)).toBeNull();
      }),
      { numRuns: 1000 },
    );
  });

  it("rejects a valid key presented under any other prefix", () => {
    fc.assert(
      fc.property(keyArb, prefixArb, ({ prefix, key }, other) => {
        fc.pre(other !== prefix);
        expect(parseSecret(key, other)).toBeNull();
      }),
      { numRuns: 1000 },
    );
  });

  it("rejects keys whose prefix differs by case, by length or by one character", () => {
    const key = generateSecret("kg", newKeyId());
    for (const other of ["KG", "Kg", "k", "kgg", "kh", "gk", "skg"]) {
      expect(parseSecret(key, other)).toBeNull();
    }
    const long = generateSecret("live", newKeyId());
    for (const other of ["liv", "lives", "test", "kg"]) expect(parseSecret(long, other)).toBeNull();
    expect(parseSecret(`KG${key.slice(2)}`, "kg")).toBeNull();
  });

  it("rejects a key with a correct checksum and the right shape under another prefix", () => {
    // a genuine 'kh' key has a valid checksum for itself, but is still not a 'kg' key
    const keyId = newKeyId();
    const other = generateSecret("kh", keyId);
    expect(parseSecret(other, "kg")).toBeNull();
    expectValid(other, "kh", keyId);
  });

  it("rejects an oversized candidate without throwing", () => {
    expect(parseSecret(`kg_${"a".repeat(1_000_000)}`, "kg")).toBeNull();
  });
});

describe("secretPattern and scannerPattern", () => {
  it("publishes the documented scanner pattern", () => {
    expect(scannerPattern()).toBe("\\bkg_[0-9a-hjkmnp-tv-z]{16}_[0-9A-Za-z]{38}\\b");
    expect(scannerPattern("sk")).toBe("\\bsk_[0-9a-hjkmnp-tv-z]{16}_[0-9A-Za-z]{38}\\b");
  });

  it("secretPattern is anchored at both ends", () => {
    const key = generateSecret("kg", newKeyId());
    expect(secretPattern("kg").test(key)).toBe(true);
    expect(secretPattern("kg").test(`x${key}`)).toBe(false);
    expect(secretPattern("kg").test(`${key}x`)).toBe(false);
    expect(secretPattern("kg").test(` ${key}`)).toBe(false);
    expect(secretPattern("kg").test(`${key}\n`)).toBe(false);
  });

  it("the scanner finds keys embedded in configuration, headers and JSON", () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, key }) => {
        const scanner = new RegExp(scannerPattern(prefix));
        for (const text of [
          `export API_KEY="${key}"\n`,
          `Authorization: Bearer ${key}\r\n`,
          JSON.stringify({ apiKey: key }),
          `api_key=${key}&x=1`,
          `'${key}'`,
          `(${key})`,
        ]) {
          expect(scanner.exec(text)?.[0]).toBe(key);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("the scanner finds every key in a blob", () => {
    const keys = Array.from({ length: 20 }, () => generateSecret("kg", newKeyId()));
    const blob = keys.map((key, i) => `line ${i}: token=${key};`).join("\n");
    const found = [...blob.matchAll(new RegExp(scannerPattern("kg"), "g"))].map((m) => m[0]);
    expect(found).toEqual(keys);
  });

  it("the scanner does not match a key glued inside a longer word", () => {
    fc.assert(
      fc.property(keyArb, ({ prefix, key }) => {
        const scanner = new RegExp(scannerPattern(prefix));
        expect(scanner.test(`x${key}`)).toBe(false);
        expect(scanner.test(`${key}x`)).toBe(false);
        expect(scanner.test(`${key}0`)).toBe(false);
        expect(scanner.test(`_${key}`)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  it("the scanner for one prefix does not match a key of a longer prefix that ends with it", () => {
    const key = generateSecret("xkg", newKeyId());
    expect(new RegExp(scannerPattern("kg")).test(key)).toBe(false);
    expect(new RegExp(scannerPattern("xkg")).test(key)).toBe(true);
  });
});

describe("uniqueness", () => {
  it("100 000 generated keys, their random parts and their key ids are all unique", SLOW, () => {
    const count = 100_000;
    const keys = new Set<string>();
    const randomParts = new Set<string>();
    const keyIds = new Set<string>();
    const start = "kg_".length + KEY_ID_LENGTH + 1;
    for (let i = 0; i < count; i++) {
      const keyId = newKeyId();
      const key = generateSecret("kg", keyId);
      keys.add(key);
      keyIds.add(keyId);
      randomParts.add(key.slice(start, start + RANDOM_LENGTH));
    }
    expect(keys.size).toBe(count);
    expect(randomParts.size).toBe(count);
    expect(keyIds.size).toBe(count);
  });

  it("random parts are unique even under one fixed key id", () => {
    const keyId = newKeyId();
    const secrets = new Set<string>();
    for (let i = 0; i < 20_000; i++) secrets.add(generateSecret("kg", keyId));
    expect(secrets.size).toBe(20_000);
  });
});

describe("secretHint", () => {
  it("shows only the last four characters of a secret", () => {
    const key = "kg_0123456789abcdef_0123456789ABCDEFGHIJabcdefghij0149YfdF";
    expect(secretHint(key)).toBe("YfdF");
    fc.assert(
      fc.property(keyArb, ({ key: generated }) => {
        expect(secretHint(generated)).toBe(generated.slice(-4));
        expect(secretHint(generated)).toHaveLength(4);
      }),
    );
  });
});
