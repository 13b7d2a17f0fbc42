import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { RouteRuleSchema } from "../../src/rules/route-rules";
import { canonicalPath, loosePath } from "../../src/rules/canonical-path";
import { compileRules, matchRule } from "../../src/rules/route-rules";

describe("canonicalPath", () => {
  it.each([
    ["/prices/eur", "/prices/eur"],
    ["//prices/eur", "/prices/eur"],
    ["/prices//eur///", "/prices/eur/"],
    ["/%70rices/eur", "/prices/eur"],
    ["/%70RICES/%65%75%72", "/pRICES/eur"],
    ["/%2e%2E/prices", "/prices"],
    ["/a/./b/../c", "/a/c"],
    ["/a/b/..", "/a/"],
    ["/a/b/.", "/a/b/"],
    ["/../../x", "/x"],
    ["/", "/"],
    ["/.", "/"],
    ["/%7e%41", "/~A"],
    ["/caf%c3%a9", "/caf%C3%A9"],
    ["/a%20b", "/a%20b"],
    ["/admin.", "/admin."],
    ["/PRICES/eur", "/PRICES/eur"],
    ["/x*", "/x*"],
  ])("%s → %s", (raw, canonical) => {
    expect(canonicalPath(raw)).toBe(canonical);
  });

  it.each([
    "/prices%2feur",
    "/prices%2Feur",
    "/admin%2f",
    "/admin%5c",
    "/admin%5C..%5Cx",
    "/a%00b",
    "/prices;x/eur",
    "/admin;x",
    "/admin%3bx",
    "/a\\b",
    "/%2570rices",
    "/%zz",
    "/%4",
    "/%",
    "/a b",
    "/a\u0000b",
    "/caf\u00e9",
    "prices",
    "",
    // segments a server that strips trailing dots and blanks reads as `..` or `.`
    "/public/.../admin/x",
    "/public/..%20/admin/x",
    "/public/..%09/internal/x",
    "/public/.%2E%20/admin/x",
    "/public/..%C2%A0/admin",
    "/public/.%85/admin",
    "/a/....",
  ])("refuses %j", (raw) => {
    expect(canonicalPath(raw)).toBeNull();
  });

  it("the loose spelling a demanding rule compares in: lower case, no trailing slash or dots", () => {
    expect(loosePath("/ADMIN/")).toBe("/admin");
    expect(loosePath("/admin.")).toBe("/admin");
    expect(loosePath("/admin../x.")).toBe("/admin/x");
    expect(loosePath("/")).toBe("/");
    expect(loosePath("/a/.../b")).toBe("/a/.../b");
    expect(loosePath("/admin%20")).toBe("/admin");
    expect(loosePath("/admin%09/x%20.%20")).toBe("/admin/x");
    expect(loosePath("/admin%2520")).toBe("/admin%2520");
    expect(loosePath("/admin%85/x%A0/y%C2%A0%0C.")).toBe("/admin/x/y");
    expect(loosePath("/x%1F%0B%0A%0D%1C")).toBe("/x");
    expect(loosePath("/%20/x")).toBe("/%20/x");
  });

  it("trims a long run of blanks in linear time", () => {
    const run = "%20.".repeat(50_000);
    expect(loosePath(`/a${run}`)).toBe("/a");
  });
});

/** Characters a canonical segment may hold: unreserved, sub-delims, `:` `@`, and escapes. */
const segmentChar = fc.oneof(
  fc.constantFrom(..."abcxyzABCXYZ0189-._~!$&'()*+,=:@"),
  fc.constantFrom("%20", "%C3%A9", "%3F", "%23", "%25"),
);
const segment = fc
  .array(segmentChar, { minLength: 1, maxLength: 6 })
  .map((chars) => chars.join(""))
  .filter((s) => s !== "." && s !== ".." && !s.endsWith("%25"));
const canonicalPaths = fc
  .tuple(fc.array(segment, { maxLength: 5 }), fc.boolean())
  .map(([segments, slash]) => "/" + segments.join("/") + (slash && segments.length ? "/" : ""))
  .filter((p) => canonicalPath(p) === p);

/** Another spelling of a canonical path: escapes, repeated slashes, dot segments. */
function respell(path: string, choices: number[]): string {
  let i = 0;
  const next = () => choices[i++ % choices.length]!;
  let out = "";
  for (const char of path.match(/%[0-9A-F]{2}|[^]/g) ?? []) {
    const choice = next() % 7;
    if (char.length === 3) {
      out += choice % 2 ? char.toLowerCase() : char;
    } else if (/[A-Za-z0-9\-._~]/.test(char) && choice === 0) {
      const hex = char.charCodeAt(0).toString(16);
      out += "%" + (next() % 2 ? hex.toUpperCase() : hex);
    } else if (char === "/" && choice === 1) {
      out += "//";
    } else if (char === "/" && choice === 2) {
      out += "/./";
    } else if (char === "/" && choice === 3) {
      out += "/zz/%2e%2E/";
    } else {
      out += char;
    }
  }
  return out;
}

