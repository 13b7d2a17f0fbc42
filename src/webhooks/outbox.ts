import { newId } from "../keys/random";
import { logError } from "../log";
import { SerialQueue } from "../serial-queue";
import type { Consumer } from "../store/consumers";
import {
  dueDeliveries,
  insertDelivery,
  nextDeliveryAt,
  recordAttempt,
  type WebhookDelivery,
} from "./deliveries";
import {
  afterAttempt,
  MAX_WEBHOOK_SECRET_OVERLAP_SECONDS,
  webhookPayload,
  type AttemptOutcome,
  type WebhookEvent,
} from "./events";
import { sendWebhook } from "./sender";
import {
  clearWebhookSecrets,
  createWebhookSecretTable,
  generateWebhookSecret,
  hasWebhookSecret,
  setWebhookSecret,
  signingSecrets,
} from "./signing-secrets";

/** Webhook deliveries attempted per alarm run, one after another; more due run next. */
const WEBHOOK_BATCH = 10;

/**
 * One consumer's webhook outbox, owned by its coordinator. A change enqueues its deliveries
 * as D1 inserts in the change's own batch (a change that landed has its deliveries); the
 * coordinator's alarm then sends what is due, signed with the consumer's signing secret, which
 * lives only here (see signing-secrets.ts). `dueAt` in the coordinator's storage tells the
 * alarm when to look, so an idle consumer costs no D1 query.
 */
export class WebhookOutbox {
  /** deliveries run apart from key changes: a slow receiver must not hold them up */
  #queue = new SerialQueue();

  constructor(
    private readonly sql: SqlStorage,
    /** read at each use: tests swap a coordinator's bindings while it lives */
    private readonly db: () => D1Database,
    private readonly retryMs: number,
  ) {
    sql.exec(`CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)`);
    createWebhookSecretTable(sql);
  }

  // ---- the signing secret: answered once, when generated

  hasSecret(): boolean {
    return hasWebhookSecret(this.sql);
  }

  /**
   * When the current secret would stop signing if replaced now and kept for
   * `keepPreviousSeconds` (capped): null when there is none, or it stops at once (0).
   */
  previousRetiresAt(now: number, keepPreviousSeconds: number): number | null {
    const keep = Math.min(Math.max(0, keepPreviousSeconds), MAX_WEBHOOK_SECRET_OVERLAP_SECONDS);
    return keep > 0 && this.hasSecret() ? now + keep * 1000 : null;
  }

  /** Generates a new current secret; the one it replaces signs until `previousRetiresAt`. */
  newSecret(now: number, previousRetiresAt: number | null = null): string {
    const secret = generateWebhookSecret();
    setWebhookSecret(this.sql, secret, now, previousRetiresAt);
    return secret;
  }

  /** Forgets every signing secret (one generated for a change that did not land). */
  clearSecrets(): void {
    clearWebhookSecrets(this.sql);
  }

  // ---- enqueueing

  /** D1 inserts enqueueing `events` to the consumer; none when it has no webhookUrl. */
  statements(
    consumer: Consumer | null,
    events: WebhookEvent[],
    now: number,
  ): D1PreparedStatement[] {
    if (!consumer || consumer.webhookUrl === null) return [];
    return events.map((event) =>
      insertDelivery(this.db(), {
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

  /** A new delivery of `original`'s event, with a fresh set of attempts. */
  redelivery(original: WebhookDelivery, now: number): WebhookDelivery {
    return {
      ...original,
      id: newId("whd"),
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
  }

  /** When the alarm should next send (null: nothing known to be pending). */
  dueAt(): number | null {
    const row = this.sql
      .exec<{ value: string }>("SELECT value FROM meta WHERE name = 'webhooksDueAt'")
      .toArray()[0];
    return row ? Number(row.value) : null;
  }

  /** Deliveries may be due at `at`: the alarm will look (one that finds none costs a query). */
  wake(at: number): void {
    const due = this.dueAt();
    if (due === null || at < due) this.#setDueAt(at);
  }

  #setDueAt(at: number | null): void {
    if (at === null) {
      this.sql.exec("DELETE FROM meta WHERE name = 'webhooksDueAt'");
    } else {
      this.sql.exec(
        "INSERT OR REPLACE INTO meta (name, value) VALUES ('webhooksDueAt', ?)",
        String(at),
      );
    }
  }

  // ---- sending

  /**
   * Attempts the deliveries that are due, oldest first, a batch per run, and records each
   * attempt in D1. A failed attempt is retried on the backoff schedule (events.ts); a send
   * whose record fails is sent again (at least once: receivers deduplicate on `webhook-id`).
   */
  deliver(consumerId: string, consumer: () => Promise<Consumer | null>): Promise<void> {
    return this.#queue.run(async () => {
      const wokenAt = this.dueAt();
      try {
        const due = await dueDeliveries(this.db(), consumerId, Date.now(), WEBHOOK_BATCH);
        const current = due.length > 0 ? await consumer() : null;
        for (const delivery of due) await this.#attempt(delivery, current?.webhookUrl ?? null);
        const next = await nextDeliveryAt(this.db(), consumerId);
        // a change that enqueued meanwhile lowered the mark: keep the earlier of the two
        const woken = this.dueAt();
        this.#setDueAt(
          woken !== wokenAt && woken !== null && (next === null || woken < next) ? woken : next,
        );
      } catch (error) {
        // D1 is down: look again later, not in a tight loop
        this.#setDueAt(Date.now() + this.retryMs);
        throw error;
      }
    });
  }

  async #attempt(delivery: WebhookDelivery, url: string | null): Promise<void> {
    const at = Date.now();
    const secrets = signingSecrets(this.sql, at);
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
        consumerId: delivery.consumerId,
        deliveryId: delivery.id,
        eventType: delivery.eventType,
        attempts: progress.attempts,
        status: progress.status,
        statusCode: outcome.statusCode,
        error: outcome.error,
      });
    }
    await recordAttempt(this.db(), delivery.id, outcome, progress, Date.now());
  }
}
