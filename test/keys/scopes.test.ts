import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  REQUIRED_SCOPE_PATTERN,
  SCOPE_PATTERN,
  grantsManagement,
  grantsScope,
  missingScope,
} from "../../src/keys/scopes";

/** A resource or action name as SCOPE_PATTERN allows it. */
const nameArb = fc.stringMatching(/^[a-z0-9][a-z0-9_.-]{0,63}$/);
/** A concrete `resource:action` scope, as a required scope always is. */
const concreteScopeArb = fc
  .tuple(nameArb, nameArb)
  .map(([resource, action]) => `${resource}:${action}`);
/** Any scope a key may be granted: concrete, `resource:*` or `*`. */
const grantedScopeArb = fc.oneof(
  concreteScopeArb,
  nameArb.map((resource) => `${resource}:*`),
  fc.constant("*"),
);

describe("SCOPE_PATTERN", () => {
  it.each([
    "*",
    "prices:read",
    "prices:*",
    "keygate:admin",
    "a:b",
    "0:9",
    "my-service.v2:read_all",
    "prices:read.eur",
    `${"a".repeat(64)}:${"b".repeat(64)}`,
  ])("accepts %j", (scope) => {
    expect(SCOPE_PATTERN.test(scope)).toBe(true);
  });

  it.each([
    "",
    "prices",
    "prices:",
    ":read",
    "*:read",
    "*:*",
    "**",
    "prices:**",
    "prices:r*",
    "Prices:read",
    "prices:READ",
    "prices:read:eur",
    "prices :read",
    " prices:read",
    "prices:read ",
    "prices:read\n",
    "-prices:read",
    "_prices:read",
    ".prices:read",
    "prices:-read",
    "prices/eur:read",
    "prices:read,trade:write",
    "prïces:read",
    `${"a".repeat(65)}:read`,
    `prices:${"b".repeat(65)}`,
  ])("rejects %j", (scope) => {
    expect(SCOPE_PATTERN.test(scope)).toBe(false);
  });

  it("accepts every generated granted scope", () => {
    fc.assert(
      fc.property(grantedScopeArb, (scope) => {
        expect(SCOPE_PATTERN.test(scope)).toBe(true);
      }),
    );
  });
});

describe("REQUIRED_SCOPE_PATTERN", () => {
  it("accepts concrete resource:action scopes", () => {
    expect(REQUIRED_SCOPE_PATTERN.test("prices:read")).toBe(true);
    expect(REQUIRED_SCOPE_PATTERN.test("keygate:verify")).toBe(true);
    fc.assert(
      fc.property(concreteScopeArb, (scope) => {
        expect(REQUIRED_SCOPE_PATTERN.test(scope)).toBe(true);
      }),
    );
  });

  it.each(["*", "prices:*", "prices", "prices:", ":read", "Prices:read", "prices:read:x"])(
    "rejects the wildcard or malformed scope %j",
    (scope) => {
      expect(REQUIRED_SCOPE_PATTERN.test(scope)).toBe(false);
    },
  );
});

describe("grantsScope", () => {
  it("grants an exactly matching scope", () => {
    expect(grantsScope(["prices:read"], "prices:read")).toBe(true);
    expect(grantsScope(["trade:write", "prices:read"], "prices:read")).toBe(true);
  });

  it("does not grant a different action of the same resource", () => {
    expect(grantsScope(["prices:read"], "prices:write")).toBe(false);
  });

  it("does not grant the same action of a different resource", () => {
    expect(grantsScope(["prices:read"], "trade:read")).toBe(false);
  });

  it("does not grant anything from an empty list", () => {
    expect(grantsScope([], "prices:read")).toBe(false);
  });

  it("grants every action of a resource through resource:*", () => {
    expect(grantsScope(["prices:*"], "prices:read")).toBe(true);
    expect(grantsScope(["prices:*"], "prices:write")).toBe(true);
    expect(grantsScope(["prices:*"], "prices:read.eur")).toBe(true);
  });

  it("does not let resource:* reach another resource that shares a prefix", () => {
    expect(grantsScope(["prices:*"], "pricesx:read")).toBe(false);
    expect(grantsScope(["prices:*"], "price:read")).toBe(false);
    expect(grantsScope(["prices:*"], "prices.eur:read")).toBe(false);
    expect(grantsScope(["prices:*"], "prices-eur:read")).toBe(false);
    expect(grantsScope(["pricesx:*"], "prices:read")).toBe(false);
  });

  it("does not let resource:* reach a different resource", () => {
    expect(grantsScope(["prices:*"], "trade:read")).toBe(false);
  });

  it("does not let an exact scope act as a prefix", () => {
    expect(grantsScope(["prices:read"], "prices:readwrite")).toBe(false);
    expect(grantsScope(["prices:read"], "prices:read.eur")).toBe(false);
    expect(grantsScope(["prices:rea"], "prices:read")).toBe(false);
  });

  it("treats * as granting every scope of the API behind Keygate", () => {
    expect(grantsScope(["*"], "prices:read")).toBe(true);
    expect(grantsScope(["prices:read", "*"], "trade:write")).toBe(true);
  });

  it("never lets * grant Keygate's own scopes: they are granted by name or keygate:*", () => {
    for (const scope of ["keygate:admin", "keygate:read", "keygate:verify"]) {
      expect(grantsScope(["*"], scope)).toBe(false);
      expect(grantsScope(["*", scope], scope)).toBe(true);
      expect(grantsScope(["keygate:*"], scope)).toBe(true);
    }
  });

  it("does not treat wildcards inside a name as patterns", () => {
    expect(grantsScope(["prices:r*"], "prices:read")).toBe(false);
    expect(grantsScope(["*:read"], "prices:read")).toBe(false);
    expect(grantsScope(["p*"], "prices:read")).toBe(false);
  });

  it("property: * grants every concrete scope outside keygate:", () => {
    fc.assert(
      fc.property(fc.array(grantedScopeArb), concreteScopeArb, (others, required) => {
        fc.pre(!required.startsWith("keygate:"));
        expect(grantsScope(["*"], required)).toBe(true);
        expect(grantsScope([...others, "*"], required)).toBe(true);
        expect(grantsScope(["*", ...others], required)).toBe(true);
      }),
    );
  });

  it("property: a granted exact scope grants itself, wherever it sits in the list", () => {
    fc.assert(
      fc.property(
        fc.array(grantedScopeArb),
        concreteScopeArb,
        fc.array(grantedScopeArb),
        (before, scope, after) => {
          expect(grantsScope([...before, scope, ...after], scope)).toBe(true);
        },
      ),
    );
  });

  it("property: resource:* grants every action of that resource", () => {
    fc.assert(
      fc.property(nameArb, nameArb, (resource, action) => {
        expect(grantsScope([`${resource}:*`], `${resource}:${action}`)).toBe(true);
      }),
    );
  });

  it("property: resource:* grants nothing of any other resource", () => {
    fc.assert(
      fc.property(nameArb, nameArb, nameArb, (granted, resource, action) => {
        fc.pre(granted !== resource);
        expect(grantsScope([`${granted}:*`], `${resource}:${action}`)).toBe(false);
      }),
    );
  });

  it("property: without *, a scope is granted only by itself or its resource:*", () => {
    fc.assert(
      fc.property(
        fc.array(grantedScopeArb.filter((scope) => scope !== "*")),
        concreteScopeArb,
        (granted, required) => {
          const resource = required.slice(0, required.indexOf(":"));
          const expected = granted.includes(required) || granted.includes(`${resource}:*`);
          expect(grantsScope(granted, required)).toBe(expected);
        },
      ),
    );
  });
});

