import { describe, expect, it } from "vitest";
import { admin, call, newConsumer, newKey, type Json } from "./api";

export type ManagementPermission = "read" | "admin" | "verify";

export interface ManagementRoute {
  method: string;
  /** under `/_keygate/v1`; `{consumer}`, `{key}`, `{rotation}` and `{delivery}` name fixtures */
  path: string;
  /** a body that passes validation, where the route takes one */
  body?: unknown;
  permission: ManagementPermission;
  /** the status of a successful call on fresh fixtures */
  status: number;
}

/**
 * Every management route but `POST /token` (whose credential is the key being exchanged).
 * `test/routes/security.test.ts` checks this list against the OpenAPI document, so a new
 * route cannot be left out.
 */
export const MANAGEMENT_ROUTES: ManagementRoute[] = [
  { method: "GET", path: "/consumers", permission: "read", status: 200 },
  { method: "POST", path: "/consumers", body: { name: "x" }, permission: "admin", status: 201 },
  { method: "GET", path: "/consumers/{consumer}", permission: "read", status: 200 },
  {
    method: "PATCH",
    path: "/consumers/{consumer}",
    body: { name: "y" },
    permission: "admin",
    status: 200,
  },
  { method: "DELETE", path: "/consumers/{consumer}", permission: "admin", status: 200 },
  {
    method: "POST",
    path: "/consumers/{consumer}/keys",
    body: { scopes: [] },
    permission: "admin",
    status: 201,
  },
  { method: "GET", path: "/consumers/{consumer}/keys", permission: "read", status: 200 },
  { method: "GET", path: "/keys/{key}", permission: "read", status: 200 },
  { method: "PATCH", path: "/keys/{key}", body: { name: "n" }, permission: "admin", status: 200 },
  { method: "POST", path: "/keys/{key}/rotate", body: {}, permission: "admin", status: 201 },
  { method: "GET", path: "/keys/{key}/rotations", permission: "read", status: 200 },
  { method: "POST", path: "/keys/{key}/revoke", body: {}, permission: "admin", status: 200 },
  { method: "GET", path: "/keys/{key}/usage", permission: "read", status: 200 },
  { method: "GET", path: "/rotations/{rotation}", permission: "read", status: 200 },
  {
    method: "POST",
    path: "/rotations/{rotation}/complete",
    body: {},
    permission: "admin",
    status: 200,
  },
  {
    method: "POST",
    path: "/rotations/{rotation}/rollback",
    body: {},
    permission: "admin",
    status: 200,
  },
  {
    method: "POST",
    path: "/rotations/{rotation}/extend",
    body: { gracePeriodSeconds: 60 },
    permission: "admin",
    status: 200,
  },
  { method: "POST", path: "/verify", body: { key: "kg_x" }, permission: "verify", status: 200 },
  { method: "GET", path: "/audit", permission: "read", status: 200 },
  { method: "GET", path: "/signing-keys", permission: "read", status: 200 },
  // emergency: a scheduled rotation may be refused (409) while the next key is fresh
  {
    method: "POST",
    path: "/signing-keys/rotate",
    body: { emergency: true },
    permission: "admin",
    status: 200,
  },
  { method: "POST", path: "/maintenance/run", body: {}, permission: "admin", status: 200 },
  { method: "GET", path: "/consumers/{consumer}/webhooks", permission: "read", status: 200 },
  {
    method: "POST",
    path: "/consumers/{consumer}/webhooks/{delivery}/redeliver",
    body: {},
    permission: "admin",
    status: 202,
  },
  {
    method: "POST",
    path: "/consumers/{consumer}/webhook-secret/rotate",
    body: {},
    permission: "admin",
    status: 200,
  },
];

interface Fixtures {
  consumer: string;
  key: string;
  rotation: string;
  delivery: string;
}

/** Ids that name nothing: enough for the checks that must refuse before any lookup. */
const NO_FIXTURES: Fixtures = { consumer: "csm_x", key: "k", rotation: "rot_x", delivery: "whd_x" };

/**
 * A consumer with a key, and another key of it with a rotation in progress; with `webhook`,
 * the consumer has a webhookUrl (nothing listens there) and `delivery` is one of its webhooks.
 */
async function freshFixtures(webhook = false): Promise<Fixtures> {
  const consumer = webhook
    ? ((
        await admin.post("/consumers", {
          name: "security-fixture",
          webhookUrl: "http://127.0.0.1:9/hooks",
        })
      ).body.id as string)
    : await newConsumer("security-fixture");
  const key = await newKey(["prices:read"], {}, consumer);
  const rotated = await newKey(["prices:read"], {}, consumer);
  const rotation = await admin.post(`/keys/${rotated.id}/rotate`, { gracePeriodSeconds: 3600 });
  if (rotation.status !== 201) throw new Error(`rotate: ${JSON.stringify(rotation.body)}`);
  const deliveries = webhook ? await admin.get(`/consumers/${consumer}/webhooks`) : null;
  const delivery = ((deliveries?.body.items as Json[] | undefined)?.[0]?.id as string) ?? "";
  return {
    consumer,
    key: key.id,
    rotation: (rotation.body.rotation as Json).id as string,
    delivery,
  };
}

