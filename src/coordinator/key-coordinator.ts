import { DurableObject } from "cloudflare:workers";
import { configFor } from "../config";
import {
  createKey,
  rotationInput,
  updateKey,
  type KeyInput,
  type KeyPatch,
  type RotateInput,
} from "../domain/key-builders";
import type { KeyState, RateLimit, Rotation } from "../domain/key-state";
import type { Limits } from "../domain/limits";
import { ok, refuse, type Result } from "../domain/result";
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
import { liveRecord, projectVersion, type SecretRecord } from "../domain/secret-record";
import type { Bindings } from "../env";
import { generateSecret, newKeyId } from "../keys/key-format";
import { newId } from "../keys/random";
import { logError } from "../log";
import { insertAudit, newAuditEvent, type AuditContext, type AuditEvent } from "../store/audit";
import { getConsumer, upsertConsumer, type Consumer } from "../store/consumers";
import { getConsumerKeyIds, getRotation, openRotationsOfConsumer } from "../store/keys";
import type { HourlyUsage } from "../store/usage";
import {
  getDelivery,
  getDeliveryOfEvent,
  insertDelivery,
  type WebhookDelivery,
} from "../webhooks/deliveries";
import {
  isWebhookEventType,
  webhookDataProblem,
  webhookEventsFor,
  type WebhookEventData,
  type WebhookEventType,
} from "../webhooks/events";
import { WebhookOutbox } from "../webhooks/outbox";
import { auditEventsFor, limitsOf, statementsFor, touchedVersions } from "./changes";
import {
  maintainConsumer,
  type MaintenanceOutcome,
  type MaintenanceRequest,
} from "./consumer-upkeep";
import { KeyWriter, SYSTEM } from "./key-writer";
import { nextUnconfirmedAt, unconfirmedSecrets } from "./unconfirmed-secrets";
import { UsageLedger, type Lease, type RotationUsage } from "./usage-ledger";
import { dueProjections, nextProjectionAt, queueProjection, type UsageReport } from "./usage-store";

export interface ConsumerInput {
  name: string;
  metadata: Record<string, unknown> | null;
  rateLimit: RateLimit | null;
  monthlyQuota: number | null;
  webhookUrl: string | null;
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

const USAGE_ROLLUP_MS = 60_000;
/** When an alarm step failed (D1 down), the alarm runs again this much later. */
const ALARM_RETRY_MS = 5_000;

/**
 * One instance per consumer, named by the consumer's id (`idFromName`): the serialisation
 * point of every change to the consumer and its keys. It orchestrates three parts it owns:
 * the write protocol (key-writer.ts: D1 then KV, retries, half-issued secrets), the usage
 * and rate-limit ledger (usage-ledger.ts) and the webhook outbox (webhooks/outbox.ts); the
 * decisions themselves are pure transitions in domain/. Its alarm retries projections, ends
 * rotations whose time has come, rolls usage up into D1 and sends webhooks.
 */
export class KeyCoordinator extends DurableObject<Bindings> {
  readonly #name: string | undefined;
  #owned:
    | {
        consumerId: string;
        sql: SqlStorage;
        usage: UsageLedger;
        outbox: WebhookOutbox;
        writer: KeyWriter;
      }
    | undefined;

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    this.#name = ctx.id.name;
  }

