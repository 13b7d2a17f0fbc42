import { z } from "@hono/zod-openapi";
import { SCOPE_PATTERN } from "../keys/scopes";
import { SIGNED_CURSOR } from "../store/cursors";
import { ERROR_STATUS, type ErrorCode } from "../errors";

/** Schemas shared by the management routes; they validate input and feed the OpenAPI document. */

export const ScopeSchema = z
  .string()
  .regex(SCOPE_PATTERN, "a scope is resource:action (lower case), resource:* or *")
  .openapi({ example: "prices:read" });

export const ScopesSchema = z.array(ScopeSchema).max(64);

export const RateLimitSchema = z
  .strictObject({
    limit: z.number().int().min(1).max(1_000_000_000),
    periodSeconds: z
      .number()
      .int()
      .min(1)
      .max(86_400 * 31),
  })
  .openapi("RateLimit");

export const MetadataSchema = z
  .record(z.string().max(128), z.unknown())
  .refine((value) => JSON.stringify(value).length <= 8192, "metadata is limited to 8 KiB of JSON")
  .openapi({ type: "object", example: { plan: "pro" } });

export const TimestampSchema = z.iso
  .datetime({ offset: true })
  .openapi({ example: "2027-01-01T00:00:00Z" });

export const IdParam = (name: string) =>
  z.object({
    id: z
      .string()
      .min(1)
      .max(64)
      .openapi({ param: { name, in: "path" } }),
  });

export const PageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z
    .string()
    .max(256)
    .regex(SIGNED_CURSOR, "not a cursor this API issued")
    .optional()
    .openapi({ description: "nextCursor of the previous page of the same list (signed)" }),
});

export const ProblemSchema = z
  .object({
    type: z.string(),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]]).openapi({
      description:
        "Keygate's closed list of problem codes, the front door's included (invalid_path, credential_in_url, malformed_request, …); the same code is sent in the Keygate-Error header.",
    }),
    requestId: z.string(),
  })
  .openapi("Problem");

/** `Keygate-Error` on every problem answer: Keygate refused this, the origin never saw it. */
const KEYGATE_ERROR_HEADER = {
  "Keygate-Error": {
    description: "The problem's code: the answer is Keygate's own, never an origin's",
    schema: { type: "string" as const },
  },
};

export const ConsumerSchema = z
  .object({
    id: z.string(),
    name: z.string(),
    metadata: z.record(z.string(), z.unknown()).nullable(),
    rateLimit: RateLimitSchema.nullable(),
    monthlyQuota: z.number().int().nullable(),
    webhookUrl: z.string().nullable(),
    createdAt: z.string(),
    updatedAt: z.string(),
  })
  .openapi("Consumer");

export const VersionSchema = z
  .object({
    version: z.number().int(),
    status: z.enum(["active", "grace", "expired", "revoked"]),
    hint: z.string(),
    scopes: z.array(z.string()),
    createdAt: z.string(),
    expiresAt: z.string().nullable(),
    graceUntil: z.string().nullable(),
    lastUsedAt: z.string().nullable(),
  })
  .openapi("KeyVersion");

export const RotationSchema = z
  .object({
    id: z.string(),
    keyId: z.string(),
    consumerId: z.string(),
    state: z.enum(["in_progress", "completed", "rolled_back"]),
    fromVersion: z.number().int(),
    toVersion: z.number().int(),
    startedAt: z.string(),
    graceUntil: z.string().nullable(),
    graceStartsOnFirstUse: z.boolean(),
    completeWhenIdleSeconds: z.number().int().nullable(),
    firstUsedAt: z.string().nullable(),
    endedAt: z.string().nullable(),
    endReason: z.string().nullable(),
  })
  .openapi("Rotation");

const VersionTrafficSchema = z.object({
  requests: z.number().int(),
  lastUsedAt: z.string().nullable(),
});

/** A rotation as `GET /rotations/:id` and `GET /keys/:id/rotations` show it. */
export const RotationReportSchema = RotationSchema.extend({
  usage: z
    .object({ old: VersionTrafficSchema, new: VersionTrafficSchema })
    .openapi({ description: "traffic on the old and new version since the rotation began" }),
}).openapi("RotationReport");

export const KeySchema = z
  .object({
    id: z.string(),
    consumerId: z.string(),
    name: z.string().nullable(),
    metadata: z.record(z.string(), z.unknown()).nullable(),
    rateLimit: RateLimitSchema.nullable(),
    status: z.enum(["active", "grace", "expired", "revoked"]),
    version: z.number().int(),
    hint: z.string(),
    scopes: z.array(z.string()),
    createdAt: z.string(),
    updatedAt: z.string(),
    expiresAt: z.string().nullable(),
    revokedAt: z.string().nullable(),
    versions: z.array(VersionSchema),
    rotation: RotationSchema.nullable(),
  })
  .openapi("Key");

export const IssuedKeySchema = KeySchema.extend({
  key: z.string().openapi({ description: "The plaintext secret. Shown once, never again." }),
}).openapi("IssuedKey");

export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ items: z.array(item), nextCursor: z.string().nullable() });
}

export const problemResponses = {
  400: {
    description: "Invalid input",
    headers: KEYGATE_ERROR_HEADER,
    content: { "application/problem+json": { schema: ProblemSchema } },
  },
  401: {
    description: "Missing or invalid credentials",
    headers: KEYGATE_ERROR_HEADER,
    content: { "application/problem+json": { schema: ProblemSchema } },
  },
  403: {
    description: "Insufficient scope",
    headers: KEYGATE_ERROR_HEADER,
    content: { "application/problem+json": { schema: ProblemSchema } },
  },
  404: {
    description: "Not found",
    headers: KEYGATE_ERROR_HEADER,
    content: { "application/problem+json": { schema: ProblemSchema } },
  },
  409: {
    description: "Conflict",
    headers: KEYGATE_ERROR_HEADER,
    content: { "application/problem+json": { schema: ProblemSchema } },
  },
  503: {
    description: "A storage dependency failed",
    headers: KEYGATE_ERROR_HEADER,
    content: { "application/problem+json": { schema: ProblemSchema } },
  },
} as const;

export function jsonBody<T extends z.ZodType>(schema: T, required = true) {
  return { required, content: { "application/json": { schema } } };
}

export function jsonResponse<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}
