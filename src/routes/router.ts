import { OpenAPIHono } from "@hono/zod-openapi";
import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";

/**
 * The methods of every management path, across all routers (each path lives in one router,
 * mounted at the same prefix, so the templates agree). Filled as routes are defined.
 */
const methodsByPath = new Map<string, Set<string>>();

/** Answers 405 with `Allow` for a method that a known path does not take. */
function wrongMethodGuard(path: string): MiddlewareHandler<AppEnv> {
  return async function wrongMethodGuard(c, next) {
    const methods = methodsByPath.get(path)!;
    const method = c.req.method === "HEAD" ? "GET" : c.req.method;
    if (methods.has(method)) return next();
    const allow = methods.has("GET") ? [...methods, "HEAD"] : [...methods];
    throw new KeygateError("method_not_allowed", {
      detail: `This endpoint does not take ${c.req.method}.`,
      headers: { Allow: allow.sort().join(", ") },
    });
  };
}

/**
 * A management router whose validation failures become `validation_failed` problems, with
 * the failing fields listed under `errors` (unknown fields included), and whose paths answer
 * a method they do not take with 405 `method_not_allowed` and `Allow`, not 404.
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
  const define = router.openapi.bind(router);
  const guarded = new Set<string>();
  router.openapi = ((route, handler, hook) => {
    const defined = define(route, handler, hook);
    const path = route.path.replace(/\{([^}]+)\}/g, ":$1");
    let methods = methodsByPath.get(path);
    if (!methods) methodsByPath.set(path, (methods = new Set()));
    methods.add(route.method.toUpperCase());
    // registered once per path, after its first handler: a taken method passes on to it
    if (!guarded.has(path)) {
      guarded.add(path);
      router.all(path, wrongMethodGuard(path));
    }
    return defined;
  }) as typeof router.openapi;
  return router;
}
