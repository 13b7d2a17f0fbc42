import { duration } from "../duration";
import { createRoute, z } from "@hono/zod-openapi";
import { managementRouter } from "./router";
import { settle } from "../domain/rotation-machine";
import { MAX_EXPIRES_AT, type KeyState } from "../domain/key-state";
import { KeygateError } from "../errors";
import { flushUsage } from "../edge/usage-buffer";
import { getConsumer } from "../store/consumers";
import { getKeyState, listKeyStates, listRotationsOfKey } from "../store/keys";
import { auditOf, change, coordinator, found, ms, read } from "./coordinator-call";
import { listPage } from "./pages";
import {
  IdParam,
  IssuedKeySchema,
  jsonBody,
  jsonResponse,
  KeySchema,
  MetadataSchema,
  pageOf,
  PageQuery,
  problemResponses,
  RateLimitSchema,
  RotationReportSchema,
  RotationSchema,
  ScopesSchema,
  TimestampSchema,
} from "./schemas";
import { rotationReports } from "./rotations";
import { keyView, rotationView } from "./views";

const LATEST_EXPIRY = new Date(MAX_EXPIRES_AT).toISOString();

/** An expiry: in the future, and no later than `MAX_EXPIRES_AT` (year 9999). */
const ExpiresAtSchema = TimestampSchema.refine(
  (value) => Date.parse(value) > Date.now(),
  "must be in the future",
)
  .refine((value) => Date.parse(value) <= MAX_EXPIRES_AT, `must be at most ${LATEST_EXPIRY}`)
  .openapi({
    description: `When the version stops verifying; in the future and at most ${LATEST_EXPIRY}`,
  });

const KeyInputSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200).optional(),
    scopes: ScopesSchema,
    expiresAt: ExpiresAtSchema.optional(),
    rateLimit: RateLimitSchema.optional(),
    metadata: MetadataSchema.optional(),
  })
  .openapi("KeyInput");

const KeyPatchSchema = z
  .strictObject({
    name: z.string().trim().min(1).max(200).nullable().optional(),
    scopes: ScopesSchema.optional(),
    expiresAt: ExpiresAtSchema.nullable().optional(),
    rateLimit: RateLimitSchema.nullable().optional(),
    metadata: MetadataSchema.nullable().optional(),
  })
  .openapi("KeyPatch");

const RotateSchema = z
  .strictObject({
    gracePeriodSeconds: z
      .number()
      .int()
      .min(0)
      .max(10 * 365 * 86_400)
      .optional(),
    graceStartsOnFirstUse: z.boolean().optional(),
    completeWhenIdleSeconds: z
      .number()
      .int()
      .min(1)
      .max(365 * 86_400)
      .optional(),
    scopes: ScopesSchema.optional(),
    expiresAt: ExpiresAtSchema.nullable().optional(),
  })
  .openapi("RotateInput");

const RevokeSchema = z
  .strictObject({ reason: z.string().trim().min(1).max(500).optional() })
  .openapi("RevokeInput");

const IssuedWithRotation = IssuedKeySchema.extend({ rotation: RotationSchema.nullable() });

const createKey = createRoute({
  method: "post",
  path: "/consumers/{id}/keys",
  tags: ["keys"],
  summary: "Issue a key; the plaintext secret is in this response only",
  request: { params: IdParam("id"), body: jsonBody(KeyInputSchema) },
  responses: { 201: jsonResponse(IssuedKeySchema, "The new key"), ...problemResponses },
});

const listKeys = createRoute({
  method: "get",
  path: "/consumers/{id}/keys",
  tags: ["keys"],
  summary: "List a consumer's keys, newest first",
  request: { params: IdParam("id"), query: PageQuery },
  responses: { 200: jsonResponse(pageOf(KeySchema), "A page of keys"), ...problemResponses },
});

const getKey = createRoute({
  method: "get",
  path: "/keys/{id}",
  tags: ["keys"],
  summary: "Get a key with its versions",
  request: { params: IdParam("id") },
  responses: { 200: jsonResponse(KeySchema, "The key"), ...problemResponses },
});

const patchKey = createRoute({
  method: "patch",
  path: "/keys/{id}",
  tags: ["keys"],
  summary: "Update a key (scopes and expiry apply to its current version)",
  request: { params: IdParam("id"), body: jsonBody(KeyPatchSchema) },
  responses: { 200: jsonResponse(KeySchema, "The key"), ...problemResponses },
});

const rotateKey = createRoute({
  method: "post",
  path: "/keys/{id}/rotate",
  tags: ["rotations"],
  summary: "Rotate: issue version n+1; the old version stays valid for the grace window",
  request: { params: IdParam("id"), body: jsonBody(RotateSchema, false) },
  responses: {
    201: jsonResponse(IssuedWithRotation, "The new secret and the rotation"),
    ...problemResponses,
  },
});