describe("missingScope", () => {
  it("returns null when nothing is required", () => {
    expect(missingScope([], [])).toBeNull();
    expect(missingScope(["prices:read"], [])).toBeNull();
  });

  it("returns null when every required scope is granted", () => {
    expect(missingScope(["prices:read", "trade:write"], ["trade:write", "prices:read"])).toBeNull();
    expect(missingScope(["prices:*"], ["prices:read", "prices:write"])).toBeNull();
    expect(missingScope(["*"], ["prices:read", "trade:write"])).toBeNull();
    expect(missingScope(["*"], ["prices:read", "keygate:admin"])).toBe("keygate:admin");
  });

  it("returns the first required scope that is not granted", () => {
    expect(missingScope(["prices:read"], ["prices:read", "trade:write", "x:y"])).toBe(
      "trade:write",
    );
    expect(missingScope([], ["prices:read", "trade:write"])).toBe("prices:read");
  });

  it("does not let prices:* cover pricesx:read", () => {
    expect(missingScope(["prices:*"], ["prices:read", "pricesx:read"])).toBe("pricesx:read");
  });

  it("property: agrees with grantsScope on every required scope", () => {
    fc.assert(
      fc.property(
        fc.array(grantedScopeArb, { maxLength: 6 }),
        fc.array(concreteScopeArb, { maxLength: 6 }),
        (granted, required) => {
          const expected = required.find((scope) => !grantsScope(granted, scope)) ?? null;
          expect(missingScope(granted, required)).toBe(expected);
        },
      ),
    );
  });

  it("property: * leaves nothing missing", () => {
    fc.assert(
      fc.property(fc.array(concreteScopeArb), (required) => {
        expect(missingScope(["*"], required)).toBeNull();
      }),
    );
  });

  it("property: granting exactly the required scopes leaves nothing missing", () => {
    fc.assert(
      fc.property(fc.array(concreteScopeArb), (required) => {
        expect(missingScope(required, required)).toBeNull();
      }),
    );
  });
});

describe("grantsManagement", () => {
  it.each([
    [["keygate:admin"], "admin"],
    [["keygate:admin"], "read"],
    [["keygate:admin"], "verify"],
    [["keygate:*"], "admin"],
    [["keygate:*"], "read"],
    [["keygate:*"], "verify"],
    [["keygate:read"], "read"],
    [["keygate:verify"], "verify"],
    [["prices:read", "keygate:read"], "read"],
  ] as const)("%j grants %s", (granted, permission) => {
    expect(grantsManagement(granted, permission)).toBe(true);
  });

  it.each([
    [["*"], "admin"],
    [["*"], "read"],
    [["*"], "verify"],
    [["keygate:read"], "admin"],
    [["keygate:read"], "verify"],
    [["keygate:verify"], "admin"],
    [["keygate:verify"], "read"],
    [["prices:*"], "read"],
    [["keygate:admin.x"], "admin"],
    [["keygatex:admin"], "admin"],
    [[], "read"],
  ] as const)("%j does not grant %s", (granted, permission) => {
    expect(grantsManagement(granted, permission)).toBe(false);
  });

  it("property: without a keygate scope, no wildcard grants any management permission", () => {
    fc.assert(
      fc.property(
        fc.array(grantedScopeArb.filter((scope) => !scope.startsWith("keygate:"))),
        fc.constantFrom("admin", "read", "verify" as const),
        (granted, permission) => {
          expect(grantsManagement(granted, permission)).toBe(false);
        },
      ),
    );
  });
});
