import { Hono, type Context } from "hono";
import { frontDoor } from "./edge/front-door";
import type { AppEnv } from "./env";
import { KeygateError } from "./errors";
import { health, HEALTH_PATH } from "./health";
import { currentJwks } from "./tokens/jwks-cache";
import { withRequestContext } from "./request-context";

type ManagementApp = ReturnType<typeof import("./management").createManagementApp>;
let management: Promise<ManagementApp> | undefined;

/**
 * The management app (src/management.ts), imported and built by the first request that needs
 * it. It holds the OpenAPI document and every zod schema of the API; a new isolate that only
 * serves the front door never evaluates them, which is most of the script.
 */
function managementApp(): Promise<ManagementApp> {
  management ??= import("./management").then(
    (module) => module.createManagementApp(),
    (error: unknown) => {
      management = undefined; // the next request tries again
      throw error;
    },
  );
  return management;
}

/** Hands a request under `/_keygate/` (health aside) to the management app, whole. */
async function toManagement(c: Context<AppEnv>, next: () => Promise<void>) {
  const method = c.req.method;
  if (c.req.path === HEALTH_PATH && (method === "GET" || method === "HEAD")) return next();
  let executionCtx: Parameters<ManagementApp["fetch"]>[2];
  try {
    executionCtx = c.executionCtx;
  } catch {
    executionCtx = undefined; // a caller that passed none, as in some tests
  }
  return (await managementApp()).fetch(c.req.raw, c.env, executionCtx);
}

/**
 * Builds the Worker's Hono app: `/_keygate/` goes to the management app, the rest (health,
 * JWKS, the front door) is answered here, with the same request context.
 */
export function createApp(): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  // first, so that a handed-over request goes through the management app's context only
  app.all("/_keygate/*", toManagement);
  withRequestContext(app);

  app.get(HEALTH_PATH, health);
  app.get("/.well-known/jwks.json", async (c) => {
    const jwks = await currentJwks(c.env);
    c.header("Cache-Control", "public, max-age=60");
    return c.json(jwks);
  });
  app.all("/.well-known/*", () => {
    throw new KeygateError("not_found", { detail: "No such well-known resource." });
  });
  app.all("*", frontDoor);
  return app;
}
