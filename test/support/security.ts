import { describe, expect, it } from "vitest";
import { admin, call, newKey } from "./api";

/** Every management route, with a body that would pass validation where one is needed. */
export const MANAGEMENT_ROUTES: {
  method: string;
  path: string;
  body?: unknown;
  permission: "read" | "admin" | "verify";
}[] = [
  { method: "GET", path: "/consumers", permission: "read" },
  { method: "POST", path: "/consumers", body: { name: "x" }, permission: "admin" },
  { method: "GET", path: "/consumers/csm_x", permission: "read" },
  { method: "PATCH", path: "/consumers/csm_x", body: { name: "y" }, permission: "admin" },
  { method: "DELETE", path: "/consumers/csm_x", permission: "admin" },
  { method: "POST", path: "/consumers/csm_x/keys", body: { scopes: [] }, permission: "admin" },
  { method: "GET", path: "/consumers/csm_x/keys", permission: "read" },
  { method: "GET", path: "/keys/k", permission: "read" },
  { method: "PATCH", path: "/keys/k", body: { name: "n" }, permission: "admin" },
  { method: "POST", path: "/keys/k/rotate", body: {}, permission: "admin" },
  { method: "GET", path: "/keys/k/rotations", permission: "read" },
  { method: "POST", path: "/keys/k/revoke", body: {}, permission: "admin" },
  { method: "GET", path: "/rotations/rot_x", permission: "read" },
  { method: "POST", path: "/rotations/rot_x/complete", body: {}, permission: "admin" },
  { method: "POST", path: "/rotations/rot_x/rollback", body: {}, permission: "admin" },
  {
    method: "POST",
    path: "/rotations/rot_x/extend",
    body: { gracePeriodSeconds: 60 },
    permission: "admin",
  },
  { method: "POST", path: "/verify", body: { key: "kg_x" }, permission: "verify" },
  { method: "GET", path: "/audit", permission: "read" },
  { method: "GET", path: "/keys/k/usage", permission: "read" },
];

function send(route: (typeof MANAGEMENT_ROUTES)[number], headers: Record<string, string>) {
  return call(route.method, `/_keygate/v1${route.path}`, route.body, headers);
}

/**
 * The security cases every management route must pass: no credential, a wrong token, a
 * malformed header, a key lacking the scope, a read-only key on a write, a revoked key.
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
      const res = await send(route, { Authorization: `Bearer ${key}` });
      expect(res.status).toBe(403);
      expect(res.body.code).toBe("insufficient_scope");
      expect(res.headers.get("WWW-Authenticate")).toContain('error="insufficient_scope"');
    });

    it(`lets keygate:read through only where it reads`, async () => {
      const { key } = await newKey(["keygate:read"]);
      const res = await send(route, { "X-API-Key": key });
      if (route.permission === "read") expect(res.status).not.toBe(403);
      else expect(res.status).toBe(403);
      expect(res.status).not.toBe(401);
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
