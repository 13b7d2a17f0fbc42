import { OpenAPIHono } from "@hono/zod-openapi";
import { withRequestContext } from "./request-context";
import type { AppEnv } from "./env";
import { KeygateError } from "./errors";
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
import { VERSION } from "./version";

/** Management request bodies larger than this are refused with 413. */
export const MAX_BODY_BYTES = 64 * 1024;

/**
 * Builds the app that answers under `/_keygate/` (health aside): the token endpoint, the
 * management API and its OpenAPI document, and 404 for any other path there. It holds every
 * zod schema of the API, so src/app.ts imports this module only when such a request arrives.
 */
export function createManagementApp(): OpenAPIHono<AppEnv> {
  const app = withRequestContext(new OpenAPIHono<AppEnv>());

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
  return app;
}
