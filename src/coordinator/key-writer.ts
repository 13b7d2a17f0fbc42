import type { KeyState, KeyVersion, Rotation } from "../domain/key-state";
import { ok, refuse, type Result } from "../domain/result";
import type { Transition } from "../domain/rotation-machine";
import type { Bindings } from "../env";
import { logError } from "../log";
import { SerialQueue } from "../serial-queue";
import { auditEventExists, type AuditContext } from "../store/audit";
import { getConsumer, type Consumer } from "../store/consumers";
import { getKeyState } from "../store/keys";
import { writeProjection } from "../store/kv-index";
import { webhookEventsFor } from "../webhooks/events";
import type { WebhookOutbox } from "../webhooks/outbox";
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
import {
  addUnconfirmed,
  createUnconfirmedTable,
  deferUnconfirmed,
  dropUnconfirmed,
  unconfirmedSecrets,
  type UnconfirmedSecret,
} from "./unconfirmed-secrets";
import type { UsageLedger } from "./usage-ledger";
import { dropProjection, isQueued, queueProjection } from "./usage-store";

/** Tries at a KV write before it is left to the alarm (waiting 50 ms, then 200 ms). */
const KV_ATTEMPTS = 3;

export const SYSTEM: AuditContext = { actor: "system", requestId: null };

/**
 * A D1 write that did not land (`landed: false`), or that may have (`"unknown"`: D1 threw and
 * could not be asked afterwards). The caller answers 503; the keys the write touched are
 * queued for a full projection, so KV follows whatever D1 ends up holding.
 */
export class WriteFailed extends Error {
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
export class ProjectionFailed extends Error {}

/** What the writer needs of the coordinator that owns it. */
export interface WriterHost {
  /** read at each use: tests swap a coordinator's bindings while it lives */
  env(): Bindings;
  readonly sql: SqlStorage;
  readonly consumerId: string;
  /** sets the alarm to the earliest work due */
  scheduleAlarm(): Promise<void>;
}

/**
 * The write protocol of one consumer's keys: D1 is the truth and KV its projection. A change
 * writes D1 first (rows, audit and webhook deliveries in one batch), then projects to KV; a
 * projection that fails is queued and retried by the alarm; a secret about to be issued is
 * written to KV before D1 and settled if D1 then fails (unconfirmed-secrets.ts). Changes run
 * one at a time. Caches the consumer and its keys' states: every change goes through here.
 */
export class KeyWriter {
  #queue = new SerialQueue();
  #states = new Map<string, KeyState>();
  #consumer: Consumer | null = null;

  constructor(
    private readonly host: WriterHost,
    private readonly usage: UsageLedger,
    private readonly outbox: WebhookOutbox,
  ) {
    createUnconfirmedTable(host.sql);
  }

  /** Runs changes one after another: D1 and KV awaits would otherwise interleave. */
  serial<T>(work: () => Promise<T>): Promise<T> {
    return this.#queue.run(work);
  }

