import { OpenAPIHono } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";

/** Answers 405 with `Allow` for a method that a known path does not take. */
function wrongMethodGuard(methods: ReadonlySet<string>): MiddlewareHandler<AppEnv> {
  const allow = [...methods, ...(methods.has("GET") ? ["HEAD"] : [])].sort().join(", ");
  return async function wrongMethodGuard(c, next) {
    const method = c.req.method === "HEAD" ? "GET" : c.req.method;
    if (methods.has(method)) return next();
    throw new KeygateError("method_not_allowed", {
      detail: `This endpoint does not take ${c.req.method}.`,
      headers: { Allow: allow },
    });
  };
}

/**
 * A management router whose validation failures become `validation_failed` problems, with
 * the failing fields listed under `errors` (unknown fields included).
 */
export function managementRouter(): OpenAPIHono<AppEnv> {
  const router = new OpenAPIHono<AppEnv>({
    defaultHook: (result) => {
      if (result.success) return;
      const issues = result.error.issues.map((issue) => ({
        path: issue.path.map(String).join("."),
        message: issue.message,
      }));
      const first = issues[0];
      throw new KeygateError("validation_failed", {
        detail: first
          ? `${result.target} ${first.path || "(root)"}: ${first.message}`
          : "invalid input",
        extensions: { errors: issues },
      });
    },
  });
  return router;
}

const guarded = new WeakSet<OpenAPIHono<AppEnv>>();

/**
 * Makes every path defined on `router` so far answer a method it does not take with 405
 * `method_not_allowed` and `Allow`, not 404. Call it once every route is mounted: a guard
 * sits after its path's handlers, so a method the path takes never reaches it.
 */
export function guardMethods(router: OpenAPIHono<AppEnv>): void {
  // a module's router is mounted by every app built from it: guarded once
  if (guarded.has(router)) return;
  guarded.add(router);
  const methodsByPath = new Map<string, Set<string>>();
  for (const { method, path } of router.routes) {
    // middleware (`use`) and catch-alls are registered for every method
    if (method === "ALL") continue;
    let methods = methodsByPath.get(path);
    if (!methods) methodsByPath.set(path, (methods = new Set()));
    methods.add(method.toUpperCase());
  }
  for (const [path, methods] of methodsByPath) router.all(path, wrongMethodGuard(methods));
}
