/**
 * Where a webhook may be sent: the rule for a consumer's `webhookUrl` (docs/webhooks.md), checked
 * when the management API takes one and again before every delivery. Pure: no I/O, no DNS.
 *
 * A `webhookUrl` is `https:`, or `http:` to a loopback host written plainly (`localhost`,
 * `127.x.y.z` or `[::1]`) for local development, where receivers speak plain HTTP. That is
 * the only form in which loopback is accepted: one narrow door rather than many spellings.
 * It has no user name or password, no whitespace, control or invisible character and no
 * backslash anywhere in the string as given. An `https:` host is not an IP literal outside
 * public unicast space, in whatever notation (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`,
 * `[::ffff:7f00:1]`, `[64:ff9b::a00:1]` are all refused as what they denote), and not a name
 * that only resolves inside a network (`localhost`, a single label such as `metadata`, or a
 * name under `.localhost`, `.local`, `.internal`, `.arpa`), trailing dots ignored. Neither is
 * Keygate's own host.
 *
 * The check reads what the WHATWG URL parser (the one `fetch` uses) makes of the string, so
 * notations that it folds to dotted IPv4 or compressed IPv6 are judged by the address they
 * denote. A public name whose DNS answer is private is not caught here: on Cloudflare a
 * Worker's `fetch` cannot reach private networks.
 */

/** Characters refused anywhere in the string as given, before parsing could drop them. */
const UNSAFE_CHARACTER = /[\s\p{Cc}\p{Cf}\\]/u;

/** A host as the URL parser writes an IPv4 address: four decimal numbers. */
const DOTTED_IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** IPv4 ranges a webhook may not go to (IANA special-purpose, not globally reachable). */
const IPV4_REFUSED: readonly (readonly [string, number, string])[] = [
  ["0.0.0.0", 8, "an unspecified address"],
  ["10.0.0.0", 8, "a private address"],
  ["100.64.0.0", 10, "a carrier-grade NAT address"],
  ["127.0.0.0", 8, "a loopback address"],
  ["169.254.169.254", 32, "the cloud metadata address"],
  ["169.254.0.0", 16, "a link-local address"],
  ["172.16.0.0", 12, "a private address"],
  ["192.0.0.0", 24, "a reserved address"],
  ["192.0.2.0", 24, "a documentation address"],
  ["192.88.99.0", 24, "a reserved address"],
  ["192.168.0.0", 16, "a private address"],
  ["198.18.0.0", 15, "a benchmarking address"],
  ["198.51.100.0", 24, "a documentation address"],
  ["203.0.113.0", 24, "a documentation address"],
  ["224.0.0.0", 4, "a multicast address"],
  ["240.0.0.0", 4, "a reserved address"],
];

/** IPv6 ranges refused by name; anything else outside 2000::/3 is refused as reserved. */
const IPV6_REFUSED: readonly (readonly [string, number, string])[] = [
  ["fd00:ec2::254", 128, "the cloud metadata address"],
  ["fc00::", 7, "a unique-local address"],
  ["fe80::", 10, "a link-local address"],
  ["fec0::", 10, "a site-local address"],
  ["ff00::", 8, "a multicast address"],
  ["2001::", 23, "a reserved address"],
  ["2001:db8::", 32, "a documentation address"],
  ["3fff::", 20, "a documentation address"],
];

/** Name suffixes that resolve only inside a network, and why. */
const LOCAL_SUFFIXES: readonly (readonly [string, string])[] = [
  ["localhost", "a loopback name"],
  ["local", "a multicast-DNS name"],
  ["internal", "a private-network name"],
  ["arpa", "an infrastructure name"],
];

/** The URL parser's spellings of loopback that `http:` may go to, for local development. */
function isPlainLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function ipv4Number(hostname: string): number | null {
  const match = DOTTED_IPV4.exec(hostname);
  if (!match) return null;
  return match.slice(1).reduce((n, octet) => n * 256 + Number(octet), 0);
}

function ipv4Text(n: number): string {
  return [24, 16, 8, 0].map((shift) => (n >>> shift) & 255).join(".");
}

/** Why the IPv4 address `n` is refused, or null for a public unicast address. */
function ipv4Problem(n: number): string | null {
  for (const [base, bits, reason] of IPV4_REFUSED) {
    const size = 2 ** (32 - bits);
    const start = ipv4Number(base)!;
    if (n >= start && n < start + size) return reason;
  }
  return null;
}

/** The eight 16-bit groups of an IPv6 address as the URL parser writes it (`[…]`, hex). */
function ipv6Groups(hostname: string): number[] | null {
  if (!hostname.startsWith("[") || !hostname.endsWith("]")) return null;
  const text = hostname.slice(1, -1);
  const [head, tail] = text.includes("::") ? text.split("::") : [text, undefined];
  const parse = (part: string | undefined) =>
    part ? part.split(":").map((group) => Number.parseInt(group, 16)) : [];
  const front = parse(head);
  const back = parse(tail);
  const gap = 8 - front.length - back.length;
  if (tail !== undefined && gap < 1) return null;
  const groups =
    tail === undefined ? front : [...front, ...new Array<number>(gap).fill(0), ...back];
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff))
    return null;
  return groups;
}

function inIpv6Range(groups: number[], base: string, bits: number): boolean {
  const start = ipv6Groups(`[${base}]`)!;
  return groups.every((group, i) => {
    const left = Math.min(16, Math.max(0, bits - 16 * i));
    const mask = (0xffff << (16 - left)) & 0xffff;
    return (group & mask) === (start[i]! & mask);
  });
}

