import type { Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { ConfigError, configFor } from "./config";
import { requestFraming } from "./edge/request-framing";
import type { AppEnv } from "./env";
import { KeygateError, problem, problemResponse } from "./errors";
import { HEALTH_PATH } from "./health";
import { newId } from "./keys/random";
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
