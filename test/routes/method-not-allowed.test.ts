import { env, SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { ADMIN, call } from "../support/api";

const PREFIX = "/_keygate/v1";
const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/** Every documented management path (ids filled in) with its documented methods. */
async function documentedPaths(): Promise<{ path: string; methods: string[] }[]> {
  const res = await SELF.fetch("https://keygate.test/_keygate/openapi.json");
  const doc = (await res.json()) as { paths: Record<string, Record<string, unknown>> };
  return Object.entries(doc.paths)
    .filter(([path]) => path.startsWith(`${PREFIX}/`))
    .map(([path, item]) => ({
      path: path.slice(PREFIX.length).replace(/\{[^}]+\}/g, "x"),
      methods: Object.keys(item).map((m) => m.toUpperCase()),
    }));
}

/** The Allow header a path with these methods answers: HEAD goes with GET, sorted. */
function allowOf(methods: string[]): string {
  const all = methods.includes("GET") ? [...methods, "HEAD"] : methods;
  return [...new Set(all)].sort().join(", ");
}

describe("a known management path with a wrong method", () => {
  it("answers 405 method_not_allowed with the Allow header", async () => {
    const res = await call("PUT", `${PREFIX}/consumers`, { name: "x" });
    expect(res.status).toBe(405);
    expect(res.body).toMatchObject({ code: "method_not_allowed", status: 405 });
    expect(res.body.requestId).toEqual(expect.any(String));
    expect(res.headers.get("Allow")).toBe("GET, HEAD, POST");
    expect(res.headers.get("Content-Type")).toBe("application/problem+json");
    expect(res.headers.get("Cache-Control")).toBe("no-store");
  });

  it("answers 405 for every method a documented path does not take", async () => {
    for (const { path, methods } of await documentedPaths()) {
      for (const method of METHODS.filter((m) => !methods.includes(m))) {
        const res = await call(method, `${PREFIX}${path}`);
        expect(res.status, `${method} ${path}`).toBe(405);
        expect(res.headers.get("Allow"), `${method} ${path}`).toBe(allowOf(methods));
      }
    }
  });

  it("lets HEAD through where GET is allowed, and refuses it elsewhere", async () => {
    const head = await SELF.fetch(`https://keygate.test${PREFIX}/consumers`, {
      method: "HEAD",
      headers: ADMIN,
    });
    expect(head.status).toBe(200);
    const refused = await SELF.fetch(`https://keygate.test${PREFIX}/verify`, {
      method: "HEAD",
      headers: ADMIN,
    });
    expect(refused.status).toBe(405);
    expect(refused.headers.get("Allow")).toBe("POST");
  });

  it("still asks for credentials first (401)", async () => {
    const anonymous = await call("PUT", `${PREFIX}/consumers`, { name: "x" }, {});
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers.get("Allow")).toBeNull();
  });

  it("keeps no idempotency record for a refused method", async () => {
    const key = `idem-${crypto.randomUUID()}`;
    const res = await call("POST", `${PREFIX}/audit`, {}, { ...ADMIN, "Idempotency-Key": key });
    expect(res.status).toBe(405);
    const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM idempotency_records WHERE key = ?")
      .bind(key)
      .first<{ n: number }>();
    expect(row?.n).toBe(0);
  });

  it("answers 404 not_found for a path that is not known at all", async () => {
    for (const path of ["/nope", "/consumers/x/nope", "/keys/x/rotate/more"]) {
      const res = await call("GET", `${PREFIX}${path}`);
      expect(res.status).toBe(404);
      expect(res.body.code).toBe("not_found");
      expect(res.headers.get("Allow")).toBeNull();
    }
  });
});
