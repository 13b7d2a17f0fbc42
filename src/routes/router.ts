import { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../env";
import { KeygateError } from "../errors";

/**
 * A management router whose validation failures become `validation_failed` problems, with
 * the failing fields listed under `errors` (unknown fields included).
 */
export function managementRouter(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({
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
}
