import { decodeCursor } from "./pagination";
import { settingOrInsert } from "./settings";

/**
 * Signed list cursors. A `nextCursor` is the page's position (`encodeCursor`), a `.`, and an
 * HMAC-SHA256 tag over the list it belongs to and that position, so a cursor Keygate did not
 * issue, altered, or issued for another list is refused. The key is 32 random bytes made on
 * first use and kept in D1 (`settings`, `cursor_key`), so every isolate of a deployment
 * agrees with no setup; each isolate reads it once.
 */

/** What a signed cursor looks like; the tag is checked by `openCursor`. */
export const SIGNED_CURSOR = /^[A-Za-z0-9_-]{1,200}\.[A-Za-z0-9_-]{43}$/;

const KEY_SETTING = "cursor_key";
const encoder = new TextEncoder();
let cachedKey: Promise<CryptoKey> | undefined;

/** The deployment's cursor key, made and stored on first use; read once per isolate. */
export function cursorKey(db: D1Database): Promise<CryptoKey> {
  cachedKey ??= loadCursorKey(db).catch((error: unknown) => {
    cachedKey = undefined;
    throw error;
  });
  return cachedKey;
}

/** Reads the deployment's cursor key, storing a new one if there is none yet (uncached). */
export async function loadCursorKey(db: D1Database): Promise<CryptoKey> {
  const fresh = toBase64url(crypto.getRandomValues(new Uint8Array(32)));
  const stored = await settingOrInsert(db, KEY_SETTING, fresh);
  return crypto.subtle.importKey(
    "raw",
    fromBase64url(stored),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign", "verify"],
  );
}

// a position is base64url, so it holds no "\n": the message names one (list, position) pair
const message = (list: string, position: string) => encoder.encode(`${list}\n${position}`);

/** Signs `position` (from `encodeCursor`) as a cursor of `list`. */
export async function sealCursor(key: CryptoKey, list: string, position: string): Promise<string> {
  const tag = await crypto.subtle.sign("HMAC", key, message(list, position));
  return `${position}.${toBase64url(new Uint8Array(tag))}`;
}

/** The position a cursor of `list` names, or null when Keygate did not issue it for `list`. */
export async function openCursor(
  key: CryptoKey,
  list: string,
  cursor: string,
): Promise<string | null> {
  if (!SIGNED_CURSOR.test(cursor)) return null;
  const dot = cursor.indexOf(".");
  const position = cursor.slice(0, dot);
  const tag = fromBase64url(cursor.slice(dot + 1));
  // the last of 43 characters carries 2 unused bits: only the one spelling we issue is ours
  if (toBase64url(tag) !== cursor.slice(dot + 1)) return null;
  // crypto.subtle.verify compares the tags in constant time
  const issued = await crypto.subtle.verify("HMAC", key, tag, message(list, position));
  return issued && decodeCursor(position) !== null ? position : null;
}

function toBase64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes))
    .replaceAll("+", "-")
    .replaceAll("/", "_")
    .replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (ch) => ch.charCodeAt(0));
}
