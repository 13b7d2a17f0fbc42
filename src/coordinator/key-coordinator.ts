import { DurableObject } from "cloudflare:workers";
import { configFor } from "../config";
import type { Bindings } from "../env";
import { generateSecret, newKeyId, secretHint } from "../keys/key-format";
import { hashSecret } from "../keys/hash";
import { newId } from "../keys/random";
import { insertAudit, newAuditEvent, type AuditContext } from "../store/audit";
import { getConsumer, upsertConsumer, type Consumer } from "../store/consumers";
import {
  getConsumerKeyIds,
  getKeyState,
  getRotation,
  openRotationsOfConsumer,
} from "../store/keys";
import { projectVersion, type SecretRecord } from "../store/kv-index";
import { auditEventsFor, limitsOf, projectKey, statementsFor, touchedVersions } from "./changes";
import { grant, monthWindow, rateWindow, type Grant, type Limits } from "./limits";
import type { KeyState, KeyVersion, RateLimit, Rotation } from "./key-state";
import { ok, refuse, type Result } from "./result";
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
} from "./rotation-machine";
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
  type HourlyUsage,
  type UsageReport,
  type VersionUsage,
} from "./usage-store";

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

/** A grant of budget, with when the windows it came from end. */
export type Lease = Grant & { rateResetAt: number | null; quotaResetAt: number | null };

export interface RotationUsage {
  old: VersionUsage;
  new: VersionUsage;
}

const SYSTEM: AuditContext = { actor: "system", requestId: null };
const USAGE_ROLLUP_MS = 60_000;

/** Raised when D1 refuses a write; the caller answers 503 and nothing was changed. */
class StorageError extends Error {}

/**
 * One instance per consumer. Every change to the consumer's keys goes through it, one at a
 * time; it writes D1 (rows and audit in one batch), projects to KV, retries failed
 * projections from its alarm, ends rotations whose grace has passed, and keeps the usage
 * counters the front door reports.
 */
export class KeyCoordinator extends DurableObject<Bindings> {
  #queue = new SerialQueue();
  #states = new Map<string, KeyState>();

  constructor(ctx: DurableObjectState, env: Bindings) {
    super(ctx, env);
    createUsageTables(ctx.storage.sql);
    createCounterTable(ctx.storage.sql);
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

  async #batch(statements: D1PreparedStatement[]): Promise<void> {
    if (statements.length === 0) return;
    try {
      await this.env.DB.batch(statements);
    } catch (error) {
      this.#states.clear();
      const message = (error as Error).message ?? "";
      if (message.includes("UNIQUE constraint failed: rotations.key_id")) {
        throw new StorageError("rotation_in_progress");
      }
      throw error;
    }
  }

