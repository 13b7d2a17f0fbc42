import { Hono, type Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { ConfigError, configFor } from "./config";
import { frontDoor } from "./edge/front-door";
import { requestFraming } from "./edge/request-framing";
import type { AppEnv } from "./env";
import { KeygateError, problem, problemResponse } from "./errors";
import { newId } from "./keys/random";
import { health, HEALTH_PATH } from "./health";
import { currentJwks } from "./tokens/jwks-cache";
import { logError } from "./log";

function onError(error: Error, c: Context<AppEnv>): Response {
  if (error instanceof KeygateError) return problem(c, error);
  const requestId = c.get("requestId") ?? "unknown";
  if (error instanceof ConfigError) {
    logError("config_invalid", { problems: error.problems });
    return problemResponse("unavailable", requestId, { detail: "Keygate is misconfigured." });
  }
  if (error instanceof HTTPException) {
    if (error.status === 415) {
      return problemResponse("validation_failed", requestId, {
        detail: "Send the body as application/json.",
      });
    }
    if (error.status === 400) {
      return problemResponse("validation_failed", requestId, { detail: error.message });
    }
  }
  logError("unhandled_error", { requestId, error });
  return problemResponse("internal_error", requestId, {
    detail: "Something went wrong on our side.",
  });
}

/**
 * What every request of both apps goes through: the error handler, a request id (echoed as
 * `X-Request-Id`), the parsed config, and the refusal of ambiguous body framing.
 */
export function withRequestContext<App extends Hono<AppEnv>>(app: App): App {
  app.onError(onError);
  app.use("*", async function requestContext(c, next) {
    const requestId = newId("req", 16);
    c.set("requestId", requestId);
    if (c.req.path !== HEALTH_PATH) c.set("config", configFor(c.env));
    await next();
    if (!c.res.headers.has("X-Request-Id")) c.res.headers.set("X-Request-Id", requestId);
  });
  app.use("*", requestFraming());
  return app;
}

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
