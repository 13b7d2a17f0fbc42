import type { AuditEvent } from "../store/audit";
import type { KeyState, Rotation } from "../domain/key-state";

/**
 * Webhooks to consumers, the pure part: which changes become which events, the payload that
 * is signed and sent, and the retry schedule. No I/O: the coordinator stores and delivers.
 * Payloads follow Standard Webhooks: `{ type, timestamp, data }`, times as ISO-8601 strings,
 * never a secret or a secret's hash.
 */

export const WEBHOOK_EVENT_TYPES = [
  "key.created",
  "rotation.started",
  "rotation.grace_ending",
  "rotation.completed",
  "rotation.rolled_back",
  "key.revoked",
  "key.expiring",
  "key.rotation_due",
] as const;

export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/**
 * What an event says, as handed to `KeyCoordinator.emitEvent`. Times are epoch milliseconds
 * here and ISO-8601 strings on the wire; other fields are sent as they are.
 */
export interface WebhookEventData {
  keyId: string;
  /** the key version the event is about (for a rotation: the version now current) */
  version: number;
  rotationId?: string | undefined;
  graceUntil?: number | null | undefined;
  expiresAt?: number | null | undefined;
  [field: string]: unknown;
}

/** An event ready to be enqueued: `id` becomes the `webhook-id` header. */
export interface WebhookEvent {
  id: string;
  type: WebhookEventType;
  at: number;
  data: Record<string, unknown>;
}

/** The body of every webhook request. */
export interface WebhookPayload {
  type: WebhookEventType;
  timestamp: string;
  data: Record<string, unknown> & { consumerId: string };
}

/** Time fields of `WebhookEventData` turned from epoch milliseconds into ISO-8601 strings. */
const TIME_FIELDS = new Set(["graceUntil", "expiresAt", "startedAt", "endedAt", "dueAt"]);
/** Field names no payload may carry, whatever a caller passes. */
const FORBIDDEN_FIELDS = new Set(["secret", "secretHash", "key", "webhookSecret", "hash"]);

function iso(at: number | null): string | null {
  return at === null ? null : new Date(at).toISOString();
}

export function isWebhookEventType(type: string): type is WebhookEventType {
  return (WEBHOOK_EVENT_TYPES as readonly string[]).includes(type);
}

/** What is wrong with event data handed in from outside, or null when it can be sent. */
export function webhookDataProblem(data: WebhookEventData): string | null {
  if (typeof data !== "object" || data === null) return "data must be an object";
  if (typeof data.keyId !== "string" || data.keyId === "") return "data.keyId must be a key id";
  if (!Number.isSafeInteger(data.version) || data.version < 1)
    return "data.version must be a version number";
  const forbidden = Object.keys(data).find((field) => FORBIDDEN_FIELDS.has(field));
  if (forbidden !== undefined) return `a webhook never carries "${forbidden}"`;
  return null;
}

/** The JSON body of an event for `consumerId`: `{ type, timestamp, data }`, never a secret. */
export function webhookPayload(consumerId: string, event: WebhookEvent): string {
  const data: Record<string, unknown> = { consumerId };
  for (const [field, value] of Object.entries(event.data)) {
    if (value === undefined || field === "consumerId") continue;
    if (FORBIDDEN_FIELDS.has(field)) throw new TypeError(`a webhook never carries "${field}"`);
    data[field] = TIME_FIELDS.has(field) && typeof value === "number" ? iso(value) : value;
  }
  const payload: WebhookPayload = {
    type: event.type,
    timestamp: new Date(event.at).toISOString(),
    data: data as WebhookPayload["data"],
  };
  return JSON.stringify(payload);
}

/** What every rotation event says first: the key, the version now current, the rotation. */
function rotationData(keyId: string, version: number, rotation: Rotation) {
  return {
    keyId,
    version,
    rotationId: rotation.id,
    fromVersion: rotation.fromVersion,
    toVersion: rotation.toVersion,
  };
}

/**
 * The webhook events of a change to a key, one per audit event that a consumer hears about
 * (`key.created`, `rotation.started`, `rotation.completed`, `rotation.rolled_back`,
 * `key.revoked`). Each takes its audit event's id, so `webhook-id` names the audit record.
 */
