const encoder = new TextEncoder();

function toHex(bytes: ArrayBuffer): string {
  let out = "";
  for (const byte of new Uint8Array(bytes)) out += byte.toString(16).padStart(2, "0");
  return out;
}

/**
 * SHA-256 of a secret, hex. A secret carries ≈190 random bits, so a fast hash is the right
 * tool (as for GitHub and Stripe keys): nothing to brute-force, and verification stays cheap.
 */
export async function hashSecret(secret: string): Promise<string> {
  return toHex(await crypto.subtle.digest("SHA-256", encoder.encode(secret)));
}

function codeUnits(text: string): Uint16Array {
  const units = new Uint16Array(text.length);
  for (let i = 0; i < text.length; i++) units[i] = text.charCodeAt(i);
  return units;
}

/**
 * Compares two strings in time that depends only on their lengths. Compares UTF-16 code
 * units, not an encoding of them, so two strings are equal here exactly when `===` says so.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const left = codeUnits(a);
  const right = codeUnits(b);
  if (left.length !== right.length) {
    // still spend the comparison so timing does not reveal where the lengths differ
    crypto.subtle.timingSafeEqual(left, left);
    return false;
  }
  return crypto.subtle.timingSafeEqual(left, right);
}