  /** The consumer (cached). */
  async consumer(): Promise<Consumer | null> {
    if (this.#consumer?.id === this.host.consumerId) return this.#consumer;
    this.#consumer = await getConsumer(this.host.env().DB, this.host.consumerId);
    return this.#consumer;
  }

  /** The consumer as just written (null: read it again when next needed). */
  setConsumer(consumer: Consumer | null): void {
    this.#consumer = consumer;
  }

  /** A key of this consumer from D1 (cached), or null. */
  async load(keyId: string): Promise<KeyState | null> {
    const cached = this.#states.get(keyId);
    if (cached) return cached;
    const state = await getKeyState(this.host.env().DB, keyId);
    if (state?.key.consumerId !== this.host.consumerId) return null;
    this.#states.set(keyId, state);
    return state;
  }

  /** Reads the key from D1 again when next needed. */
  forget(keyId: string): void {
    this.#states.delete(keyId);
  }

  remember(state: KeyState): void {
    this.#states.set(state.key.id, state);
  }

  /** The keys of this consumer held in the cache, with live usage. */
  cachedStates(): KeyState[] {
    return [...this.#states.values()].map((s) => this.usage.withLiveUsage(s));
  }

  /**
   * Writes one D1 batch (one transaction). D1 can throw after committing (the answer was
   * lost), so a failure is checked against `marker`, the id of an audit row in the batch: a
   * batch that landed all the same returns normally. Otherwise this throws `WriteFailed`,
   * after queueing a full projection of `keyIds` (the alarm then makes KV match D1, whichever
   * way the write went).
   */
  async write(
    statements: D1PreparedStatement[],
    marker: string | null,
    keyIds: string[],
    now: number,
  ): Promise<void> {
    if (statements.length === 0) return;
    const db = this.host.env().DB;
    try {
      await db.batch(statements);
      return;
    } catch (error) {
      this.#states.clear();
      this.#consumer = null;
      const message = String((error as Error | undefined)?.message ?? error);
      if (message.includes("UNIQUE constraint failed: rotations.key_id")) {
        throw new WriteFailed(false, true, error);
      }
      let landed: boolean | "unknown" = "unknown";
      if (marker !== null) landed = await auditEventExists(db, marker).catch(() => "unknown");
      logError("d1_write_failed", { landed, keyIds, error: message });
      if (landed === true) return;
      for (const keyId of keyIds) queueProjection(this.host.sql, keyId, now);
      await this.host.scheduleAlarm();
      throw new WriteFailed(landed, false, error);
    }
  }

  /** Runs a transition on a key of this consumer under the lock and commits it. */
  apply(
    keyId: string,
    audit: AuditContext,
    decide: (state: KeyState, now: number) => Transition | Promise<Transition>,
  ): Promise<Result<KeyState & { changed: Rotation[] }>> {
    return this.serial(async () => {
      // an earlier call's secret that may be half-issued is settled before anything else
      const pending = unconfirmedSecrets(this.host.sql, { keyId });
      if (pending.length > 0) await this.confirmIssues(pending, Date.now());
      const loaded = await this.load(keyId);
      if (!loaded) return refuse("not_found", "no such key");
      const before = this.usage.withLiveUsage(loaded);
      const now = Date.now();
      const transition = await decide(before, now);
      if (!transition.ok) return refuse(transition.code, transition.detail);
      if (
        transition.events.length === 0 &&
        transition.rotations.length === 0 &&
        JSON.stringify(before) === JSON.stringify(transition.state)
      ) {
        // nothing to write, but a retry after a failure must still leave KV matching D1
        if (isQueued(this.host.sql, keyId)) await this.project(transition.state, now);
        return ok({ ...transition.state, changed: [] });
      }
      const issued = transition.state.versions.find(
        (v) => !before.versions.some((b) => b.version === v.version),
      );
      try {
        await this.commit(before, transition, audit, now, issued);
      } catch (error) {
        if (error instanceof WriteFailed && error.rotationInProgress)
          return refuse("rotation_in_progress", "a rotation of this key is in progress");
        throw error;
      }
      return ok({ ...transition.state, changed: transition.rotations });
    });
  }

  /**
   * Writes a transition: D1 first (rows and audit, atomically), then the KV projection. A
   * transition that issues a secret (`issued`: the new version) writes that version's KV
   * record first: the client may use the secret the moment it has it, and a KV miss would be
   * cached at the edge for a minute. If KV refuses, nothing is written to D1 and the caller
   * answers 503; if D1 then fails, the record is withdrawn (see unconfirmed-secrets.ts).
   */
  async commit(
    before: KeyState | null,
    transition: Extract<Transition, { ok: true }>,
    audit: AuditContext,
    now: number,
    issued?: KeyVersion,
  ): Promise<void> {
    const { state, rotations } = transition;
    const { sql } = this.host;
    const env = this.host.env();
    const events = auditEventsFor(state, transition.events, audit, now);
    const marker = events[0]?.id ?? null;
    // webhooks ride in the change's own batch: a change that landed has its deliveries
    const webhookEvents = webhookEventsFor(events, state, rotations);
    const deliveries =
      webhookEvents.length > 0
        ? this.outbox.statements(await this.consumer(), webhookEvents, now)
        : [];
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
        const limits = limitsOf(state, await this.consumer());
        await withRetries(KV_ATTEMPTS, () =>
          projectKey(env.KEYS, state, limits, now, [issued.version]),
        );
      } catch (error) {
        logError("projection_failed", { keyId: state.key.id, error });
        // the put may have landed: the alarm removes the record of a secret never issued
        deferUnconfirmed(sql, issued.secretHash, now);
        await this.host.scheduleAlarm();
        throw new ProjectionFailed("KV refused the new secret's record", { cause: error });
      }
    }
    if (deliveries.length > 0) this.outbox.wake(now);
    try {
      await this.write(
        [...statementsFor(env.DB, before, state, rotations, events), ...deliveries],
        marker,
        [state.key.id],
        now,
      );
    } catch (error) {
      if (issued) {
        deferUnconfirmed(sql, issued.secretHash, now);
        if (error instanceof WriteFailed && error.landed === false) {
          // never issued: drop its record now (the alarm checks again and retries)
          await writeProjection(env.KEYS, issued.secretHash, {
            record: null,
            expiration: null,
          }).catch(() => undefined);
        }
        await this.host.scheduleAlarm();
      }
      throw error;
    }
    if (issued) dropUnconfirmed(sql, issued.secretHash);
    this.#states.set(state.key.id, state);
    for (const rotation of rotations) {
      if (rotation.state === "in_progress") this.usage.startBaseline(rotation);
    }
    const touched = touchedVersions(before, state, rotations).filter((v) => v !== issued?.version);
    await this.project(state, now, touched);
    await this.host.scheduleAlarm();
  }