const RULES = compileRules(
  RouteRuleSchema.array().parse([
    { path: "/public/*", public: true },
    { path: "/health", public: true },
    { method: "GET", path: "/prices/*", scopes: ["prices:read"] },
    { method: "POST", path: "/trade/*", scopes: ["trade:write"], strict: true },
    { path: "/admin", scopes: ["admin:all"] },
    { path: "/internal/*", deny: true },
    { path: "/a*", scopes: ["a:b"] },
  ]),
);

describe("one path, one decision (properties)", () => {
  it("canonicalisation is idempotent and its output is canonical", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary-ascii", maxLength: 40 }), (raw) => {
        const once = canonicalPath("/" + raw);
        if (once === null) return;
        expect(canonicalPath(once)).toBe(once);
        expect(once).not.toMatch(/\/\/|\/\.\.?(\/|$)|;|\\|%(2F|5C|00|3B)/i);
      }),
      { numRuns: 2000 },
    );
  });

  it("every spelling of a path canonicalises to it and meets the same rule", () => {
    fc.assert(
      fc.property(
        canonicalPaths,
        fc.array(fc.nat(), { minLength: 1, maxLength: 20 }),
        fc.constantFrom("GET", "HEAD", "POST", "DELETE"),
        (path, choices, method) => {
          const variant = respell(path, choices);
          expect(canonicalPath(variant)).toBe(path);
          expect(matchRule(RULES, method, canonicalPath(variant)!)).toBe(
            matchRule(RULES, method, path),
          );
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("a rule that demands something meets every case and trailing-slash spelling", () => {
    fc.assert(
      fc.property(
        canonicalPaths,
        fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        (path, upper, slash) => {
          let variant = [...path]
            .map((c, i) => (upper[i % upper.length] ? c.toUpperCase() : c.toLowerCase()))
            .join("")
            .replace(/%[0-9a-f]{2}/gi, (escape) => escape.toUpperCase());
          if (slash && !variant.endsWith("/")) variant += "/";
          if (canonicalPath(variant) !== variant) return;
          const rule = matchRule(RULES, "GET", path);
          if (rule === null || rule.public) return;
          expect(matchRule(RULES, "GET", variant)).toBe(rule);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe("matchRule", () => {
  const match = (method: string, path: string) => matchRule(RULES, method, path);

  it("a public rule matches its exact spelling only", () => {
    expect(match("GET", "/public/x")?.public).toBe(true);
    expect(match("GET", "/public/")?.public).toBe(true);
    expect(match("GET", "/PUBLIC/x")).toBeNull();
    expect(match("GET", "/public")).toBeNull();
    expect(match("GET", "/health")?.public).toBe(true);
    expect(match("GET", "/health/")).toBeNull();
    expect(match("GET", "/Health")).toBeNull();
  });

  it.each(["/prices/eur", "/PRICES/eur", "/prices/", "/prices", "/Prices.", "/prices./eur"])(
    "a scoped prefix rule meets %s",
    (path) => {
      expect(match("GET", path)?.scopes).toEqual(["prices:read"]);
      expect(match("HEAD", path)?.scopes).toEqual(["prices:read"]);
    },
  );

  it.each(["/admin", "/admin/", "/ADMIN", "/Admin.", "/admin../", "/admin%20", "/admin%09."])(
    "an exact scoped rule meets %s",
    (path) => {
      expect(match("GET", path)?.scopes).toEqual(["admin:all"]);
    },
  );

  it("a prefix rule without a slash before * matches any continuation, loosely", () => {
    expect(match("GET", "/abc")?.scopes).toEqual(["a:b"]);
    expect(match("GET", "/ABC")?.scopes).toEqual(["a:b"]);
  });

  it("deny, strict and method rules", () => {
    expect(match("GET", "/INTERNAL/x")?.deny).toBe(true);
    expect(match("GET", "/internal")?.deny).toBe(true);
    expect(match("POST", "/TRADE/x")?.strict).toBe(true);
    expect(match("GET", "/trade/x")).toBeNull();
    expect(match("GET", "/pricesx")).toBeNull();
  });

  it("a catch-all deny rule meets every path", () => {
    const rules = compileRules(
      RouteRuleSchema.array().parse([
        { path: "/ok", scopes: ["x:y"] },
        { path: "/*", deny: true },
      ]),
    );
    for (const path of ["/", "/x", "/OK/x", "/a/b/c/"]) {
      expect(matchRule(rules, "GET", path)?.deny).toBe(true);
    }
    expect(matchRule(rules, "GET", "/OK/")?.scopes).toEqual(["x:y"]);
  });
});

describe("ROUTE_RULES paths", () => {
  it("are kept in canonical form", () => {
    const rules = RouteRuleSchema.array().parse([{ path: "//%70rices/./*" }, { path: "/a/../b" }]);
    expect(rules.map((r) => r.path)).toEqual(["/prices/*", "/b"]);
  });

  it.each([
    [{ path: "/a%2fb" }],
    [{ path: "/a;b" }],
    [{ path: "/public/*", public: true, scopes: ["a:b"] }],
    [{ path: "/public/*", public: true, deny: true }],
    [{ path: "/public/*", public: true, strict: true }],
  ])("refuses %j", (rule) => {
    expect(RouteRuleSchema.safeParse(rule).success).toBe(false);
  });
});
