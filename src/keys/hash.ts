import { sha256 } from "js-sha256";

/**
 * SHA-256 of a secret, hex. A secret carries ≈190 random bits, so a fast hash is the right
 * tool (as for GitHub and Stripe keys): nothing to brute-force, and verification stays cheap.
 *
 * In JavaScript (js-sha256 hashes the string's UTF-8 directly): workerd's native
 * `node:crypto` and `crypto.subtle` cost more per call than the hashing itself, through their
 * Buffer/ArrayBuffer conversions and wrapper objects; measured side by side on a hot key, the
 * whole request was cheaper with js-sha256.
 *
 * A string with a lone surrogate (which no request header or decoded body can carry) is
 * hashed as its well-formed form, as `TextEncoder` encodes it, so that this is SHA-256 of
 * the UTF-8 bytes for any string; test/keys/hash.test.ts checks it against WebCrypto.
 */
export function hashSecret(secret: string): string {
  // toWellFormed returns a well-formed string (every key) as it is, with no copy
  return sha256(secret.toWellFormed());
}

/**
 * Compares two strings in time that depends only on their lengths: no branch on their
 * content, no early exit, no allocation (it runs on every verification). Compares UTF-16 code
 * units, so two strings are equal here exactly when `===` says so.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const length = Math.max(a.length, b.length);
  let difference = a.length ^ b.length;
  // past the end of the shorter string charCodeAt gives NaN, which `| 0` turns into 0
  for (let i = 0; i < length; i++) difference |= (a.charCodeAt(i) | 0) ^ (b.charCodeAt(i) | 0);
  return difference === 0;
}
