/**
 * One path, one decision. Rules are matched against the canonical form of the request path,
 * and the origin receives exactly that form, so no other spelling of a path can meet a
 * different rule than the one the origin acts on (the way Envoy's and nginx's normalisation
 * closes the gap between a proxy's view of a path and its backend's).
 *
 * Canonical: percent-encoded unreserved characters (RFC 3986 §2.3) decoded, other escapes in
 * upper case, dot segments removed (after decoding, so `%2E%2E` is one), repeated slashes
 * collapsed. Case and a trailing slash are kept: the origin sees them as sent.
 *
 * Refused (null): an encoded slash, backslash, NUL or `;` (`%2F`, `%5C`, `%00`, `%3B`), a raw
 * `;` or `\`, a double-encoded escape (`%25` before two hex digits), a malformed escape,
 * control characters, anything outside printable ASCII, a segment of dots and blanks that is
 * not `.` or `..` (`...`, `..%20`): spellings that origins split, decode or strip in ways of
 * their own.
 */
export function canonicalPath(raw: string): string | null {
  if (raw.charCodeAt(0) !== 0x2f) return null;
  if (isPlain(raw)) return raw;
  let decoded = "";
  for (let i = 0; i < raw.length; i++) {
    const code = raw.charCodeAt(i);
    if (code === 0x25) {
      const byte = hexByte(raw, i + 1);
      if (byte < 0) return null;
      i += 2;
      if (isUnreserved(byte)) {
        decoded += String.fromCharCode(byte);
        continue;
      }
      if (byte === 0x2f || byte === 0x5c || byte === 0x00 || byte === 0x3b) return null;
      if (byte === 0x25 && hexByte(raw, i + 1) >= 0) return null;
      decoded += "%" + raw.slice(i - 1, i + 1).toUpperCase();
      continue;
    }
    if (code <= 0x20 || code >= 0x7f || code === 0x3b || code === 0x5c) return null;
    decoded += raw[i];
  }
  return removeDotSegments(decoded);
}

/**
 * The spelling a rule that demands something is compared in: lower case, a trailing slash
 * dropped, and trailing dots, spaces and tabs (`%20`, `%09`) dropped from each segment
 * (`/admin.` and `/admin%20` are `/admin` to some servers). Comparing loosely here can only
 * make such a rule match more paths.
 */
export function loosePath(canonical: string): string {
  let loose = canonical.toLowerCase();
  if (loose.includes(".") || loose.includes("%")) {
    loose = loose.split("/").map(trimTrailingBlanks).join("/");
  }
  return loose.length > 1 && loose.endsWith("/") ? loose.slice(0, -1) : loose;
}

/**
 * Bytes that servers strip from the end of a segment: tab, line breaks, vertical tab, form
 * feed, the information separators, space, NEL and no-break space (Python's `str.strip`
 * drops all of them, Windows drops spaces and dots).
 */
const BLANK_BYTES = new Set([
  0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0,
]);

/** How many characters of trailing dots and blank escapes `segment` ends with. */
function trailingBlanks(segment: string): number {
  let end = segment.length;
  for (;;) {
    if (end > 0 && segment.charCodeAt(end - 1) === 0x2e) {
      end--;
      continue;
    }
    const byte = end >= 3 && segment.charCodeAt(end - 3) === 0x25 ? hexByte(segment, end - 2) : -1;
    if (!BLANK_BYTES.has(byte)) break;
    end -= 3;
    // NEL and no-break space in UTF-8: %C2%85, %C2%A0
    if ((byte === 0x85 || byte === 0xa0) && end >= 3 && segment.charCodeAt(end - 3) === 0x25) {
      if (hexByte(segment, end - 2) === 0xc2) end -= 3;
    }
  }
  return segment.length - end;
}

/**
 * A segment without its trailing dots and blank escapes (a loop, not a regex: linear on any
 * run of them). A segment of nothing else is kept as it is.
 */
function trimTrailingBlanks(segment: string): string {
  const end = segment.length - trailingBlanks(segment);
  return end === 0 ? segment : segment.slice(0, end);
}

/**
 * A segment some server may read as a dot segment: dots, then only dots or blank escapes
 * (`...`, `..%20`, `.%09`). `.` and `..` themselves are removed before this is asked.
 */
function isDotLike(segment: string): boolean {
  return segment.charCodeAt(0) === 0x2e && trailingBlanks(segment) === segment.length;
}

/**
 * Already canonical, and cheap to tell: printable ASCII, no `%`, `;` or `\`, no `//`, and no
 * segment that starts with a dot (so no dot segment). The usual request path is one.
 */
function isPlain(path: string): boolean {
  let previous = 0;
  for (let i = 0; i < path.length; i++) {
    const code = path.charCodeAt(i);
    if (code <= 0x20 || code >= 0x7f || code === 0x25 || code === 0x3b || code === 0x5c) {
      return false;
    }
    if (previous === 0x2f && (code === 0x2f || code === 0x2e)) return false;
    previous = code;
  }
  return true;
}

/** The byte of the two hex digits at `at`, or -1. */
function hexByte(text: string, at: number): number {
  if (at + 2 > text.length) return -1;
  const high = hexDigit(text.charCodeAt(at));
  const low = hexDigit(text.charCodeAt(at + 1));
  return high < 0 || low < 0 ? -1 : high * 16 + low;
}

function hexDigit(code: number): number {
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  if (code >= 0x41 && code <= 0x46) return code - 0x37;
  if (code >= 0x61 && code <= 0x66) return code - 0x57;
  return -1;
}

/** ALPHA / DIGIT / "-" / "." / "_" / "~" */
function isUnreserved(byte: number): boolean {
  return (
    (byte >= 0x41 && byte <= 0x5a) ||
    (byte >= 0x61 && byte <= 0x7a) ||
    (byte >= 0x30 && byte <= 0x39) ||
    byte === 0x2d ||
    byte === 0x2e ||
    byte === 0x5f ||
    byte === 0x7e
  );
}

/** RFC 3986 §5.2.4 on an absolute path, with empty segments (`//`) dropped as well. */
function removeDotSegments(path: string): string | null {
  const segments: string[] = [];
  const parts = path.split("/");
  let trailingSlash = false;
  for (let i = 1; i < parts.length; i++) {
    const segment = parts[i]!;
    const last = i === parts.length - 1;
    if (segment === "..") {
      segments.pop();
      trailingSlash = last;
    } else if (segment === "." || segment === "") {
      trailingSlash = last;
    } else if (isDotLike(segment)) {
      return null;
    } else {
      segments.push(segment);
      trailingSlash = false;
    }
  }
  if (segments.length === 0) return "/";
  return "/" + segments.join("/") + (trailingSlash ? "/" : "");
}
