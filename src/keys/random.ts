/** Alphabets used by Keygate's identifiers and secrets. */
export const BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** Crockford's base32, lower case: no i, l, o or u, so ids survive being read aloud. */
export const BASE32 = "0123456789abcdefghjkmnpqrstvwxyz";

/**
 * `length` characters drawn uniformly from `alphabet` with `crypto.getRandomValues`.
 * Bytes at or above the largest multiple of the alphabet size are discarded (rejection
 * sampling), so no character is more likely than another: no modulo bias.
 */
export function randomString(alphabet: string, length: number): string {
  const size = alphabet.length;
  if (size < 2 || size > 256) throw new RangeError("alphabet must have 2..256 characters");
  const limit = 256 - (256 % size);
  let out = "";
  // getRandomValues takes at most 64 KiB at a time
  const buffer = new Uint8Array(Math.min(65_536, Math.max(16, length * 2)));
  while (out.length < length) {
    crypto.getRandomValues(buffer);
    for (const byte of buffer) {
      if (byte >= limit) continue;
      out += alphabet[byte % size];
      if (out.length === length) break;
    }
  }
  return out;
}

/** A prefixed public identifier such as `csm_4k2v…` (not secret). */
export function newId(prefix: string, length = 20): string {
  return `${prefix}_${randomString(BASE32, length)}`;
}
