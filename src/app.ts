import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import { HTTPException } from "hono/http-exception";
import { ConfigError, configFor } from "./config";
import { frontDoor } from "./edge/front-door";
import { requestFraming } from "./edge/request-framing";
import type { AppEnv } from "./env";
import { KeygateError, problem, problemResponse } from "./errors";
import { newId } from "./keys/random";
import { auditRoutes } from "./routes/audit";
import { bodyLimit } from "./routes/body-limit";
import { managementAuth } from "./routes/auth";
import { consumerRoutes } from "./routes/consumers";
import { idempotency } from "./routes/idempotency";
import { keyRoutes } from "./routes/keys";
import { maintenanceRoutes } from "./routes/maintenance";
import { guardMethods, managementRouter } from "./routes/router";
import { rotationRoutes } from "./routes/rotations";
import { usageRoutes } from "./routes/usage";
import { verifyRoutes } from "./routes/verify";
import { webhookRoutes } from "./routes/webhooks";
import { signingKeyRoutes } from "./routes/signing-keys";
import { tokenRoutes } from "./routes/token";
import { currentJwks } from "./tokens/jwks-cache";
import { VERSION } from "./version";
import { logError } from "./log";

/** Management request bodies larger than this are refused with 413. */
export const MAX_BODY_BYTES = 64 * 1024;

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

/** Builds the Worker's Hono app: request id, config, error handling and route mounting. */
export function createApp(): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  app.onError(onError);

  app.use("*", async function requestContext(c, next) {
    const requestId = newId("req", 16);
    c.set("requestId", requestId);
    if (c.req.path !== "/_keygate/health") c.set("config", configFor(c.env));
    await next();
    if (!c.res.headers.has("X-Request-Id")) c.res.headers.set("X-Request-Id", requestId);
  });
  app.use("*", requestFraming());

  app.get("/_keygate/health", (c) => {
    try {
      configFor(c.env);
    } catch (error) {
      if (error instanceof ConfigError) {
        return c.json({ status: "misconfigured", version: VERSION, problems: error.problems }, 503);
      }
      throw error;
    }
    return c.json({ status: "ok", version: VERSION });
  });

  // the key itself is the token endpoint's credential: mounted before the management auth
  guardMethods(tokenRoutes);
  app.route("/_keygate/v1", tokenRoutes);

  const v1 = managementRouter();
  v1.use("*", bodyLimit(MAX_BODY_BYTES), managementAuth(), idempotency());
  v1.route("/", consumerRoutes);
  v1.route("/", keyRoutes);
  v1.route("/", rotationRoutes);
  v1.route("/", verifyRoutes);
  v1.route("/", auditRoutes);
  v1.route("/", usageRoutes);
  v1.route("/", signingKeyRoutes);
  v1.route("/", maintenanceRoutes);
  v1.route("/", webhookRoutes);
  guardMethods(v1);
  v1.all("*", () => {
    throw new KeygateError("not_found", { detail: "No such management endpoint." });
  });
  app.route("/_keygate/v1", v1);

  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
    description: "ADMIN_TOKEN, or a Keygate key holding keygate:admin (keygate:read for GETs)",
  });
  app.doc31("/_keygate/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Keygate management API",
      version: VERSION,
      description: "Consumers, keys, zero-downtime rotations, verification and audit.",
    },
    security: [{ bearer: [] }],
  });

  app.all("/_keygate/*", () => {
    throw new KeygateError("not_found", { detail: "No such Keygate endpoint." });
  });
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
