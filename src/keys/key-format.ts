import { crc32 } from "./crc32";
import { BASE32, BASE62, randomString } from "./random";

/**
 * The secret format: `<prefix>_<keyId>_<random><checksum>`.
 *
 * - prefix: `KEY_PREFIX`, 1–16 of `[a-z0-9]`, starting with a letter (default `kg`);
 * - keyId: 16 characters of lower-case Crockford base32 (80 bits), the key's stable id;
 * - random: 32 base62 characters (≈190 bits) from `crypto.getRandomValues`;
 * - checksum: CRC-32 of everything before it, as 6 base62 characters, so a typo or a
 *   made-up string is refused with no storage read.
 */
export const KEY_ID_LENGTH = 16;
export const RANDOM_LENGTH = 32;
export const CHECKSUM_LENGTH = 6;
const PREFIX = "[a-z][a-z0-9]{0,15}";
export const PREFIX_PATTERN = new RegExp(`^${PREFIX}$`);
export const KEY_ID_PATTERN = /^[0-9a-hjkmnp-tv-z]{16}$/;
/** The longest secret any valid prefix can produce; longer credentials are refused unread. */
export const MAX_SECRET_LENGTH = 16 + 1 + KEY_ID_LENGTH + 1 + RANDOM_LENGTH + CHECKSUM_LENGTH;

const BODY_PATTERN = "[0-9a-hjkmnp-tv-z]{16}_[0-9A-Za-z]{38}";

/** The regex that matches any Keygate secret with the given prefix, anchored. */
export function secretPattern(prefix: string): RegExp {
  return new RegExp(`^${prefix}_${BODY_PATTERN}$`);
}

/**
 * The pattern published for secret scanners (GitHub push protection, gitleaks, trufflehog):
 * `\b<prefix>_[0-9a-hjkmnp-tv-z]{16}_[0-9A-Za-z]{38}\b`.
 */
export function scannerPattern(prefix = "kg"): string {
  return `\\b${prefix}_${BODY_PATTERN}\\b`;
}

export interface ParsedSecret {
  prefix: string;
  keyId: string;
  secret: string;
}

function encodeChecksum(value: number): string {
  let out = "";
  let rest = value;
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = BASE62[rest % 62] + out;
    rest = Math.floor(rest / 62);
  }
  return out;
}

/** The checksum characters for the part of a secret that precedes them. */
export function checksumOf(body: string): string {
  return encodeChecksum(crc32(body));
}

/** A new random key id (80 bits, base32). */
export function newKeyId(): string {
  return randomString(BASE32, KEY_ID_LENGTH);
}

/** A new secret for `keyId`; the only place plaintext secrets are made. */
export function generateSecret(prefix: string, keyId: string): string {
  if (!PREFIX_PATTERN.test(prefix)) throw new RangeError("invalid key prefix");
  if (!KEY_ID_PATTERN.test(keyId)) throw new RangeError("invalid key id");
  const body = `${prefix}_${keyId}_${randomString(BASE62, RANDOM_LENGTH)}`;
  return body + checksumOf(body);
}

/** Any Keygate secret, whatever its prefix; group 1: the prefix. */
const ANY_SECRET = new RegExp(`^(${PREFIX})_${BODY_PATTERN}$`);

/**
 * Parses a presented secret: shape and checksum only, no I/O. Returns null for anything that
 * is not a well-formed secret with a matching checksum, or (when `prefix` is given) that
 * carries another prefix. The front door passes no prefix: changing `KEY_PREFIX` names new
 * secrets and leaves the ones already issued working (the checksum covers the prefix).
 */
export function parseSecret(candidate: string, prefix?: string): ParsedSecret | null {
  if (candidate.length > MAX_SECRET_LENGTH) return null;
  const match = ANY_SECRET.exec(candidate);
  if (match === null) return null;
  const found = match[1]!;
  if (prefix !== undefined && found !== prefix) return null;
  const cut = candidate.length - CHECKSUM_LENGTH;
  if (checksumOf(candidate.slice(0, cut)) !== candidate.slice(cut)) return null;
  const keyId = candidate.slice(found.length + 1, found.length + 1 + KEY_ID_LENGTH);
  return { prefix: found, keyId, secret: candidate };
}

/** What logs and API responses show instead of a secret: its last four characters. */
export function secretHint(secret: string): string {
  return secret.slice(-4);
}