  /** Writes a transition: D1 first (rows and audit, atomically), then the KV projection. */
  async #commit(
    before: KeyState | null,
    transition: Extract<Transition, { ok: true }>,
    audit: AuditContext,
    now: number,
    extra: D1PreparedStatement[] = [],
  ): Promise<void> {
    const { state, rotations } = transition;
    const events = auditEventsFor(state, transition.events, audit, now);
    await this.#batch([...statementsFor(this.env.DB, before, state, rotations, events), ...extra]);
    this.#states.set(state.key.id, state);
    for (const rotation of rotations) {
      if (rotation.state === "in_progress") {
        saveBaseline(this.ctx.storage.sql, rotation.id, rotation.keyId, rotation.fromVersion);
      }
    }
    await this.#project(state, now, touchedVersions(before, state, rotations));
    await this.#scheduleAlarm();
  }

  /**
   * Projects to KV; a failure is queued for the alarm instead of failing the change. A key
   * already queued is projected whole, and leaves the queue only when that succeeds.
   */
  async #project(state: KeyState, now: number, versions?: number[]): Promise<void> {
    const queued = isQueued(this.ctx.storage.sql, state.key.id);
    try {
      const consumer = await this.#loadConsumer(state.key.consumerId);
      await projectKey(
        this.env.KEYS,
        state,
        limitsOf(state, consumer),
        now,
        queued ? undefined : versions,
      );
      if (queued) dropProjection(this.ctx.storage.sql, state.key.id);
    } catch (error) {
      console.error(
        JSON.stringify({ event: "projection_failed", keyId: state.key.id, error: String(error) }),
      );
      queueProjection(this.ctx.storage.sql, state.key.id, now);
    }
  }

  async #scheduleAlarm(): Promise<void> {
    const consumerId = this.#consumerId();
    if (!consumerId) return;
    const candidates: number[] = [];
    const projection = nextProjectionAt(this.ctx.storage.sql);
    if (projection !== null) candidates.push(projection);
    for (const state of this.#states.values()) {
      if (state.key.consumerId !== consumerId) continue;
      const at = nextDeadline(this.#withLiveUsage(state));
      if (at !== null) candidates.push(at);
    }
    if (pendingHours(this.ctx.storage.sql).length > 0)
      candidates.push(Date.now() + USAGE_ROLLUP_MS);
    if (candidates.length === 0) return;
    const wanted = Math.min(...candidates);
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
        return ok({ ...transition.state, changed: [] });
      }
      try {
        await this.#commit(before, transition, audit, now);
      } catch (error) {
        if (error instanceof StorageError)
          return refuse("rotation_in_progress", "a rotation of this key is in progress");
        throw error;
      }
      return ok({ ...transition.state, changed: transition.rotations });
    });
  }

  // ---- consumers -------------------------------------------------------------------------

  async createConsumer(id: string, input: ConsumerInput, audit: AuditContext): Promise<Consumer> {
    this.#remember(id);
    return this.#serial(async () => {
      const now = Date.now();
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
      await this.#batch([upsertConsumer(this.env.DB, consumer), insertAudit(this.env.DB, event)]);
      this.#consumer = consumer;
      return consumer;
    });
  }

  async updateConsumer(
    id: string,
    patch: Partial<ConsumerInput>,
    audit: AuditContext,
  ): Promise<Result<Consumer>> {
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
      await this.#batch([upsertConsumer(this.env.DB, next), insertAudit(this.env.DB, event)]);
      this.#consumer = next;
      if (patch.rateLimit !== undefined || patch.monthlyQuota !== undefined) {
        // the edge reads limits from each key's KV record
        for (const keyId of await getConsumerKeyIds(this.env.DB, id)) {
          const state = await this.#load(keyId);
          if (state && state.key.status === "active") await this.#project(state, now);
        }
      }
      return ok(next);
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
      if (!current || current.status !== "active") return refuse("not_found", "no such consumer");
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
      await this.#batch(statements);
      this.#consumer = null;
      for (const c of changed) {
        this.#states.set(c.after.key.id, c.after);
        await this.#project(c.after, now, touchedVersions(c.before, c.after, c.rotations));
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
        secretHash: await hashSecret(secret),
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
      const expiresAt =
        input.expiresAt !== undefined ? input.expiresAt : lifetime !== null ? now + lifetime : null;
      return startRotation(state, {
        rotationId: newId("rot"),
        newVersion: {
          version: number,
          secretHash: await hashSecret(secret),
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
    return projectVersion(state.key, found, state.rotation, Date.now(), limitsOf(state, consumer))
      .record;
  }

  /** The authoritative record for a secret, for `strict` routes (null: not valid). */
  async checkSecret(consumerId: string, keyId: string, hash: string): Promise<SecretRecord | null> {
    this.#remember(consumerId);
    const state = await this.#load(keyId);
    if (!state || state.key.consumerId !== consumerId) return null;
    const version = state.versions.find((v) => v.secretHash === hash);
    if (!version) return null;
    const consumer = await this.#loadConsumer(consumerId);
    return projectVersion(state.key, version, state.rotation, Date.now(), limitsOf(state, consumer))
      .record;
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
  async lease(consumerId: string, keyId: string, limits: Limits, want: number): Promise<Lease> {
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
    const result = grant(limits, counters, Math.max(1, Math.min(want, 1000)), now);
    if (result.granted > 0) {
      if (rate) setCounter(sql, rateScope, rate.id, counters.rateUsed + result.granted);
      if (month) setCounter(sql, "quota", month.id, counters.quotaUsed + result.granted);
    }
    return { ...result, rateResetAt: rate?.endsAt ?? null, quotaResetAt: month?.endsAt ?? null };
  }

  // ---- alarm ---------------------------------------------------------------------------------

  /** Retries projections, ends rotations whose time has come, rolls usage up into D1. */
  override async alarm(): Promise<void> {
    const consumerId = this.#consumerId();
    if (!consumerId) return;
    const now = Date.now();
    try {
      for (const keyId of dueProjections(this.ctx.storage.sql, now)) {
        await this.#serial(async () => {
          this.#states.delete(keyId);
          const state = await this.#load(keyId);
          if (state) await this.#project(state, now);
          else dropProjection(this.ctx.storage.sql, keyId);
        });
      }
      for (const rotation of await openRotationsOfConsumer(this.env.DB, consumerId)) {
        await this.#change(consumerId, rotation.keyId, SYSTEM, (s, at) => settle(s, at));
      }
      await this.#rollUpUsage();
    } finally {
      await this.#scheduleAlarm();
    }
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
}
