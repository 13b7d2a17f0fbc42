import { DurableObject } from "cloudflare:workers";
import { configFor } from "../config";
import type { Bindings } from "../env";
import { generateSecret, newKeyId, secretHint } from "../keys/key-format";
import { hashSecret } from "../keys/hash";
import { newId } from "../keys/random";
import {
  driftedVersions,
  emptyOutcome,
  removeOrphan,
  upkeep,
  upkeepChanges,
  type MaintenanceOutcome,
  type MaintenanceRequest,
} from "./consumer-upkeep";
import { auditEventExists, insertAudit, newAuditEvent, type AuditContext } from "../store/audit";
import { getConsumer, upsertConsumer, type Consumer } from "../store/consumers";
import {
  getConsumerKeyIds,
  getKeyState,
  getRotation,
  openRotationsOfConsumer,
} from "../store/keys";
import { liveRecord, projectVersion, type SecretRecord } from "../domain/secret-record";
import { writeProjection } from "../store/kv-index";
import {
  auditEventsFor,
  limitsOf,
  projectKey,
  ProjectionError,
  statementsFor,
  touchedVersions,
  withdrawUnissued,
  withRetries,
} from "./changes";
import { grant, monthWindow, rateWindow, type Grant, type Limits } from "../domain/limits";
import {
  MAX_EXPIRES_AT,
  type KeyState,
  type KeyVersion,
  type RateLimit,
  type Rotation,
} from "../domain/key-state";
import { ok, refuse, type Result } from "../domain/result";
import { SerialQueue } from "./serial-queue";
import {
  completeRotation,
  extendRotation,
  markUsed,
  nextDeadline,
  revokeKey,
  rollbackRotation,
  settle,
  startRotation,
  type Transition,
} from "../domain/rotation-machine";
import {
  addToBaseline,
  counterOf,
  createCounterTable,
  setCounter,
  addUsage,
  baselineOf,
  clearHours,
  createUsageTables,
  dropProjection,
  dueProjections,
  isQueued,
  lastUsedByVersion,
  nextProjectionAt,
  pendingHours,
  queueProjection,
  saveBaseline,
  usageOf,
  type UsageReport,
  type VersionUsage,
} from "./usage-store";
import { type HourlyUsage } from "../store/usage";
import {
  addUnconfirmed,
  createUnconfirmedTable,
  deferUnconfirmed,
  dropUnconfirmed,
  nextUnconfirmedAt,
  unconfirmedSecrets,
  type UnconfirmedSecret,
} from "./unconfirmed-secrets";
import {
  afterAttempt,
  isWebhookEventType,
  MAX_WEBHOOK_SECRET_OVERLAP_SECONDS,
  webhookDataProblem,
  webhookEventsFor,
  webhookPayload,
  type AttemptOutcome,
  type WebhookEvent,
  type WebhookEventData,
  type WebhookEventType,
} from "../webhooks/events";
import {
  clearWebhookSecrets,
  createWebhookSecretTable,
  generateWebhookSecret,
  hasWebhookSecret,
  setWebhookSecret,
  signingSecrets,
} from "../webhooks/signing-secrets";
import { sendWebhook } from "../webhooks/sender";
import {
  dueDeliveries,
  getDelivery,
  getDeliveryOfEvent,
  insertDelivery,
  nextDeliveryAt,
  recordAttempt,
  type WebhookDelivery,
} from "../webhooks/deliveries";
import { logError } from "../log";

export interface ConsumerInput {
  name: string;
  metadata: Record<string, unknown> | null;
  rateLimit: RateLimit | null;
  monthlyQuota: number | null;
  webhookUrl: string | null;
}

export interface KeyInput {
  name: string | null;
  scopes: string[];
  expiresAt: number | null;
  rateLimit: RateLimit | null;
  metadata: Record<string, unknown> | null;
}

export interface KeyPatch {
  name?: string | null | undefined;
  metadata?: Record<string, unknown> | null | undefined;
  rateLimit?: RateLimit | null | undefined;
  scopes?: string[] | undefined;
  expiresAt?: number | null | undefined;
}

export interface RotateInput {
  gracePeriodSeconds?: number | undefined;
  graceStartsOnFirstUse?: boolean | undefined;
  completeWhenIdleSeconds?: number | undefined;
  scopes?: string[] | undefined;
  expiresAt?: number | null | undefined;
}

/** A key as issued: the plaintext secret exists only in this value, once. */
export interface IssuedKey {
  secret: string;
  state: KeyState;
  rotation: Rotation | null;
}

/**
 * A consumer as created or changed, with its webhook signing secret when this change
 * generated one (the consumer's first webhookUrl): shown in that response only, never again.
 */
export interface ConsumerWithSecret {
  consumer: Consumer;
  webhookSecret: string | null;
}

/** A rotated webhook secret (shown once) and until when the previous one still signs. */
export interface RotatedWebhookSecret {
  webhookSecret: string;
  previousSecretRetiresAt: number | null;
}

/** A grant of budget, with when the windows it came from end. */
export type Lease = Grant & { rateResetAt: number | null; quotaResetAt: number | null };

export interface RotationUsage {
  old: VersionUsage;
  new: VersionUsage;
}

const SYSTEM: AuditContext = { actor: "system", requestId: null };
const USAGE_ROLLUP_MS = 60_000;
/** Tries at a KV write before it is left to the alarm (waiting 50 ms, then 200 ms). */
const KV_ATTEMPTS = 3;
/** When an alarm step failed (D1 down), the alarm runs again this much later. */
const ALARM_RETRY_MS = 5_000;
/** Webhook deliveries attempted per alarm run, one after another; more due run next. */
const WEBHOOK_BATCH = 10;

/**
 * A D1 write that did not land (`landed: false`), or that may have (`"unknown"`: D1 threw and
 * could not be asked afterwards). The caller answers 503; the keys the write touched are
 * queued for a full projection, so KV follows whatever D1 ends up holding.
 */
class WriteFailed extends Error {
  constructor(
    readonly landed: false | "unknown",
    /** the database refused a second open rotation of the key */
    readonly rotationInProgress: boolean,
    cause: unknown,
  ) {
    super(`D1 write failed (${landed === false ? "not committed" : "outcome unknown"})`, {
      cause,
    });
  }
}

/** KV refused the record of a secret about to be issued: nothing was written to D1. */
class ProjectionFailed extends Error {}

/**
 * One instance per consumer. Every change to the consumer's keys goes through it, one at a
 * time; it writes D1 (rows and audit in one batch), projects to KV, retries failed
 * projections from its alarm, ends rotations whose grace has passed, and keeps the usage
 * counters the front door reports.
 */