/** Why the IPv6 address is refused, or null for a public unicast address. */
function ipv6Problem(groups: number[]): string | null {
  const zeros = (from: number, to: number) => groups.slice(from, to).every((g) => g === 0);
  const embedded = (from: number) => groups[from]! * 65_536 + groups[from + 1]!;
  if (zeros(0, 8)) return "an unspecified address";
  if (zeros(0, 7) && groups[7] === 1) return "a loopback address";
  // the prefixes that carry an IPv4 address in their low 32 bits, judged by that address
  const carriers: [boolean, string][] = [
    [zeros(0, 5) && groups[5] === 0xffff, "an IPv4-mapped"],
    [zeros(0, 6), "an IPv4-compatible"],
    [zeros(0, 4) && groups[4] === 0xffff && groups[5] === 0, "an IPv4-translated"],
    [groups[0] === 0x64 && groups[1] === 0xff9b && zeros(2, 6), "a NAT64"],
  ];
  for (const [carries, kind] of carriers) {
    if (!carries) continue;
    const v4 = embedded(6);
    return `${kind} IPv6 address of ${ipv4Text(v4)}, ${ipv4Problem(v4) ?? "to be written as IPv4"}`;
  }
  if (groups[0] === 0x2002) {
    const problem = ipv4Problem(embedded(1));
    if (problem) return `a 6to4 IPv6 address of ${ipv4Text(embedded(1))}, ${problem}`;
  }
  for (const [base, bits, reason] of IPV6_REFUSED) {
    if (inIpv6Range(groups, base, bits)) return reason;
  }
  // global unicast is 2000::/3; whatever lies outside it is reserved or special
  if ((groups[0]! & 0xe000) !== 0x2000) return "a reserved address";
  return null;
}

/** Why the domain name (trailing dots removed) is refused, or null. */
function nameProblem(name: string): string | null {
  if (name === "metadata.google.internal" || name === "metadata")
    return "the cloud metadata service";
  for (const [suffix, reason] of LOCAL_SUFFIXES) {
    if (name === suffix || name.endsWith(`.${suffix}`)) return reason;
  }
  if (!name.includes(".")) return "a single-label name, which resolves only inside a network";
  return null;
}

/** The scheme and authority of an absolute http(s) URL as given, the host not empty. */
const ABSOLUTE = /^https?:\/\/([^/?#]+)/i;

/** The host of an authority without userinfo, as written: lower-cased, port removed. */
function hostAsWritten(authority: string): string {
  const host = authority.startsWith("[")
    ? authority.slice(0, authority.indexOf("]") + 1)
    : authority.replace(/:\d*$/, "");
  return host.toLowerCase();
}

/** Whether `url` is on Keygate's own host `ownHost` (`new URL(request.url).host`). */
/** A host Keygate can be reached on locally: loopback, `*.localhost`, or all addresses. */
function isLocalOwnHost(host: string): boolean {
  return (
    isPlainLoopback(host) ||
    host.endsWith(".localhost") ||
    host === "0.0.0.0" ||
    host === "[::]" ||
    /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(host)
  );
}

function isOwnHost(url: URL, ownHost: string): boolean {
  let own: URL;
  try {
    own = new URL(`http://${ownHost}`);
  } catch {
    return false;
  }
  const name = (host: string) => host.replace(/\.+$/, "");
  // every spelling of loopback reaches a Keygate listening on loopback (`npm start`)
  const same =
    name(own.hostname) === name(url.hostname) ||
    (isLocalOwnHost(name(own.hostname)) && isPlainLoopback(url.hostname));
  if (!same) return false;
  // Keygate on a default port (production): every port of its name is refused; on an
  // explicit port (local development), only that one, so a receiver beside it is allowed
  if (own.port === "") return true;
  return own.port === (url.port || (url.protocol === "https:" ? "443" : "80"));
}

/** What every refusal of a loopback host adds: the one form in which loopback is accepted. */
const LOOPBACK_RULE =
  "loopback is accepted only as http://localhost, http://127.x.y.z or http://[::1], for local development";

/**
 * Why `raw` may not be a consumer's `webhookUrl`, as a phrase to follow the field name, or
 * null when webhooks may be sent to it. `ownHost` is the host the management request arrived
 * on (`new URL(c.req.url).host`), or null where it is not known (at delivery).
 */
export function webhookUrlProblem(raw: string, ownHost: string | null): string | null {
  if (UNSAFE_CHARACTER.test(raw))
    return "must not contain whitespace, control or invisible characters, or a backslash";
  const authority = ABSOLUTE.exec(raw)?.[1];
  let url: URL | null = null;
  try {
    if (authority !== undefined) url = new URL(raw);
  } catch {
    // refused below
  }
  if (authority === undefined || url === null)
    return "must be an absolute https:// URL (or http:// to loopback, for local development)";
  if (authority.includes("@") || url.username !== "" || url.password !== "")
    return "must not carry a user name or password";
  const host = url.hostname;
  if (url.protocol === "http:") {
    // loopback spelt as the URL parser writes it: no decimal, hex, mapped or trailing-dot forms
    if (!isPlainLoopback(host) || hostAsWritten(authority) !== host)
      return "must use https: (http: is accepted only to localhost, 127.x.y.z or [::1], for local development)";
  } else {
    const v4 = ipv4Number(host);
    const v6 = v4 === null ? ipv6Groups(host) : null;
    const name = host.replace(/\.+$/, "");
    const problem =
      v4 !== null ? ipv4Problem(v4) : v6 !== null ? ipv6Problem(v6) : nameProblem(name);
    if (problem !== null) {
      const loopback = problem.includes("loopback") ? ` (${LOOPBACK_RULE})` : "";
      return `must not point at ${v4 !== null || v6 !== null ? host : name}: ${problem}${loopback}`;
    }
  }
  if (ownHost !== null && isOwnHost(url, ownHost)) return "must not point at Keygate itself";
  return null;
}