const listRotations = createRoute({
  method: "get",
  path: "/keys/{id}/rotations",
  tags: ["rotations"],
  summary: "List a key's rotations, newest first",
  request: { params: IdParam("id"), query: PageQuery },
  responses: {
    200: jsonResponse(pageOf(RotationReportSchema), "A page of rotations"),
    ...problemResponses,
  },
});

const revokeKey = createRoute({
  method: "post",
  path: "/keys/{id}/revoke",
  tags: ["keys"],
  summary: "Revoke every version of a key (idempotent)",
  request: { params: IdParam("id"), body: jsonBody(RevokeSchema, false) },
  responses: { 200: jsonResponse(KeySchema, "The revoked key"), ...problemResponses },
});

/** The key's state as of now: a grace window that has passed shows as ended. */
export function settledView(state: KeyState, now = Date.now()) {
  const settled = settle(state, now);
  return keyView(settled.ok ? settled.state : state, now);
}

async function loadKey(db: D1Database, keyId: string): Promise<KeyState> {
  return found(await read(() => getKeyState(db, keyId)), "key");
}

export const keyRoutes = managementRouter()
  .openapi(createKey, async (c) => {
    const { id } = c.req.valid("param");
    const input = c.req.valid("json");
    const issued = await change(
      () =>
        coordinator(c, id).createKey(
          {
            name: input.name ?? null,
            scopes: input.scopes,
            expiresAt: ms(input.expiresAt),
            rateLimit: input.rateLimit ?? null,
            metadata: input.metadata ?? null,
          },
          auditOf(c),
        ),
      (value) => value.state.key.id,
    );
    return c.json({ key: issued.secret, ...keyView(issued.state, Date.now()) }, 201);
  })
  .openapi(listKeys, async (c) => {
    const { id } = c.req.valid("param");
    const consumer = await read(() => getConsumer(c.env.DB, id));
    found(consumer, "consumer");
    const page = await listPage(c, `consumers/${id}/keys`, c.req.valid("query"), (request) =>
      listKeyStates(c.env.DB, id, request),
    );
    const now = Date.now();
    return c.json(
      { items: page.items.map((s) => settledView(s, now)), nextCursor: page.nextCursor },
      200,
    );
  })
  .openapi(getKey, async (c) => {
    const state = await loadKey(c.env.DB, c.req.valid("param").id);
    return c.json(settledView(state), 200);
  })
  .openapi(patchKey, async (c) => {
    const { id } = c.req.valid("param");
    const state = await loadKey(c.env.DB, id);
    const patch = c.req.valid("json");
    const updated = await change(
      () =>
        coordinator(c, state.key.consumerId).updateKey(
          id,
          { ...patch, expiresAt: patch.expiresAt === undefined ? undefined : ms(patch.expiresAt) },
          auditOf(c),
        ),
      id,
    );
    return c.json(settledView(updated), 200);
  })
  .openapi(rotateKey, async (c) => {
    const { id } = c.req.valid("param");
    const input = c.req.valid("json");
    const config = c.get("config");
    if (
      input.gracePeriodSeconds !== undefined &&
      input.gracePeriodSeconds > config.maxGraceSeconds
    ) {
      throw new KeygateError("validation_failed", {
        detail: `gracePeriodSeconds may be at most MAX_GRACE_SECONDS (${config.maxGraceSeconds}, ${duration(config.maxGraceSeconds)}).`,
      });
    }
    const state = await loadKey(c.env.DB, id);
    // requests counted here before the rotation must not count as traffic after it
    await flushUsage(c.env, state.key.consumerId);
    const issued = await change(
      () =>
        coordinator(c, state.key.consumerId).rotateKey(
          id,
          { ...input, expiresAt: input.expiresAt === undefined ? undefined : ms(input.expiresAt) },
          auditOf(c),
        ),
      id,
    );
    const view = keyView(issued.state, Date.now());
    return c.json(
      {
        key: issued.secret,
        ...view,
        rotation: issued.rotation ? rotationView(issued.rotation) : null,
      },
      201,
    );
  })
  .openapi(listRotations, async (c) => {
    const { id } = c.req.valid("param");
    const { key } = await loadKey(c.env.DB, id);
    await flushUsage(c.env, key.consumerId);
    const [state, page] = await Promise.all([
      read(() => getKeyState(c.env.DB, id)),
      listPage(c, `keys/${id}/rotations`, c.req.valid("query"), (request) =>
        listRotationsOfKey(c.env.DB, id, request),
      ),
    ]);
    return c.json(
      {
        items: await rotationReports(c, found(state, "key"), page.items),
        nextCursor: page.nextCursor,
      },
      200,
    );
  })
  .openapi(revokeKey, async (c) => {
    const { id } = c.req.valid("param");
    const state = await loadKey(c.env.DB, id);
    const reason = c.req.valid("json").reason ?? null;
    const revoked = await change(
      () => coordinator(c, state.key.consumerId).revokeKey(id, reason, auditOf(c)),
      id,
    );
    return c.json(settledView(revoked), 200);
  });