export class KeyCoordinator extends DurableObject<Bindings> {
  #queue = new SerialQueue();
  /** webhook deliveries, apart from #queue: a slow receiver must not hold up key changes */
  #webhookQueue = new SerialQueue();
  #states = new Map<string, KeyState>();

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    createUsageTables(ctx.storage.sql);
    createCounterTable(ctx.storage.sql);
    createUnconfirmedTable(ctx.storage.sql);
    createWebhookSecretTable(ctx.storage.sql);
  }

  #consumer: Consumer | null = null;

  /** This instance's consumer (cached: every change to it goes through here). */
  async #loadConsumer(id: string): Promise<Consumer | null> {
    if (this.#consumer?.id === id) return this.#consumer;
    this.#consumer = await getConsumer(this.env.DB, id);
    return this.#consumer;
  }

  /** Runs changes one after another: D1 and KV awaits would otherwise interleave. */
  #serial<T>(work: () => Promise<T>): Promise<T> {
    return this.#queue.run(work);
  }

  #remember(consumerId: string): void {
    this.ctx.storage.sql.exec(
      "INSERT OR REPLACE INTO meta (name, value) VALUES ('consumerId', ?)",
      consumerId,
    );
  }

  #consumerId(): string | null {
    const row = this.ctx.storage.sql
      .exec<{ value: string }>("SELECT value FROM meta WHERE name = 'consumerId'")
      .toArray()[0];
    return row?.value ?? null;
  }

  /** The key's state from D1 (cached: every change goes through this instance). */
  async #load(keyId: string): Promise<KeyState | null> {
    const cached = this.#states.get(keyId);
    if (cached) return cached;
    const state = await getKeyState(this.env.DB, keyId);
    if (state) this.#states.set(keyId, state);
    return state;
  }

  /** The state with the freshest `lastUsedAt` this instance knows of (reports not yet in D1). */
  #withLiveUsage(state: KeyState): KeyState {
    const live = lastUsedByVersion(this.ctx.storage.sql, state.key.id);
    if (live.size === 0) return state;
    return {
      ...state,
      versions: state.versions.map((v) => {
        const at = live.get(v.version);
        return at !== undefined && (v.lastUsedAt === null || at > v.lastUsedAt)
          ? { ...v, lastUsedAt: at }
          : v;
      }),
    };
  }

  /**
   * Writes one D1 batch (one transaction). D1 can throw after committing (the answer was
   * lost), so a failure is checked against `marker`, the id of an audit row in the batch: a
   * batch that landed all the same returns normally. Otherwise this throws `WriteFailed`,
   * after queueing a full projection of `keyIds` (the alarm then makes KV match D1, whichever
   * way the write went).
   */
  async #write(
    statements: D1PreparedStatement[],
    marker: string | null,
    keyIds: string[],
    now: number,
  ): Promise<void> {
    if (statements.length === 0) return;
    try {
      await this.env.DB.batch(statements);
      return;
    } catch (error) {
      this.#states.clear();
      this.#consumer = null;
      const message = String((error as Error | undefined)?.message ?? error);
      if (message.includes("UNIQUE constraint failed: rotations.key_id")) {
        throw new WriteFailed(false, true, error);
      }
      let landed: boolean | "unknown" = "unknown";
      if (marker !== null)
        landed = await auditEventExists(this.env.DB, marker).catch(() => "unknown");
      logError("d1_write_failed", { landed, keyIds, error: message });
      if (landed === true) return;
      for (const keyId of keyIds) queueProjection(this.ctx.storage.sql, keyId, now);
      await this.#scheduleAlarm();
      throw new WriteFailed(landed, false, error);
    }
  }

  /**
   * Writes a transition: D1 first (rows and audit, atomically), then the KV projection. A
   * transition that issues a secret (`issued`: the new version) writes that version's KV
   * record first: the client may use the secret the moment it has it, and a KV miss would be
   * cached at the edge for a minute. If KV refuses, nothing is written to D1 and the caller
   * answers 503; if D1 then fails, the record is withdrawn (see unconfirmed-secrets.ts).
   */
  async #commit(
    before: KeyState | null,
    transition: Extract<Transition, { ok: true }>,
    audit: AuditContext,
    now: number,
    issued?: KeyVersion,
  ): Promise<void> {
    const { state, rotations } = transition;
    const sql = this.ctx.storage.sql;
    const events = auditEventsFor(state, transition.events, audit, now);
    const marker = events[0]?.id ?? null;
    // webhooks ride in the change's own batch: a change that landed has its deliveries
    const deliveries = await this.#deliveriesFor(
      state.key.consumerId,
      webhookEventsFor(events, state, rotations),
      now,
    );
    if (issued) {
      if (marker === null) throw new Error("a transition that issues a secret must be audited");
      addUnconfirmed(
        sql,
        {
          secretHash: issued.secretHash,
          keyId: state.key.id,
          version: issued.version,
          rotationId: rotations.find((r) => r.toVersion === issued.version)?.id ?? null,
          marker,
        },
        now,
      );
      try {
        const limits = limitsOf(state, await this.#loadConsumer(state.key.consumerId));
        await withRetries(KV_ATTEMPTS, () =>
          projectKey(this.env.KEYS, state, limits, now, [issued.version]),
        );
      } catch (error) {
        logError("projection_failed", { keyId: state.key.id, error });
        // the put may have landed: the alarm removes the record of a secret never issued
        deferUnconfirmed(sql, issued.secretHash, now);
        await this.#scheduleAlarm();
        throw new ProjectionFailed("KV refused the new secret's record", { cause: error });
      }
    }
    if (deliveries.length > 0) this.#wakeWebhooks(now);
    try {
      await this.#write(
        [...statementsFor(this.env.DB, before, state, rotations, events), ...deliveries],
        marker,
        [state.key.id],
        now,
      );
    } catch (error) {
      if (issued) {
        deferUnconfirmed(sql, issued.secretHash, now);
        if (error instanceof WriteFailed && error.landed === false) {
          // never issued: drop its record now (the alarm checks again and retries)
          await writeProjection(this.env.KEYS, issued.secretHash, {
            record: null,
            expiration: null,
          }).catch(() => undefined);
        }
        await this.#scheduleAlarm();
      }
      throw error;
    }
    if (issued) dropUnconfirmed(sql, issued.secretHash);
    this.#states.set(state.key.id, state);
    for (const rotation of rotations) {
      if (rotation.state === "in_progress") {
        saveBaseline(sql, rotation.id, rotation.keyId, rotation.fromVersion);
      }
    }
    const touched = touchedVersions(before, state, rotations).filter((v) => v !== issued?.version);
    await this.#project(state, now, touched);
    await this.#scheduleAlarm();
  }

  /**
   * Projects to KV, trying a few times; a failure is queued for the alarm instead of failing
   * the change, which D1 already holds. A key already queued is projected whole, and leaves
   * the queue only when that succeeds. A retry writes again only the records KV refused (each
   * from the state at hand: a later write of a secret supersedes an earlier one). Answers
   * null when KV now matches, else why it does not.
   */
  async #project(
    state: KeyState,
    now: number,
    versions?: number[],
    attempts = KV_ATTEMPTS,
  ): Promise<string | null> {
    const sql = this.ctx.storage.sql;
    const queued = isQueued(sql, state.key.id);
    let pending = queued ? undefined : versions;
    try {
      const consumer = await this.#loadConsumer(state.key.consumerId);
      const limits = limitsOf(state, consumer);
      await withRetries(attempts, async () => {
        try {
          await projectKey(this.env.KEYS, state, limits, now, pending);
        } catch (error) {
          if (error instanceof ProjectionError) pending = error.versions;
          throw error;
        }
      });
      if (queued) dropProjection(sql, state.key.id);
      return null;
    } catch (error) {
      logError("projection_failed", { keyId: state.key.id, error });
      queueProjection(sql, state.key.id, now);
      return String(error);
    }
  }

  /** Projects, fresh from D1, those of `keyIds` that wait in the projection queue. */
  async #projectQueued(keyIds: string[], now: number): Promise<void> {
    for (const keyId of keyIds) {
      if (!isQueued(this.ctx.storage.sql, keyId)) continue;
      this.#states.delete(keyId);
      const state = await this.#load(keyId);
      if (state) await this.#project(state, now);
      else dropProjection(this.ctx.storage.sql, keyId);
    }
  }

  /**
   * Settles secrets whose KV record was written before a D1 write that failed: one that D1
   * does not hold loses its KV record; one that D1 holds although its secret never reached a
   * client is withdrawn (its rotation rolled back, or a new key revoked), so the client's
   * retry is not refused and no version nobody holds stays live. A check D1 cannot answer
   * waits for the next alarm.
   */
  async #confirmIssues(rows: UnconfirmedSecret[], now: number): Promise<void> {
    const sql = this.ctx.storage.sql;
    for (const row of rows) {
      try {
        if (await auditEventExists(this.env.DB, row.marker)) {
          this.#states.delete(row.keyId);
          const state = await this.#load(row.keyId);
          const withdrawal = state ? withdrawUnissued(state, row, now) : null;
          if (state && withdrawal?.ok) {
            logError("unissued_version_withdrawn", { keyId: row.keyId, version: row.version });
            await this.#commit(this.#withLiveUsage(state), withdrawal, SYSTEM, now);
          }
        } else {
          await writeProjection(this.env.KEYS, row.secretHash, { record: null, expiration: null });
        }
        dropUnconfirmed(sql, row.secretHash);
      } catch (error) {
        logError("unconfirmed_secret_check_failed", { keyId: row.keyId, error });
        deferUnconfirmed(sql, row.secretHash, now);
      }
    }
  }

  /** Sets the alarm to the earliest work due (`retryAt`: a failed alarm step's next try). */
  async #scheduleAlarm(retryAt: number | null = null): Promise<void> {
    const consumerId = this.#consumerId();
    if (!consumerId) return;
    const candidates: number[] = retryAt === null ? [] : [retryAt];
    const projection = nextProjectionAt(this.ctx.storage.sql);
    if (projection !== null) candidates.push(projection);
    const unconfirmed = nextUnconfirmedAt(this.ctx.storage.sql);
    if (unconfirmed !== null) candidates.push(unconfirmed);
    const webhooks = this.#webhooksDueAt();
    if (webhooks !== null) candidates.push(webhooks);
    for (const state of this.#states.values()) {
      if (state.key.consumerId !== consumerId) continue;
      const at = nextDeadline(this.#withLiveUsage(state));
      if (at !== null) candidates.push(at);
    }
    if (pendingHours(this.ctx.storage.sql).length > 0)
      candidates.push(Date.now() + USAGE_ROLLUP_MS);
    if (candidates.length === 0) return;
    // work already due (a queued retry) runs at once
    const wanted = Math.max(Math.min(...candidates), Date.now());
    const current = await this.ctx.storage.getAlarm();
    if (current === null || wanted < current) await this.ctx.storage.setAlarm(wanted);
  }

  /** Runs a transition on a key of this consumer under the lock and commits it. */
  async #change(
    consumerId: string,
    keyId: string,
    audit: AuditContext,
    decide: (state: KeyState, now: number) => Transition | Promise<Transition>,
  ): Promise<Result<KeyState & { changed: Rotation[] }>> {
    this.#remember(consumerId);
    return this.#serial(async () => {
      const sql = this.ctx.storage.sql;
      // an earlier call's secret that may be half-issued is settled before anything else
      const pending = unconfirmedSecrets(sql, { keyId });
      if (pending.length > 0) await this.#confirmIssues(pending, Date.now());
      const loaded = await this.#load(keyId);
      if (!loaded || loaded.key.consumerId !== consumerId)
        return refuse("not_found", "no such key");
      const before = this.#withLiveUsage(loaded);
      const now = Date.now();
      const transition = await decide(before, now);
      if (!transition.ok) return refuse(transition.code, transition.detail);
      if (
        transition.events.length === 0 &&
        transition.rotations.length === 0 &&
        JSON.stringify(before) === JSON.stringify(transition.state)
      ) {
        // nothing to write, but a retry after a failure must still leave KV matching D1
        if (isQueued(sql, keyId)) await this.#project(transition.state, now);
        return ok({ ...transition.state, changed: [] });
      }
      const issued = transition.state.versions.find(
        (v) => !before.versions.some((b) => b.version === v.version),
      );
      try {
        await this.#commit(before, transition, audit, now, issued);
      } catch (error) {
        if (error instanceof WriteFailed && error.rotationInProgress)
          return refuse("rotation_in_progress", "a rotation of this key is in progress");
        throw error;
      }
      return ok({ ...transition.state, changed: transition.rotations });
    });
  }

  // ---- consumers -------------------------------------------------------------------------

  /**
   * Creates the consumer. With a webhookUrl, its webhook signing secret is generated and kept
   * here before the D1 write (so a consumer that exists always has one), and answered once.
   */
  async createConsumer(
    id: string,
    input: ConsumerInput,
    audit: AuditContext,
  ): Promise<ConsumerWithSecret> {
    this.#remember(id);
    return this.#serial(async () => {
      const now = Date.now();
      const webhookSecret = input.webhookUrl !== null ? generateWebhookSecret() : null;
      if (webhookSecret !== null) setWebhookSecret(this.ctx.storage.sql, webhookSecret, now);
      const consumer: Consumer = {
        id,
        ...input,
        status: "active",
        createdAt: now,
        updatedAt: now,
        deletedAt: null,
      };
      const event = newAuditEvent(
        audit,
        now,
        "consumer.created",
        { consumerId: id, keyId: null, target: `consumer:${id}` },
        { name: input.name },
      );
      try {
        await this.#write(
          [upsertConsumer(this.env.DB, consumer), insertAudit(this.env.DB, event)],
          event.id,
          [],
          now,
        );
      } catch (error) {
        // the caller never saw the secret: a consumer that landed all the same gets one by
        // rotation (POST /consumers/:id/webhook-secret/rotate)
        if (webhookSecret !== null) clearWebhookSecrets(this.ctx.storage.sql);
        throw error;
      }
      this.#consumer = consumer;
      return { consumer, webhookSecret };
    });
  }

  /**
   * Changes the consumer. The first webhookUrl it gets also generates its webhook signing
   * secret, answered in this response only.
   */
  async updateConsumer(
    id: string,
    patch: Partial<ConsumerInput>,
    audit: AuditContext,
  ): Promise<Result<ConsumerWithSecret>> {
    this.#remember(id);
    return this.#serial(async () => {
      const current = await getConsumer(this.env.DB, id);
      if (!current || current.status !== "active") return refuse("not_found", "no such consumer");
      const now = Date.now();

      const next: Consumer = { ...current, ...patch, updatedAt: now };
      const event = newAuditEvent(
        audit,
        now,
        "consumer.updated",
        { consumerId: id, keyId: null, target: `consumer:${id}` },
        { fields: Object.keys(patch).filter((f) => patch[f as keyof ConsumerInput] !== undefined) },
      );
      // the edge reads limits from each key's KV record
      const limitsChanged = patch.rateLimit !== undefined || patch.monthlyQuota !== undefined;
      const keyIds = limitsChanged ? await getConsumerKeyIds(this.env.DB, id) : [];
      const sql = this.ctx.storage.sql;
      const webhookSecret =
        typeof patch.webhookUrl === "string" && !hasWebhookSecret(sql)
          ? generateWebhookSecret()
          : null;
      if (webhookSecret !== null) setWebhookSecret(sql, webhookSecret, now);
      try {
        await this.#write(
          [upsertConsumer(this.env.DB, next), insertAudit(this.env.DB, event)],
          event.id,
          keyIds,
          now,
        );
      } catch (error) {
        // the caller never saw the secret: its retry generates and shows a new one
        if (webhookSecret !== null) clearWebhookSecrets(sql);
        throw error;
      }
      this.#consumer = next;
      let attempts = KV_ATTEMPTS;
      for (const keyId of keyIds) {
        // the change is in D1: a key that cannot be projected now is left to the alarm
        const state = await this.#load(keyId).catch(() => undefined);
        if (state === undefined) queueProjection(this.ctx.storage.sql, keyId, now);
        else if (state?.key.status !== "active") continue;
        // once KV has failed, the other keys go straight to the queue
        else if ((await this.#project(state, now, undefined, attempts)) !== null) attempts = 1;
      }
      await this.#scheduleAlarm();
      return ok({ consumer: next, webhookSecret });
    });
  }

  /** Marks the consumer deleted and revokes every key of it, in one batch. */
  async deleteConsumer(
    id: string,
    audit: AuditContext,
  ): Promise<Result<{ revokedKeys: string[] }>> {
    this.#remember(id);
    return this.#serial(async () => {
      const current = await getConsumer(this.env.DB, id);
      if (!current || current.status !== "active") {
        // a retry of a delete that landed although it failed: finish what it left queued
        if (current)
          await this.#projectQueued(await getConsumerKeyIds(this.env.DB, id), Date.now());
        return refuse("not_found", "no such consumer");
      }
      const now = Date.now();
      const statements: D1PreparedStatement[] = [];
      const changed: { before: KeyState; after: KeyState; rotations: Rotation[] }[] = [];
      for (const keyId of await getConsumerKeyIds(this.env.DB, id)) {
        const before = await this.#load(keyId);
        if (!before) continue;
        const transition = revokeKey(before, "consumer deleted", now);
        if (!transition.ok) continue;
        const events = auditEventsFor(transition.state, transition.events, audit, now);
        statements.push(
          ...statementsFor(this.env.DB, before, transition.state, transition.rotations, events),
          ...this.#deliveryStatements(
            current,
            webhookEventsFor(events, transition.state, transition.rotations),
            now,
          ),
        );
        changed.push({ before, after: transition.state, rotations: transition.rotations });
      }
      const event = newAuditEvent(
        audit,
        now,
        "consumer.deleted",
        { consumerId: id, keyId: null, target: `consumer:${id}` },
        {
          revokedKeys: changed
            .filter((c) => c.before.key.status !== "revoked")
            .map((c) => c.after.key.id),
        },
      );
      statements.push(
        upsertConsumer(this.env.DB, {
          ...current,
          status: "deleted",
          deletedAt: now,
          updatedAt: now,
        }),
        insertAudit(this.env.DB, event),
      );
      if (current.webhookUrl !== null) this.#wakeWebhooks(now);
      await this.#write(
        statements,
        event.id,
        changed.map((c) => c.after.key.id),
        now,
      );
      this.#consumer = null;
      let attempts = KV_ATTEMPTS;
      for (const c of changed) {
        this.#states.set(c.after.key.id, c.after);
        const touched = touchedVersions(c.before, c.after, c.rotations);
        // once KV has failed, the other keys go straight to the queue
        if ((await this.#project(c.after, now, touched, attempts)) !== null) attempts = 1;
      }
      await this.#scheduleAlarm();
      return ok({ revokedKeys: changed.map((c) => c.after.key.id) });
    });
  }

  // ---- keys --------------------------------------------------------------------------------

  async createKey(
    consumerId: string,
    input: KeyInput,
    audit: AuditContext,
  ): Promise<Result<IssuedKey>> {
    this.#remember(consumerId);
    return this.#serial(async () => {
      const consumer = await getConsumer(this.env.DB, consumerId);
      if (!consumer || consumer.status !== "active") return refuse("not_found", "no such consumer");
      const now = Date.now();
      const config = configFor(this.env);
      const keyId = newKeyId();
      const secret = generateSecret(config.keyPrefix, keyId);
      const version: KeyVersion = {
        version: 1,
        secretHash: hashSecret(secret),
        hint: secretHint(secret),
        scopes: input.scopes,
        status: "active",
        createdAt: now,
        expiresAt: input.expiresAt,
        graceUntil: null,
        retiredAt: null,
        lastUsedAt: null,
      };
      const state: KeyState = {
        key: {
          id: keyId,
          consumerId,
          name: input.name,
          metadata: input.metadata,
          rateLimit: input.rateLimit,
          status: "active",
          currentVersion: 1,
          createdAt: now,
          updatedAt: now,
          revokedAt: null,
          revokeReason: null,
        },
        versions: [version],
        rotation: null,
      };
      await this.#commit(
        null,
        {
          ok: true,
          state,
          rotations: [],
          events: [
            {
              action: "key.created",
              details: { version: 1, scopes: input.scopes, hint: version.hint },
            },
          ],
        },
        audit,
        now,
        version,
      );
      return ok({ secret, state, rotation: null });
    });
  }

  async updateKey(
    consumerId: string,
    keyId: string,
    patch: KeyPatch,
    audit: AuditContext,
  ): Promise<Result<KeyState>> {
    return this.#change(consumerId, keyId, audit, (state, now) => {
      if (state.key.status === "revoked")
        return { ok: false, code: "conflict", detail: "the key is revoked" };
      const next: KeyState = structuredClone(state);
      if (patch.name !== undefined) next.key.name = patch.name;
      if (patch.metadata !== undefined) next.key.metadata = patch.metadata;
      if (patch.rateLimit !== undefined) next.key.rateLimit = patch.rateLimit;
      next.key.updatedAt = now;
      if (patch.scopes !== undefined || patch.expiresAt !== undefined) {
        next.versions = next.versions.map((v) =>
          v.version === next.key.currentVersion
            ? {
                ...v,
                scopes: patch.scopes ?? v.scopes,
                expiresAt: patch.expiresAt !== undefined ? patch.expiresAt : v.expiresAt,
              }
            : v,
        );
      }
      const fields = Object.entries(patch)
        .filter(([, value]) => value !== undefined)
        .map(([field]) => field);
      return {
        ok: true,
        state: next,
        rotations: [],
        events: [{ action: "key.updated", details: { fields } }],
      };
    });
  }

  async rotateKey(
    consumerId: string,
    keyId: string,
    input: RotateInput,
    audit: AuditContext,
  ): Promise<Result<IssuedKey>> {
    const config = configFor(this.env);
    let secret = "";
    const result = await this.#change(consumerId, keyId, audit, async (state, now) => {
      const current = state.versions.find((v) => v.version === state.key.currentVersion);
      const number = Math.max(...state.versions.map((v) => v.version)) + 1;
      secret = generateSecret(config.keyPrefix, keyId);
      const lifetime = current?.expiresAt != null ? current.expiresAt - current.createdAt : null;
      // an inherited lifetime ends no later than the latest expiresAt the API accepts
      const expiresAt =
        input.expiresAt !== undefined
          ? input.expiresAt
          : lifetime !== null
            ? Math.min(now + lifetime, MAX_EXPIRES_AT)
            : null;
      return startRotation(state, {
        rotationId: newId("rot"),
        newVersion: {
          version: number,
          secretHash: hashSecret(secret),
          hint: secretHint(secret),
          scopes: input.scopes ?? current?.scopes ?? [],
          status: "active",
          createdAt: now,
          expiresAt,
          graceUntil: null,
          retiredAt: null,
          lastUsedAt: null,
        },
        gracePeriodMs: (input.gracePeriodSeconds ?? config.defaultGraceSeconds) * 1000,
        graceStartsOnFirstUse: input.graceStartsOnFirstUse ?? false,
        completeWhenIdleMs:
          input.completeWhenIdleSeconds !== undefined ? input.completeWhenIdleSeconds * 1000 : null,
        now,
      });
    });
    if (!result.ok) return result;
    const { changed, ...state } = result.value;
    const rotation = changed.find((r) => r.toVersion === state.key.currentVersion) ?? null;
    return ok({ secret, state, rotation });
  }

  async revokeKey(
    consumerId: string,
    keyId: string,
    reason: string | null,
    audit: AuditContext,
  ): Promise<Result<KeyState>> {
    return this.#change(consumerId, keyId, audit, (state, now) => revokeKey(state, reason, now));
  }

  // ---- rotations ---------------------------------------------------------------------------

  async #rotationChange(
    consumerId: string,
    rotationId: string,
    audit: AuditContext,
    decide: (state: KeyState, now: number) => Transition,
  ): Promise<Result<Rotation>> {
    const rotation = await getRotation(this.env.DB, rotationId);
    if (!rotation || rotation.consumerId !== consumerId)
      return refuse("not_found", "no such rotation");
    const result = await this.#change(consumerId, rotation.keyId, audit, decide);
    if (!result.ok) return result;
    const changed = result.value.changed.find((r) => r.id === rotationId);
    return ok(changed ?? (await getRotation(this.env.DB, rotationId)) ?? rotation);
  }

  completeRotation(
    consumerId: string,
    rotationId: string,
    audit: AuditContext,
  ): Promise<Result<Rotation>> {
    return this.#rotationChange(consumerId, rotationId, audit, (s, now) =>
      completeRotation(s, rotationId, now),
    );
  }

  rollbackRotation(
    consumerId: string,
    rotationId: string,
    audit: AuditContext,
  ): Promise<Result<Rotation>> {
    return this.#rotationChange(consumerId, rotationId, audit, (s, now) =>
      rollbackRotation(s, rotationId, now),
    );
  }

  extendRotation(
    consumerId: string,
    rotationId: string,
    extraSeconds: number,
    audit: AuditContext,
  ): Promise<Result<Rotation>> {
    const maxGraceMs = configFor(this.env).maxGraceSeconds * 1000;
    return this.#rotationChange(consumerId, rotationId, audit, (s, now) =>
      extendRotation(s, rotationId, extraSeconds * 1000, maxGraceMs, now),
    );
  }

  /** Usage of the old and new version since the rotation began. */
  async rotationUsage(consumerId: string, rotation: Rotation): Promise<RotationUsage> {
    this.#remember(consumerId);
    const sql = this.ctx.storage.sql;
    const old = usageOf(sql, rotation.keyId, rotation.fromVersion);
    const fresh = usageOf(sql, rotation.keyId, rotation.toVersion);
    const since = (at: number | null) => (at !== null && at >= rotation.startedAt ? at : null);
    return {
      old: {
        requests: Math.max(0, old.requests - baselineOf(sql, rotation.id)),
        lastUsedAt: since(old.lastUsedAt),
      },
      new: { requests: fresh.requests, lastUsedAt: fresh.lastUsedAt },
    };
  }

  /** Hourly counts of a key not yet rolled up into D1. */
  async pendingUsage(consumerId: string, keyId: string): Promise<HourlyUsage[]> {
    this.#remember(consumerId);
    return pendingHours(this.ctx.storage.sql).filter((h) => h.keyId === keyId);
  }

  // ---- the front door's calls ----------------------------------------------------------------

  /** The authoritative record for a key version (strict routes, access tokens). */
  async checkVersion(
    consumerId: string,
    keyId: string,
    version: number,
  ): Promise<SecretRecord | null> {
    this.#remember(consumerId);
    const state = await this.#load(keyId);
    if (!state || state.key.consumerId !== consumerId) return null;
    const found = state.versions.find((v) => v.version === version);
    if (!found) return null;
    const consumer = await this.#loadConsumer(consumerId);
    return liveRecord(
      projectVersion(state.key, found, state.rotation, Date.now(), limitsOf(state, consumer)),
    );
  }

  /** The authoritative record for a secret, for `strict` routes (null: not valid). */
  async checkSecret(consumerId: string, keyId: string, hash: string): Promise<SecretRecord | null> {
    this.#remember(consumerId);
    const state = await this.#load(keyId);
    if (!state || state.key.consumerId !== consumerId) return null;
    const version = state.versions.find((v) => v.secretHash === hash);
    if (!version) return null;
    const consumer = await this.#loadConsumer(consumerId);
    return liveRecord(
      projectVersion(state.key, version, state.rotation, Date.now(), limitsOf(state, consumer)),
    );
  }

  /**
   * Batched usage from the front door. Requests reported late but made before a rotation began
   * count toward its baseline, not its traffic; the first use of a new version may start its
   * grace. Answers the keys whose state changed, so the caller can drop its cached copies.
   */
  async recordUsage(consumerId: string, reports: UsageReport[]): Promise<string[]> {
    this.#remember(consumerId);
    const sql = this.ctx.storage.sql;
    const changed: string[] = [];
    for (const keyId of new Set(reports.map((r) => r.keyId))) {
      const state = await this.#load(keyId);
      const rotation = state?.rotation ?? null;
      for (const report of reports.filter((r) => r.keyId === keyId)) {
        addUsage(sql, report);
        if (
          rotation &&
          report.version === rotation.fromVersion &&
          report.lastAt < rotation.startedAt
        ) {
          addToBaseline(sql, rotation.id, report.requests);
        }
      }
      const first =
        rotation && reports.find((r) => r.keyId === keyId && r.version === rotation.toVersion);
      if (state && rotation && first && rotation.firstUsedAt === null) {
        const result = await this.#change(consumerId, keyId, SYSTEM, (s, now) =>
          markUsed(s, first.version, first.firstAt, now),
        );
        if (result.ok) changed.push(keyId);
      }
    }
    await this.#scheduleAlarm();
    return changed;
  }

  /**
   * Hands out up to `want` requests of budget from the key's rate-limit window and the
   * consumer's monthly quota. Synchronous storage only, so no other call interleaves: the
   * sum of all grants in a window never exceeds the limit.
   */
  async lease(
    consumerId: string,
    keyId: string,
    limits: Limits,
    want: number,
    returned: { month: number; count: number } | null = null,
  ): Promise<Lease> {
    this.#remember(consumerId);
    const sql = this.ctx.storage.sql;
    const now = Date.now();
    const rate = limits.rateLimit ? rateWindow(now, limits.rateLimit) : null;
    const month = limits.monthlyQuota !== null ? monthWindow(now) : null;
    const rateScope = `rate:${keyId}`;
    const counters = {
      rateUsed: rate ? counterOf(sql, rateScope, rate.id) : 0,
      quotaUsed: month ? counterOf(sql, "quota", month.id) : 0,
    };
    // quota an isolate leased in an earlier rate window of this month and never used
    const credit =
      month && returned && returned.month === month.id
        ? Math.min(Math.max(0, Math.floor(returned.count)), counters.quotaUsed)
        : 0;
    counters.quotaUsed -= credit;
    const result = grant(limits, counters, Math.max(1, Math.min(want, 1000)), now);
    if (rate && result.granted > 0) {
      setCounter(sql, rateScope, rate.id, counters.rateUsed + result.granted);
    }
    if (month && (result.granted > 0 || credit > 0)) {
      setCounter(sql, "quota", month.id, counters.quotaUsed + result.granted);
    }
    return { ...result, rateResetAt: rate?.endsAt ?? null, quotaResetAt: month?.endsAt ?? null };
  }

  // ---- webhooks ------------------------------------------------------------------------------

  /**
   * Enqueues a webhook event to this consumer and wakes the delivery alarm: for the events
   * that no change made here causes (scheduled maintenance sends `rotation.grace_ending`,
   * `key.expiring` and `key.rotation_due`). `data` is never a secret; its times are epoch
   * milliseconds (`graceUntil`, `expiresAt`, `dueAt`: ISO-8601 in the payload), and
   * `consumerId` is filled in. `eventId` (the `webhook-id`; default a new `evt_…`) makes a
   * repeated call enqueue nothing: pass one derived from what the event is about, such as
   * `grace_ending:<rotationId>`. Answers the delivery's id, or null when the consumer is
   * unknown, deleted or has no webhookUrl; `enqueued` is false when nothing new was enqueued.
   * Refuses (`validation_failed`) an unknown type, a malformed eventId, or data that lacks
   * keyId/version or names a secret field.
   */
  async emitEvent(
    consumerId: string,
    type: WebhookEventType,
    data: WebhookEventData,
    options: { eventId?: string; at?: number } = {},
  ): Promise<Result<{ deliveryId: string | null; enqueued: boolean }>> {
    if (!isWebhookEventType(type))
      return refuse("validation_failed", `not a webhook event type: ${String(type)}`);
    const eventId = options.eventId ?? newId("evt");
    if (!/^[\w.:-]{1,128}$/.test(eventId))
      return refuse("validation_failed", "eventId: 1 to 128 of A-Z a-z 0-9 _ . : -");
    const problem = webhookDataProblem(data);
    if (problem !== null) return refuse("validation_failed", problem);
    this.#remember(consumerId);
    const consumer = await this.#loadConsumer(consumerId);
    if (!consumer || consumer.status !== "active" || consumer.webhookUrl === null) {
      return ok({ deliveryId: null, enqueued: false });
    }
    const now = Date.now();
    const [statement] = this.#deliveryStatements(
      consumer,
      [{ id: eventId, type, at: options.at ?? now, data }],
      now,
    );
    const result = await statement!.run();
    const enqueued = result.meta.changes === 1;
    if (enqueued) {
      this.#wakeWebhooks(now);
      await this.#scheduleAlarm();
    }
    const delivery = await getDeliveryOfEvent(this.env.DB, consumerId, eventId);
    return ok({ deliveryId: delivery?.id ?? null, enqueued });
  }

  /**
   * Sends a delivery's event again, as a new delivery with a fresh set of attempts: the same
   * `webhook-id` and payload (receivers that deduplicate see it as the same event), signed
   * anew. Audited; refused when the consumer has no webhookUrl.
   */
  async redeliverWebhook(
    consumerId: string,
    deliveryId: string,
    audit: AuditContext,
  ): Promise<Result<WebhookDelivery>> {
    this.#remember(consumerId);
    const original = await getDelivery(this.env.DB, deliveryId);
    if (!original || original.consumerId !== consumerId)
      return refuse("not_found", "no such webhook delivery");
    const consumer = await this.#loadConsumer(consumerId);
    if (!consumer) return refuse("not_found", "no such consumer");
    if (consumer.webhookUrl === null)
      return refuse("conflict", "the consumer has no webhookUrl to deliver to");
    const now = Date.now();
    const id = newId("whd");
    const event = newAuditEvent(
      audit,
      now,
      "webhook.redelivered",
      { consumerId, keyId: null, target: `consumer:${consumerId}` },
      { deliveryId: id, redeliveryOf: original.id, eventId: original.eventId },
    );
    const delivery: WebhookDelivery = {
      ...original,
      id,
      status: "pending",
      attempts: 0,
      nextAttemptAt: now,
      lastAttemptAt: null,
      lastStatusCode: null,
      lastError: null,
      url: null,
      redeliveryOf: original.id,
      createdAt: now,
      updatedAt: now,
      deliveredAt: null,
    };
    this.#wakeWebhooks(now);
    await this.#write(
      [insertDelivery(this.env.DB, delivery), insertAudit(this.env.DB, event)],
      event.id,
      [],
      now,
    );
    await this.#scheduleAlarm();
    return ok(delivery);
  }

  /**
   * Replaces the consumer's webhook signing secret; the new one is answered once. The old one
   * keeps signing beside it (a second signature) for `keepPreviousSeconds`, so receivers can
   * switch without dropping a webhook; 0 stops it at once (a leaked secret).
   */
  async rotateWebhookSecret(
    consumerId: string,
    keepPreviousSeconds: number,
    audit: AuditContext,
  ): Promise<Result<RotatedWebhookSecret>> {
    this.#remember(consumerId);
    return this.#serial(async () => {
      const consumer = await this.#loadConsumer(consumerId);
      if (!consumer || consumer.status !== "active") return refuse("not_found", "no such consumer");
      const now = Date.now();
      const sql = this.ctx.storage.sql;
      const keep = Math.min(Math.max(0, keepPreviousSeconds), MAX_WEBHOOK_SECRET_OVERLAP_SECONDS);
      const retiresAt = keep > 0 && hasWebhookSecret(sql) ? now + keep * 1000 : null;
      const event = newAuditEvent(
        audit,
        now,
        "consumer.webhook_secret_rotated",
        { consumerId, keyId: null, target: `consumer:${consumerId}` },
        { previousSecretRetiresAt: retiresAt === null ? null : new Date(retiresAt).toISOString() },
      );
      await this.#write([insertAudit(this.env.DB, event)], event.id, [], now);
      const webhookSecret = generateWebhookSecret();
      setWebhookSecret(sql, webhookSecret, now, retiresAt);
      return ok({ webhookSecret, previousSecretRetiresAt: retiresAt });
    });
  }

  /** When the alarm should next deliver webhooks (null: nothing known to be pending). */
  #webhooksDueAt(): number | null {
    const row = this.ctx.storage.sql
      .exec<{ value: string }>("SELECT value FROM meta WHERE name = 'webhooksDueAt'")
      .toArray()[0];
    return row ? Number(row.value) : null;
  }

  #setWebhooksDueAt(at: number | null): void {
    if (at === null) {
      this.ctx.storage.sql.exec("DELETE FROM meta WHERE name = 'webhooksDueAt'");
    } else {
      this.ctx.storage.sql.exec(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('webhooksDueAt', ?)",
        String(at),
      );
    }
  }

  /** Deliveries may be due at `at`: the alarm will look (one that finds none costs a query). */
  #wakeWebhooks(at: number): void {
    const due = this.#webhooksDueAt();
    if (due === null || at < due) this.#setWebhooksDueAt(at);
  }

  /** D1 inserts enqueueing `events` to the consumer; none when it has no webhookUrl. */
  #deliveryStatements(
    consumer: Consumer | null,
    events: WebhookEvent[],
    now: number,
  ): D1PreparedStatement[] {
    if (!consumer || consumer.webhookUrl === null) return [];
    return events.map((event) =>
      insertDelivery(this.env.DB, {
        id: newId("whd"),
        consumerId: consumer.id,
        eventId: event.id,
        eventType: event.type,
        payload: webhookPayload(consumer.id, event),
        redeliveryOf: null,
        createdAt: now,
      }),
    );
  }

  async #deliveriesFor(
    consumerId: string,
    events: WebhookEvent[],
    now: number,
  ): Promise<D1PreparedStatement[]> {
    if (events.length === 0) return [];
    return this.#deliveryStatements(await this.#loadConsumer(consumerId), events, now);
  }

  /**
   * Attempts the deliveries that are due, oldest first, a batch per alarm run, and records
   * each attempt in D1. A failed attempt is retried on the backoff schedule (webhooks/events.ts);
   * a send whose record fails is sent again (at least once: receivers deduplicate on
   * `webhook-id`). Runs alone, apart from key changes.
   */
  async #deliverWebhooks(): Promise<void> {
    const consumerId = this.#consumerId();
    if (!consumerId) return;
    await this.#webhookQueue.run(async () => {
      const sql = this.ctx.storage.sql;
      const wokenAt = this.#webhooksDueAt();
      try {
        const due = await dueDeliveries(this.env.DB, consumerId, Date.now(), WEBHOOK_BATCH);
        const consumer = due.length > 0 ? await this.#loadConsumer(consumerId) : null;
        for (const delivery of due) {
          const at = Date.now();
          const url = consumer?.webhookUrl ?? null;
          const secrets = signingSecrets(sql, at);
          let outcome: AttemptOutcome;
          if (url === null) {
            outcome = { ok: false, statusCode: null, error: "the consumer has no webhookUrl", url };
          } else if (secrets.length === 0) {
            outcome = {
              ok: false,
              statusCode: null,
              error: "the consumer has no webhook secret: rotate it to get one",
              url,
            };
          } else {
            outcome = await sendWebhook(
              url,
              { eventId: delivery.eventId, payload: delivery.payload },
              secrets,
              at,
            );
          }
          // nowhere to send it: given up at once, redeliverable once a webhookUrl is set
          const progress = afterAttempt(delivery.attempts, outcome, at, url !== null);
          if (!outcome.ok) {
            logError("webhook_attempt_failed", {
              consumerId,
              deliveryId: delivery.id,
              eventType: delivery.eventType,
              attempts: progress.attempts,
              status: progress.status,
              statusCode: outcome.statusCode,
              error: outcome.error,
            });
          }
          await recordAttempt(this.env.DB, delivery.id, outcome, progress, Date.now());
        }
        const next = await nextDeliveryAt(this.env.DB, consumerId);
        // a change that enqueued meanwhile lowered the mark: keep the earlier of the two
        const woken = this.#webhooksDueAt();
        this.#setWebhooksDueAt(
          woken !== wokenAt && woken !== null && (next === null || woken < next) ? woken : next,
        );
      } catch (error) {
        // D1 is down: look again later, not in a tight loop
        this.#setWebhooksDueAt(Date.now() + ALARM_RETRY_MS);
        throw error;
      }
    });
  }

  // ---- alarm ---------------------------------------------------------------------------------

  /**
   * Settles half-issued secrets, retries projections, ends rotations whose time has come,
   * rolls usage up into D1.
   */
  override async alarm(): Promise<void> {
    const consumerId = this.#consumerId();
    if (!consumerId) return;
    const now = Date.now();
    const sql = this.ctx.storage.sql;
    // each step runs even when another fails: a D1 outage must not hold back KV retries
    let failed = false;
    const step = async (name: string, work: () => Promise<void>) => {
      try {
        await work();
      } catch (error) {
        failed = true;
        logError("alarm_step_failed", { step: name, error });
      }
    };
    await step("unconfirmed_secrets", async () => {
      const due = unconfirmedSecrets(sql, { dueAt: now });
      if (due.length > 0) await this.#serial(() => this.#confirmIssues(due, now));
    });
    for (const keyId of dueProjections(sql, now)) {
      await this.#serial(async () => {
        try {
          await this.#projectQueued([keyId], now);
        } catch (error) {
          // D1 could not say what KV should hold: back off and try again
          logError("projection_retry_failed", { keyId, error });
          queueProjection(sql, keyId, now);
        }
      });
    }
    await step("rotations", async () => {
      for (const rotation of await openRotationsOfConsumer(this.env.DB, consumerId)) {
        await this.#change(consumerId, rotation.keyId, SYSTEM, (s, at) => settle(s, at));
      }
    });
    await step("usage", () => this.#rollUpUsage());
    // last: a slow receiver must not hold up the steps above
    await step("webhooks", () => this.#deliverWebhooks());
    await this.#scheduleAlarm(failed ? now + ALARM_RETRY_MS : null);
  }

  async #rollUpUsage(): Promise<void> {
    const sql = this.ctx.storage.sql;
    const hours = pendingHours(sql);
    if (hours.length === 0) return;
    const db = this.env.DB;
    const statements = hours.map((h) =>
      db
        .prepare(
          `INSERT INTO usage_hourly (key_id, version, hour, requests) VALUES (?, ?, ?, ?)
           ON CONFLICT (key_id, version, hour) DO UPDATE SET requests = requests + excluded.requests`,
        )
        .bind(h.keyId, h.version, h.hour, h.requests),
    );
    const touched = new Set(hours.map((h) => `${h.keyId}:${h.version}`));
    for (const id of touched) {
      const [keyId, version] = id.split(":") as [string, string];
      const usage = usageOf(sql, keyId, Number(version));
      if (usage.lastUsedAt !== null) {
        statements.push(
          db
            .prepare(
              "UPDATE key_versions SET last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE key_id = ? AND version = ?",
            )
            .bind(usage.lastUsedAt, keyId, Number(version)),
        );
      }
    }
    await db.batch(statements);
    clearHours(sql, hours);
  }

  // ---- scheduled maintenance -----------------------------------------------------------------

  /**
   * Scheduled maintenance of this consumer (src/maintenance/run.ts). Each of `keyIds` is read
   * again from D1 (the truth, should anything have changed it behind this instance's back),
   * settled and expired by time (`upkeep`, audited like any change), and its KV records are
   * made to match their projection. Each orphan record is removed unless D1 holds its secret
   * after all or an issue of it waits here unconfirmed. A second call finds nothing to do.
   */
  async maintain(
    consumerId: string,
    request: MaintenanceRequest,
    audit: AuditContext,
  ): Promise<MaintenanceOutcome> {
    this.#remember(consumerId);
    const outcome = emptyOutcome();
    for (const keyId of request.keyIds) {
      try {
        this.#states.delete(keyId);
        const decided: { transition: Transition | null } = { transition: null };
        const result = await this.#change(consumerId, keyId, audit, (s, now) => {
          decided.transition = upkeep(s, now);
          return decided.transition;
        });
        if (!result.ok) continue;
        if (decided.transition?.ok) {
          const changes = upkeepChanges(keyId, decided.transition.events);
          outcome.rotationsCompleted.push(...changes.rotationsCompleted);
          outcome.versionsExpired.push(...changes.versionsExpired);
        }
        await this.#serial(async () => {
          const state = await this.#load(keyId);
          if (!state) return;
          const now = Date.now();
          const limits = limitsOf(state, await this.#loadConsumer(consumerId));
          const drifted = await driftedVersions(this.env.KEYS, state, limits, now);
          if (drifted.length === 0) return;
          const failure = await this.#project(
            state,
            now,
            drifted.map((d) => d.version),
          );
          for (const { version, drift } of drifted) {
            outcome.recordsFixed.push({ keyId, version, drift, queued: failure !== null });
          }
          // queued for the alarm, but still failing after its retries: an operator must hear
          if (failure !== null) outcome.failures.push({ keyId, error: failure });
        });
      } catch (error) {
        outcome.failures.push({ keyId, error: String(error) });
      }
    }
    if (request.orphans.length > 0) {
      await this.#serial(async () => {
        for (const orphan of request.orphans) {
          try {
            const pending =
              orphan.keyId !== null &&
              unconfirmedSecrets(this.ctx.storage.sql, { keyId: orphan.keyId }).some(
                (u) => u.secretHash === orphan.hash,
              );
            if (await removeOrphan(this.env.DB, this.env.KEYS, orphan, pending)) {
              const { keyId, version } = orphan;
              outcome.recordsFixed.push({ keyId, version, drift: "orphan", queued: false });
            }
          } catch (error) {
            outcome.failures.push({ keyId: orphan.keyId, error: String(error) });
          }
        }
      });
    }
    await this.#scheduleAlarm();
    return outcome;
  }
}