  /**
   * The parts it owns, made on first use. An instance reached by id string or a unique id
   * would serve nobody: every call to it throws before it touches anything.
   */
  #parts() {
    const name = this.#name;
    if (!name) throw new Error("a KeyCoordinator is reached by idFromName only");
    if (!this.#owned) {
      const sql = this.ctx.storage.sql;
      const usage = new UsageLedger(sql);
      const outbox = new WebhookOutbox(sql, () => this.env.DB, ALARM_RETRY_MS);
      const host = {
        env: () => this.env,
        sql,
        consumerId: name,
        scheduleAlarm: () => this.#scheduleAlarm(),
      };
      const writer = new KeyWriter(host, usage, outbox);
      this.#owned = { consumerId: name, sql, usage, outbox, writer };
    }
    return this.#owned;
  }

  /** the consumer this instance serves: the name it was reached by */
  get #consumerId(): string {
    return this.#parts().consumerId;
  }

  /** the instance's own SQLite storage, once its parts (and their tables) exist */
  get #sql(): SqlStorage {
    return this.#parts().sql;
  }

  get #usage(): UsageLedger {
    return this.#parts().usage;
  }

  get #outbox(): WebhookOutbox {
    return this.#parts().outbox;
  }

  get #writer(): KeyWriter {
    return this.#parts().writer;
  }

  #audited(audit: AuditContext, now: number, action: string, details: Record<string, unknown>) {
    const consumerId = this.#consumerId;
    return newAuditEvent(
      audit,
      now,
      action,
      { consumerId, keyId: null, target: `consumer:${consumerId}` },
      details,
    );
  }

  /** Sets the alarm to the earliest work due (`retryAt`: a failed alarm step's next try). */
  async #scheduleAlarm(retryAt: number | null = null): Promise<void> {
    const sql = this.#sql;
    const candidates = [
      retryAt,
      nextProjectionAt(sql),
      nextUnconfirmedAt(sql),
      this.#outbox.dueAt(),
      ...this.#writer.cachedStates().map(nextDeadline),
      this.#usage.pending().length > 0 ? Date.now() + USAGE_ROLLUP_MS : null,
    ].filter((at): at is number => at !== null);
    if (candidates.length === 0) return;
    // work already due (a queued retry) runs at once
    const wanted = Math.max(Math.min(...candidates), Date.now());
    const current = await this.ctx.storage.getAlarm();
    if (current === null || wanted < current) await this.ctx.storage.setAlarm(wanted);
  }

  // ---- consumers

  /**
   * Writes the consumer and its audit row (`keyIds`: keys whose KV records follow from it). A
   * webhook secret generated for this change is forgotten when the write fails: the caller
   * never saw it, so a retry generates and shows a new one, and a consumer that landed all
   * the same gets one by rotation (POST /consumers/:id/webhook-secret/rotate).
   */
  async #saveConsumer(
    consumer: Consumer,
    event: AuditEvent,
    keyIds: string[],
    webhookSecret: string | null,
    now: number,
  ): Promise<void> {
    try {
      await this.#writer.write(
        [upsertConsumer(this.env.DB, consumer), insertAudit(this.env.DB, event)],
        event.id,
        keyIds,
        now,
      );
    } catch (error) {
      if (webhookSecret !== null) this.#outbox.clearSecrets();
      throw error;
    }
    this.#writer.setConsumer(consumer);
  }

  /**
   * Creates the consumer. With a webhookUrl, its webhook signing secret is generated and kept
   * here before the D1 write (so a consumer that exists always has one), and answered once.
   */
  async createConsumer(input: ConsumerInput, audit: AuditContext): Promise<ConsumerWithSecret> {
    return this.#writer.serial(async () => {
      const now = Date.now();
      const webhookSecret = input.webhookUrl !== null ? this.#outbox.newSecret(now) : null;
      const consumer: Consumer = {
        id: this.#consumerId,
        ...input,
        status: "active",
        createdAt: now,
        updatedAt: now,
        deletedAt: null,
      };
      const event = this.#audited(audit, now, "consumer.created", { name: input.name });
      await this.#saveConsumer(consumer, event, [], webhookSecret, now);
      return { consumer, webhookSecret };
    });
  }

  /**
   * Changes the consumer. The first webhookUrl it gets also generates its webhook signing
   * secret, answered in this response only.
   */
  async updateConsumer(
    patch: Partial<ConsumerInput>,
    audit: AuditContext,
  ): Promise<Result<ConsumerWithSecret>> {
    return this.#writer.serial(async () => {
      const current = await getConsumer(this.env.DB, this.#consumerId);
      if (!current || current.status !== "active") return refuse("not_found", "no such consumer");
      const now = Date.now();
      const next: Consumer = { ...current, ...patch, updatedAt: now };
      const fields = Object.keys(patch).filter(
        (f) => patch[f as keyof ConsumerInput] !== undefined,
      );
      const event = this.#audited(audit, now, "consumer.updated", { fields });
      // the edge reads limits from each key's KV record
      const limitsChanged = patch.rateLimit !== undefined || patch.monthlyQuota !== undefined;
      const keyIds = limitsChanged ? await getConsumerKeyIds(this.env.DB, this.#consumerId) : [];
      const webhookSecret =
        typeof patch.webhookUrl === "string" && !this.#outbox.hasSecret()
          ? this.#outbox.newSecret(now)
          : null;
      await this.#saveConsumer(next, event, keyIds, webhookSecret, now);
      const changes: { state: KeyState }[] = [];
      for (const keyId of keyIds) {
        // the change is in D1: a key that cannot be read now is left to the alarm
        const state = await this.#writer.load(keyId).catch(() => undefined);
        if (state === undefined) queueProjection(this.#sql, keyId, now);
        else if (state?.key.status === "active") changes.push({ state });
      }
      await this.#writer.projectAll(changes, now);
      await this.#scheduleAlarm();
      return ok({ consumer: next, webhookSecret });
    });
  }

  /** Marks the consumer deleted and revokes every key of it, in one batch. */
  async deleteConsumer(audit: AuditContext): Promise<Result<{ revokedKeys: string[] }>> {
    return this.#writer.serial(async () => {
      const db = this.env.DB;
      const current = await getConsumer(db, this.#consumerId);
      if (!current || current.status !== "active") {
        // a retry of a delete that landed although it failed: finish what it left queued
        if (current)
          await this.#writer.projectQueued(
            await getConsumerKeyIds(db, this.#consumerId),
            Date.now(),
          );
        return refuse("not_found", "no such consumer");
      }
      const now = Date.now();
      const statements: D1PreparedStatement[] = [];
      const changed: { before: KeyState; after: KeyState; rotations: Rotation[] }[] = [];
      for (const keyId of await getConsumerKeyIds(db, this.#consumerId)) {
        const before = await this.#writer.load(keyId);
        if (!before) continue;
        const transition = revokeKey(before, "consumer deleted", now);
        if (!transition.ok) continue;
        const events = auditEventsFor(transition.state, transition.events, audit, now);
        statements.push(
          ...statementsFor(db, before, transition.state, transition.rotations, events),
          ...this.#outbox.statements(
            current,
            webhookEventsFor(events, transition.state, transition.rotations),
            now,
          ),
        );
        changed.push({ before, after: transition.state, rotations: transition.rotations });
      }
      const revokedKeys = changed
        .filter((c) => c.before.key.status !== "revoked")
        .map((c) => c.after.key.id);
      const event = this.#audited(audit, now, "consumer.deleted", { revokedKeys });
      statements.push(
        upsertConsumer(db, { ...current, status: "deleted", deletedAt: now, updatedAt: now }),
        insertAudit(db, event),
      );
      if (current.webhookUrl !== null) this.#outbox.wake(now);
      const keyIds = changed.map((c) => c.after.key.id);
      await this.#writer.write(statements, event.id, keyIds, now);
      this.#writer.setConsumer(null);
      for (const c of changed) this.#writer.remember(c.after);
      await this.#writer.projectAll(
        changed.map((c) => ({
          state: c.after,
          versions: touchedVersions(c.before, c.after, c.rotations),
        })),
        now,
      );
      await this.#scheduleAlarm();
      return ok({ revokedKeys: keyIds });
    });
  }

  // ---- keys

  async createKey(input: KeyInput, audit: AuditContext): Promise<Result<IssuedKey>> {
    return this.#writer.serial(async () => {
      const consumer = await getConsumer(this.env.DB, this.#consumerId);
      if (!consumer || consumer.status !== "active") return refuse("not_found", "no such consumer");
      const now = Date.now();
      const keyId = newKeyId();
      const secret = generateSecret(configFor(this.env).keyPrefix, keyId);
      const transition = createKey(this.#consumerId, keyId, secret, input, now);
      const [version] = transition.state.versions;
      await this.#writer.commit(null, transition, audit, now, version);
      return ok({ secret, state: transition.state, rotation: null });
    });
  }

  async updateKey(keyId: string, patch: KeyPatch, audit: AuditContext): Promise<Result<KeyState>> {
    return this.#writer.apply(keyId, audit, (state, now) => updateKey(state, patch, now));
  }

  async rotateKey(
    keyId: string,
    input: RotateInput,
    audit: AuditContext,
  ): Promise<Result<IssuedKey>> {
    const config = configFor(this.env);
    let secret = "";
    const result = await this.#writer.apply(keyId, audit, (state, now) => {
      secret = generateSecret(config.keyPrefix, keyId);
      return startRotation(
        state,
        rotationInput(state, newId("rot"), secret, input, config.defaultGraceSeconds, now),
      );
    });
    if (!result.ok) return result;
    const { changed, ...state } = result.value;
    const rotation = changed.find((r) => r.toVersion === state.key.currentVersion) ?? null;
    return ok({ secret, state, rotation });
  }

  async revokeKey(
    keyId: string,
    reason: string | null,
    audit: AuditContext,
  ): Promise<Result<KeyState>> {
    return this.#writer.apply(keyId, audit, (state, now) => revokeKey(state, reason, now));
  }

  // ---- rotations

  async #rotationChange(
    rotationId: string,
    audit: AuditContext,
    decide: (state: KeyState, now: number) => Transition,
  ): Promise<Result<Rotation>> {
    const rotation = await getRotation(this.env.DB, rotationId);
    if (!rotation || rotation.consumerId !== this.#consumerId)
      return refuse("not_found", "no such rotation");
    const result = await this.#writer.apply(rotation.keyId, audit, decide);
    if (!result.ok) return result;
    const changed = result.value.changed.find((r) => r.id === rotationId);
    return ok(changed ?? (await getRotation(this.env.DB, rotationId)) ?? rotation);
  }

  completeRotation(rotationId: string, audit: AuditContext): Promise<Result<Rotation>> {
    return this.#rotationChange(rotationId, audit, (s, now) =>
      completeRotation(s, rotationId, now),
    );
  }

  rollbackRotation(rotationId: string, audit: AuditContext): Promise<Result<Rotation>> {
    return this.#rotationChange(rotationId, audit, (s, now) =>
      rollbackRotation(s, rotationId, now),
    );
  }

  extendRotation(
    rotationId: string,
    extraSeconds: number,
    audit: AuditContext,
  ): Promise<Result<Rotation>> {
    const maxGraceMs = configFor(this.env).maxGraceSeconds * 1000;
    return this.#rotationChange(rotationId, audit, (s, now) =>
      extendRotation(s, rotationId, extraSeconds * 1000, maxGraceMs, now),
    );
  }

  /** Usage of the old and new version since the rotation began. */
  async rotationUsage(rotation: Rotation): Promise<RotationUsage> {
    return this.#usage.rotationUsage(rotation);
  }

  /** Hourly counts of a key not yet rolled up into D1. */
  async pendingUsage(keyId: string): Promise<HourlyUsage[]> {
    return this.#usage.pending(keyId);
  }

  // ---- the front door's calls

  /** The authoritative record of a key's version (strict routes, access tokens), or null. */
  async checkVersion(keyId: string, version: number): Promise<SecretRecord | null> {
    return this.#authoritative(keyId, (v) => v.version === version);
  }

  /** The authoritative record of a secret, for `strict` routes (null: not valid). */
  async checkSecret(keyId: string, hash: string): Promise<SecretRecord | null> {
    return this.#authoritative(keyId, (v) => v.secretHash === hash);
  }

  async #authoritative(
    keyId: string,
    which: (version: KeyState["versions"][number]) => boolean,
  ): Promise<SecretRecord | null> {
    const state = await this.#writer.load(keyId);
    const found = state?.versions.find(which);
    if (!state || !found) return null;
    const limits = limitsOf(state, await this.#writer.consumer());
    return liveRecord(projectVersion(state.key, found, state.rotation, Date.now(), limits));
  }

  /**
   * Batched usage from the front door. The first use of a new version may start its grace.
   * Answers the keys whose state changed, so the caller can drop its cached copies.
   */
  async recordUsage(reports: UsageReport[]): Promise<string[]> {
    const changed: string[] = [];
    for (const keyId of new Set(reports.map((r) => r.keyId))) {
      // a key of another consumer (or none) is not this ledger's to count
      const state = await this.#writer.load(keyId);
      if (!state) continue;
      const { rotation } = state;
      const ofKey = reports.filter((r) => r.keyId === keyId);
      this.#usage.record(ofKey, rotation);
      const first = rotation && ofKey.find((r) => r.version === rotation.toVersion);
      if (rotation && first && rotation.firstUsedAt === null) {
        const result = await this.#writer.apply(keyId, SYSTEM, (s, now) =>
          markUsed(s, first.version, first.firstAt, now),
        );
        if (result.ok) changed.push(keyId);
      }
    }
    await this.#scheduleAlarm();
    return changed;
  }

  /** Budget for a key from its rate-limit window and the consumer's quota (usage-ledger.ts). */
  async lease(
    keyId: string,
    limits: Limits,
    want: number,
    returned: { month: number; count: number } | null = null,
  ): Promise<Lease> {
    return this.#usage.lease(keyId, limits, want, returned, Date.now());
  }

  // ---- webhooks

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
    const consumer = await this.#writer.consumer();
    if (!consumer || consumer.status !== "active" || consumer.webhookUrl === null) {
      return ok({ deliveryId: null, enqueued: false });
    }
    const now = Date.now();
    const [statement] = this.#outbox.statements(
      consumer,
      [{ id: eventId, type, at: options.at ?? now, data }],
      now,
    );
    const result = await statement!.run();
    const enqueued = result.meta.changes === 1;
    if (enqueued) {
      this.#outbox.wake(now);
      await this.#scheduleAlarm();
    }
    const delivery = await getDeliveryOfEvent(this.env.DB, this.#consumerId, eventId);
    return ok({ deliveryId: delivery?.id ?? null, enqueued });
  }

  /**
   * Sends a delivery's event again, as a new delivery with a fresh set of attempts: the same
   * `webhook-id` and payload (receivers that deduplicate see it as the same event), signed
   * anew. Audited; refused when the consumer has no webhookUrl.
   */
  async redeliverWebhook(
    deliveryId: string,
    audit: AuditContext,
  ): Promise<Result<WebhookDelivery>> {
    const original = await getDelivery(this.env.DB, deliveryId);
    if (!original || original.consumerId !== this.#consumerId)
      return refuse("not_found", "no such webhook delivery");
    const consumer = await this.#writer.consumer();
    if (!consumer) return refuse("not_found", "no such consumer");
    if (consumer.webhookUrl === null)
      return refuse("conflict", "the consumer has no webhookUrl to deliver to");
    const now = Date.now();
    const delivery = this.#outbox.redelivery(original, now);
    const event = this.#audited(audit, now, "webhook.redelivered", {
      deliveryId: delivery.id,
      redeliveryOf: original.id,
      eventId: original.eventId,
    });
    this.#outbox.wake(now);
    await this.#writer.write(
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
    keepPreviousSeconds: number,
    audit: AuditContext,
  ): Promise<Result<RotatedWebhookSecret>> {
    return this.#writer.serial(async () => {
      const consumer = await this.#writer.consumer();
      if (!consumer || consumer.status !== "active") return refuse("not_found", "no such consumer");
      const now = Date.now();
      const retiresAt = this.#outbox.previousRetiresAt(now, keepPreviousSeconds);
      const event = this.#audited(audit, now, "consumer.webhook_secret_rotated", {
        previousSecretRetiresAt: retiresAt === null ? null : new Date(retiresAt).toISOString(),
      });
      await this.#writer.write([insertAudit(this.env.DB, event)], event.id, [], now);
      const webhookSecret = this.#outbox.newSecret(now, retiresAt);
      return ok({ webhookSecret, previousSecretRetiresAt: retiresAt });
    });
  }

  // ---- alarm

  /**
   * Settles half-issued secrets, retries projections, ends rotations whose time has come,
   * rolls usage up into D1, sends webhooks.
   */
  override async alarm(): Promise<void> {
    const consumerId = this.#consumerId;
    const now = Date.now();
    const sql = this.#sql;
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
      if (due.length > 0) await this.#writer.serial(() => this.#writer.confirmIssues(due, now));
    });
    for (const keyId of dueProjections(sql, now)) {
      await this.#writer.serial(async () => {
        try {
          await this.#writer.projectQueued([keyId], now);
        } catch (error) {
          // D1 could not say what KV should hold: back off and try again
          logError("projection_retry_failed", { keyId, error });
          queueProjection(sql, keyId, now);
        }
      });
    }
    await step("rotations", async () => {
      for (const rotation of await openRotationsOfConsumer(this.env.DB, consumerId)) {
        await this.#writer.apply(rotation.keyId, SYSTEM, (s, at) => settle(s, at));
      }
    });
    await step("usage", () => this.#usage.rollUp(this.env.DB));
    // last: a slow receiver must not hold up the steps above
    await step("webhooks", () => this.#outbox.deliver(consumerId, () => this.#writer.consumer()));
    await this.#scheduleAlarm(failed ? now + ALARM_RETRY_MS : null);
  }

  // ---- scheduled maintenance

  /**
   * Scheduled maintenance of this consumer (src/maintenance/run.ts). Each of `keyIds` is read
   * again from D1 (the truth, should anything have changed it behind this instance's back),
   * settled and expired by time (`upkeep`, audited like any change), and its KV records are
   * made to match their projection. Each orphan record is removed unless D1 holds its secret
   * after all or an issue of it waits here unconfirmed. A second call finds nothing to do.
   */
  async maintain(request: MaintenanceRequest, audit: AuditContext): Promise<MaintenanceOutcome> {
    const outcome = await maintainConsumer(this.#writer, this.#sql, this.env, request, audit);
    await this.#scheduleAlarm();
    return outcome;
  }
}
