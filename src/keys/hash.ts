import { createHash } from "node:crypto";

/**
 * SHA-256 of a secret, hex. A secret carries ≈190 random bits, so a fast hash is the right
 * tool (as for GitHub and Stripe keys): nothing to brute-force, and verification stays cheap.
 *
 * Synchronous (workerd's native `node:crypto`, under `nodejs_compat`) rather than
 * `crypto.subtle.digest`, so that a hot key is verified with no promise at all.
 * test/keys/hash.test.ts checks it against WebCrypto.
 */
export function hashSecret(secret: string): string {
  return createHash("sha256").update(secret, "utf8").digest("hex");
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