export function webhookEventsFor(
  audit: AuditEvent[],
  state: KeyState,
  rotations: Rotation[],
): WebhookEvent[] {
  const events: WebhookEvent[] = [];
  const keyId = state.key.id;
  const versionOf = (n: number) => state.versions.find((v) => v.version === n);
  for (const event of audit) {
    const details = event.details;
    const rotationId = typeof details.rotationId === "string" ? details.rotationId : undefined;
    const rotation = rotations.find((r) => r.id === rotationId);
    const base = { id: event.id, at: event.at };
    switch (event.action) {
      case "key.created": {
        const version = versionOf(Number(details.version ?? 1));
        events.push({
          ...base,
          type: "key.created",
          data: {
            keyId,
            version: version?.version ?? 1,
            scopes: version?.scopes ?? [],
            hint: version?.hint,
            expiresAt: version?.expiresAt ?? null,
          },
        });
        break;
      }
      case "rotation.started": {
        if (!rotation) break;
        events.push({
          ...base,
          type: "rotation.started",
          data: {
            ...rotationData(keyId, rotation.toVersion, rotation),
            graceUntil: rotation.graceUntil,
            graceStartsOnFirstUse: rotation.graceStartsOnFirstUse,
            emergency: details.emergency === true,
            expiresAt: versionOf(rotation.toVersion)?.expiresAt ?? null,
          },
        });
        break;
      }
      case "rotation.completed": {
        if (!rotation) break;
        events.push({
          ...base,
          type: "rotation.completed",
          data: {
            ...rotationData(keyId, rotation.toVersion, rotation),
            reason: rotation.endReason,
          },
        });
        break;
      }
      case "rotation.rolled_back": {
        if (!rotation) break;
        events.push({
          ...base,
          type: "rotation.rolled_back",
          data: {
            ...rotationData(keyId, rotation.fromVersion, rotation),
            revokedVersion: rotation.toVersion,
          },
        });
        break;
      }
      case "key.revoked":
        events.push({
          ...base,
          type: "key.revoked",
          data: {
            keyId,
            version: state.key.currentVersion,
            reason: typeof details.reason === "string" ? details.reason : null,
          },
        });
        break;
      default:
        break;
    }
  }
  return events;
}

/**
 * How long to wait after the n-th failed attempt (1-based) before the next one. After the
 * last delay the delivery has had `MAX_WEBHOOK_ATTEMPTS` attempts and is marked `failed`.
 */
export const WEBHOOK_RETRY_DELAYS_MS = [
  5_000, // 5 s
  30_000, // 30 s
  120_000, // 2 min
  600_000, // 10 min
  3_600_000, // 1 h
  21_600_000, // 6 h
  86_400_000, // 24 h
] as const;

export const MAX_WEBHOOK_ATTEMPTS = WEBHOOK_RETRY_DELAYS_MS.length + 1;

/** Longest a rotated-out webhook secret may keep signing beside the new one (7 days). */
export const MAX_WEBHOOK_SECRET_OVERLAP_SECONDS = 7 * 86_400;

/** How long one attempt may take, from the request to the end of the response body. */
export const WEBHOOK_TIMEOUT_MS = 10_000;

/** What one attempt gave: an HTTP status, or an error before any answer came. */
export interface AttemptOutcome {
  ok: boolean;
  statusCode: number | null;
  error: string | null;
  url: string | null;
}

export type DeliveryStatus = "pending" | "delivered" | "failed";

export interface DeliveryProgress {
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: number | null;
  lastAttemptAt: number | null;
  deliveredAt: number | null;
}

/**
 * A delivery after an attempt at `at`. A failed attempt is retried after the next delay of
 * the schedule; the last one marks it `failed`. `counted: false` (there was nowhere to send
 * it) gives up at once without spending an attempt.
 */
export function afterAttempt(
  attempts: number,
  outcome: AttemptOutcome,
  at: number,
  counted = true,
): DeliveryProgress {
  const made = counted ? attempts + 1 : attempts;
  if (outcome.ok) {
    return {
      status: "delivered",
      attempts: made,
      nextAttemptAt: null,
      lastAttemptAt: at,
      deliveredAt: at,
    };
  }
  const delay = counted ? WEBHOOK_RETRY_DELAYS_MS[made - 1] : undefined;
  return {
    status: delay === undefined ? "failed" : "pending",
    attempts: made,
    nextAttemptAt: delay === undefined ? null : at + delay,
    lastAttemptAt: counted ? at : null,
    deliveredAt: null,
  };
}
