/**
 * The CLI's copy of the management API's JSON (src/cli/api-types.ts) proven equal to what the
 * Worker's zod schemas say it sends. Nothing runs here: `npm run typecheck` (tsconfig.json)
 * fails when a schema and the CLI's type part ways.
 *
 * Why a copy at all: the CLI is type-checked as a Node program, and importing the schemas,
 * even as types, pulls in src/store and src/coordinator, which need the Workers runtime's
 * global types (D1Database, DurableObjectState, cloudflare:workers).
 */
import type { z } from "@hono/zod-openapi";
import type * as Cli from "../../src/cli/api-types";
import type { AuditEventSchema } from "../../src/routes/audit";
import type { maintenanceReportView } from "../../src/routes/maintenance";
import type { TokenResponseSchema } from "../../src/routes/token";
import type { UsageSchema } from "../../src/routes/usage";
import type { RotatedSecretSchema, WebhookDeliverySchema } from "../../src/routes/webhooks";
import type {
  ConsumerSchema,
  IssuedKeySchema,
  KeySchema,
  RateLimitSchema,
  RotationReportSchema,
  RotationSchema,
  VersionSchema,
} from "../../src/routes/schemas";

/** true when each type is assignable to the other: the CLI reads all, and only, what is sent. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Holds<T extends true> = T;

export type ApiTypesMatchTheSchemas = [
  Holds<Same<Cli.RateLimit, z.output<typeof RateLimitSchema>>>,
  // webhookSecret: only in the answer that generated it (a schema private to routes/consumers)
  Holds<Same<Omit<Cli.Consumer, "webhookSecret">, z.output<typeof ConsumerSchema>>>,
  Holds<Same<Cli.KeyVersion, z.output<typeof VersionSchema>>>,
  Holds<Same<Omit<Cli.Rotation, "usage">, z.output<typeof RotationSchema>>>,
  Holds<Same<Required<Cli.Rotation>, z.output<typeof RotationReportSchema>>>,
  Holds<Same<Cli.Key, z.output<typeof KeySchema>>>,
  Holds<Same<Cli.IssuedKey, z.output<typeof IssuedKeySchema>>>,
  Holds<Same<Cli.MaintenanceReport, ReturnType<typeof maintenanceReportView>>>,
  Holds<Same<Cli.AuditEvent, z.output<typeof AuditEventSchema>>>,
  Holds<Same<Cli.KeyUsage, z.output<typeof UsageSchema>>>,
  Holds<Same<Cli.WebhookDelivery, z.output<typeof WebhookDeliverySchema>>>,
  Holds<Same<Cli.RotatedWebhookSecret, z.output<typeof RotatedSecretSchema>>>,
  Holds<Same<Cli.AccessToken, z.output<typeof TokenResponseSchema>>>,
];