function needsWebhook(route: ManagementRoute): boolean {
  return route.path.includes("{delivery}");
}

function send(route: ManagementRoute, headers: Record<string, string>, ids = NO_FIXTURES) {
  const path = route.path.replace(
    /\{(consumer|key|rotation|delivery)\}/g,
    (_, name: keyof Fixtures) => encodeURIComponent(ids[name]),
  );
  return call(route.method, `/_keygate/v1${path}`, route.body, headers);
}

function expectInsufficientScope(
  res: Awaited<ReturnType<typeof send>>,
  route: ManagementRoute,
): void {
  expect(res.status).toBe(403);
  expect(res.body.code).toBe("insufficient_scope");
  const needed = route.permission === "admin" ? "keygate:admin" : `keygate:${route.permission}`;
  expect(res.headers.get("WWW-Authenticate")).toBe(
    `Bearer realm="keygate", error="insufficient_scope", scope="${needed}"`,
  );
}

/**
 * The security cases every management route must pass: no credential, a wrong token, a
 * malformed header, a key lacking the scope, a key holding only `*`, a revoked key; and the
 * permission matrix of `keygate:verify`, `keygate:read`, `keygate:admin` and `keygate:*`.
 */
export function describeManagementSecurity(): void {
  describe.each(MANAGEMENT_ROUTES)("$method $path", (route) => {
    it("refuses a request with no credential (401 missing_credentials)", async () => {
      const res = await send(route, {});
      expect(res.status).toBe(401);
      expect(res.body.code).toBe("missing_credentials");
      expect(res.headers.get("WWW-Authenticate")).toContain('error="invalid_token"');
      expect(res.headers.get("Content-Type")).toBe("application/problem+json");
    });

    it("refuses a wrong admin token (401 invalid_key)", async () => {
      const res = await send(route, { Authorization: "Bearer not-the-admin-token-at-all" });
      expect(res.status).toBe(401);
      expect(res.body.code).toBe("invalid_key");
    });

    it("refuses another authorization scheme (401)", async () => {
      const res = await send(route, { Authorization: "Basic YWRtaW46YWRtaW4=" });
      expect(res.status).toBe(401);
    });

    it("refuses a valid key without a keygate scope (403 insufficient_scope)", async () => {
      const { key } = await newKey(["prices:read"]);
      expectInsufficientScope(await send(route, { Authorization: `Bearer ${key}` }), route);
    });

    it("refuses a key holding only * (403): management scopes are never implied", async () => {
      const { key } = await newKey(["*"]);
      expectInsufficientScope(await send(route, { Authorization: `Bearer ${key}` }), route);
    });

    if (route.permission === "verify") {
      it("lets a keygate:verify key through", async () => {
        const { key } = await newKey(["keygate:verify"]);
        const res = await send(route, { Authorization: `Bearer ${key}` });
        expect(res.status).toBe(route.status);
      });
    } else {
      it("refuses a keygate:verify key (403 insufficient_scope)", async () => {
        const { key } = await newKey(["keygate:verify"]);
        expectInsufficientScope(await send(route, { Authorization: `Bearer ${key}` }), route);
      });
    }

    if (route.permission === "read") {
      it("lets a keygate:read key read", async () => {
        const { key } = await newKey(["keygate:read"]);
        const res = await send(
          route,
          { "X-API-Key": key },
          await freshFixtures(needsWebhook(route)),
        );
        expect(res.status).toBe(route.status);
      });
    } else {
      it("refuses a keygate:read key (403 insufficient_scope)", async () => {
        const { key } = await newKey(["keygate:read"]);
        expectInsufficientScope(await send(route, { "X-API-Key": key }), route);
      });
    }

    it.each(["keygate:admin", "keygate:*"])("lets a %s key through", async (scope) => {
      const { key } = await newKey([scope]);
      const res = await send(
        route,
        { Authorization: `Bearer ${key}` },
        await freshFixtures(needsWebhook(route)),
      );
      expect(res.status, JSON.stringify(res.body)).toBe(route.status);
    });

    it("refuses a revoked admin key at once (401)", async () => {
      const issued = await newKey(["keygate:admin"]);
      expect((await admin.post(`/keys/${issued.id}/revoke`)).status).toBe(200);
      const res = await send(route, { Authorization: `Bearer ${issued.key}` });
      expect(res.status).toBe(401);
      expect(res.body.code).toBe("invalid_key");
    });
  });
}
