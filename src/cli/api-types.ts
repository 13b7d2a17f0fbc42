/**
 * The management API's JSON, as the CLI reads it (the OpenAPI document at
 * `/_keygate/openapi.json` is the full description; src/routes/schemas.ts defines it).
 * The types whose schemas src/routes exports are proven equal to them by the Worker's
 * typecheck (test/cli/api-types.ts); they cannot be imported here, see there why.
 */

export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}

export interface RateLimit {
  limit: number;
  periodSeconds: number;
}

export interface Consumer {
  id: string;
  name: string;
  metadata: Record<string, unknown> | null;
  rateLimit: RateLimit | null;
  monthlyQuota: number | null;
  webhookUrl: string | null;
  createdAt: string;
  updatedAt: string;
  /**
   * The webhook signing secret (`whsec_…`), only in the answer that generated it: the creation
   * or first update that gives the consumer a `webhookUrl`. Never shown again.
   */
  webhookSecret?: string;
}

export type VersionStatus = "active" | "grace" | "expired" | "revoked";

export interface KeyVersion {
  version: number;
  status: VersionStatus;
  hint: string;
  scopes: string[];
  createdAt: string;
  expiresAt: string | null;
  graceUntil: string | null;
  lastUsedAt: string | null;
}

export interface VersionUsage {
  requests: number;
  lastUsedAt: string | null;
}

export interface Rotation {
  id: string;
  keyId: string;
  consumerId: string;
  state: "in_progress" | "completed" | "rolled_back";
  fromVersion: number;
  toVersion: number;
  startedAt: string;
  graceUntil: string | null;
  graceStartsOnFirstUse: boolean;
  completeWhenIdleSeconds: number | null;
  firstUsedAt: string | null;
  endedAt: string | null;
  endReason: string | null;
  usage?: { old: VersionUsage; new: VersionUsage };
}

export interface Key {
  id: string;
  consumerId: string;
  name: string | null;
  metadata: Record<string, unknown> | null;
  rateLimit: RateLimit | null;
  status: VersionStatus;
  version: number;
  hint: string;
  scopes: string[];
  createdAt: string;
  updatedAt: string;
  expiresAt: string | null;
  revokedAt: string | null;
  versions: KeyVersion[];
  rotation: Rotation | null;
}

/** A key as issued by create or rotate: the plaintext secret is in `key`, once. */
export interface IssuedKey extends Key {
  key: string;
}

export interface AuditEvent {
  id: string;
  at: string;
  actor: string;
  action: string;
  target: string;
  consumerId: string | null;
  keyId: string | null;
  details: Record<string, unknown>;
  requestId: string | null;
}

export interface KeyUsage {
  keyId: string;
  from: string;
  to: string;
  granularity: "hour";
  total: number;
  items: { hour: string; requests: number; versions: Record<string, number> }[];
}

export type DeliveryStatus = "pending" | "delivered" | "failed";

/** One delivery of a webhook event to a consumer (`GET /consumers/:id/webhooks`). */
export interface WebhookDelivery {
  id: string;
  consumerId: string;
  /** the `webhook-id` header: the same on every attempt and redelivery of the event */
  eventId: string;
  type: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  url: string | null;
  redeliveryOf: string | null;
  createdAt: string;
  updatedAt: string;
  deliveredAt: string | null;
  payload: { type: string; timestamp: string; data: Record<string, unknown> };
}

/** The answer of `POST /consumers/:id/webhook-secret/rotate`: the new secret, once. */
export interface RotatedWebhookSecret {
  consumerId: string;
  webhookSecret: string;
  /** until when the previous secret still signs beside the new one; null: it stopped at once */
  previousSecretRetiresAt: string | null;
}

/** The report of `POST /maintenance/run` (src/routes/maintenance.ts). */
export interface MaintenanceReport {
  startedAt: string;
  finishedAt: string;
  changes: number;
  rotationsCompleted: { consumerId: string; keyId: string; rotationId: string }[];
  versionsExpired: { consumerId: string; keyId: string; version: number }[];
  reminders: {
    type: "rotation.grace_ending" | "key.expiring" | "key.rotation_due";
    consumerId: string;
    keyId: string;
    version: number;
    rotationId: string | null;
  }[];
  reconciliation: {
    keysChecked: number;
    recordsListed: number;
    fixed: {
      consumerId: string | null;
      keyId: string | null;
      version: number | null;
      drift: "missing" | "stale" | "retired" | "orphan";
      queued: boolean;
    }[];
    keysWalk: "complete" | "continues";
    kvWalk: "complete" | "continues";
  };
  pruned: { idempotencyRecords: number; webhookDeliveries: number };
  failures: { step: string; consumerId: string | null; keyId: string | null; error: string }[];
}

/** The answer of `POST /verify`: the Worker's own type (src/edge/key-check.ts). */
export type { KeyCheck as VerifyResult } from "../edge/key-check.js";

export interface AccessToken {
  access_token: string;
  token_type: "Bearer";
  expires_in: number;
  scope: string;
}