  /**
   * Projects to KV, trying a few times; a failure is queued for the alarm instead of failing
   * the change, which D1 already holds. A key already queued is projected whole, and leaves
   * the queue only when that succeeds. A retry writes again only the records KV refused (each
   * from the state at hand: a later write of a secret supersedes an earlier one). Answers
   * null when KV now matches, else why it does not.
   */
  async project(
    state: KeyState,
    now: number,
    versions?: number[],
    attempts = KV_ATTEMPTS,
  ): Promise<string | null> {
    const { sql } = this.host;
    const queued = isQueued(sql, state.key.id);
    let pending = queued ? undefined : versions;
    try {
      const limits = limitsOf(state, await this.consumer());
      const kv = this.host.env().KEYS;
      await withRetries(attempts, async () => {
        try {
          await projectKey(kv, state, limits, now, pending);
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

  /**
   * Projects keys after a change D1 holds, each with its touched versions (all when omitted);
   * once KV has failed, the other keys go straight to the queue.
   */
  async projectAll(
    changes: { state: KeyState; versions?: number[] | undefined }[],
    now: number,
  ): Promise<void> {
    let attempts = KV_ATTEMPTS;
    for (const { state, versions } of changes) {
      if ((await this.project(state, now, versions, attempts)) !== null) attempts = 1;
    }
  }

  /** Projects, fresh from D1, those of `keyIds` that wait in the projection queue. */
  async projectQueued(keyIds: string[], now: number): Promise<void> {
    for (const keyId of keyIds) {
      if (!isQueued(this.host.sql, keyId)) continue;
      this.#states.delete(keyId);
      const state = await this.load(keyId);
      if (state) await this.project(state, now);
      else dropProjection(this.host.sql, keyId);
    }
  }

  /**
   * Settles secrets whose KV record was written before a D1 write that failed: one that D1
   * does not hold loses its KV record; one that D1 holds although its secret never reached a
   * client is withdrawn (its rotation rolled back, or a new key revoked), so the client's
   * retry is not refused and no version nobody holds stays live. A check D1 cannot answer
   * waits for the next alarm.
   */
  async confirmIssues(rows: UnconfirmedSecret[], now: number): Promise<void> {
    const { sql } = this.host;
    const env = this.host.env();
    for (const row of rows) {
      try {
        if (await auditEventExists(env.DB, row.marker)) {
          this.#states.delete(row.keyId);
          const state = await this.load(row.keyId);
          const withdrawal = state ? withdrawUnissued(state, row, now) : null;
          if (state && withdrawal?.ok) {
            logError("unissued_version_withdrawn", { keyId: row.keyId, version: row.version });
            await this.commit(this.usage.withLiveUsage(state), withdrawal, SYSTEM, now);
          }
        } else {
          await writeProjection(env.KEYS, row.secretHash, { record: null, expiration: null });
        }
        dropUnconfirmed(sql, row.secretHash);
      } catch (error) {
        logError("unconfirmed_secret_check_failed", { keyId: row.keyId, error });
        deferUnconfirmed(sql, row.secretHash, now);
      }
    }
  }
}
