import {
  createExecutionContext,
  createScheduledController,
  env,
  waitOnExecutionContext,
} from "cloudflare:test";
import { expect, vi } from "vitest";
import worker from "../../src/index";
import { hashSecret } from "../../src/keys/hash";
import { secretKey } from "../../src/store/kv-index";
import { type SecretRecord } from "../../src/domain/secret-record";
import { admin, type Json } from "../support/api";

/**
 * Helpers for the maintenance suites: run the cron as Cloudflare does, travel in time by
 * moving D1's timestamps (maintenance re-reads D1, the truth, for every key it looks at), and
 * read or tamper with KV records directly.
 */

type Bindings = typeof env;

export const DAY = 86_400_000;

/** The `maintenance_run` line the cron logged. */
export interface RunLine {
  event: "maintenance_run";
  trigger: string;
  changes: number;
  rotationsCompleted: number;
  versionsExpired: number;
  reminders: number;
  keysChecked: number;
  recordsListed: number;
  keysWalk: string;
  kvWalk: string;
  pruned: { idempotencyRecords: number; webhookDeliveries: number };
  recordsFixed: { consumerId: string | null; keyId: string | null; drift: string }[];
  failures: unknown[];
}

/**
 * Runs the Worker's `scheduled` handler (signer upkeep and maintenance) and answers the
 * structured line maintenance logged. `vars` override the Worker's vars for this run.
 */
export async function runCron(vars: Partial<Bindings> = {}): Promise<RunLine> {
  const lines: string[] = [];
  const capture = (...args: unknown[]) => {
    if (typeof args[0] === "string") lines.push(args[0]);
  };
  const info = vi.spyOn(console, "info").mockImplementation(capture);
  const error = vi.spyOn(console, "error").mockImplementation(capture);
  try {
    const ctx = createExecutionContext();
    await worker.scheduled!(
      createScheduledController({ cron: "*/15 * * * *", scheduledTime: Date.now() }),
      { ...env, ...vars } as Bindings,
      ctx,
    );
    await waitOnExecutionContext(ctx);
  } finally {
    info.mockRestore();
    error.mockRestore();
  }
  const runs = lines
    .filter((line) => line.startsWith("{"))
    .map((line) => JSON.parse(line) as { event?: string })
    .filter((line) => line.event === "maintenance_run");
  expect(runs).toHaveLength(1);
  return runs[0] as RunLine;
}

/** `POST /maintenance/run` as an admin: the full report. */
export async function runNow(): Promise<Json> {
  const res = await admin.post("/maintenance/run", {});
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body;
}

/** Moves the end of an open rotation's grace window (rotation and old version) to `at`. */
export async function moveGraceEnd(rotation: Json, at: number): Promise<void> {
  await env.DB.batch([
    env.DB.prepare("UPDATE rotations SET grace_until = ? WHERE id = ?").bind(at, rotation.id),
    env.DB.prepare("UPDATE key_versions SET grace_until = ? WHERE key_id = ? AND version = ?").bind(
      at,
      rotation.keyId,
      rotation.fromVersion,
    ),
  ]);
}

export async function moveExpiry(keyId: string, version: number, at: number): Promise<void> {
  await env.DB.prepare("UPDATE key_versions SET expires_at = ? WHERE key_id = ? AND version = ?")
    .bind(at, keyId, version)
    .run();
}

export async function moveCreation(keyId: string, version: number, at: number): Promise<void> {
  await env.DB.prepare("UPDATE key_versions SET created_at = ? WHERE key_id = ? AND version = ?")
    .bind(at, keyId, version)
    .run();
}

export async function kvRecordOf(secret: string): Promise<SecretRecord | null> {
  return env.KEYS.get<SecretRecord>(secretKey(hashSecret(secret)), "json");
}

export async function putRecord(hash: string, record: unknown): Promise<void> {
  await env.KEYS.put(secretKey(hash), JSON.stringify(record));
}

/** A hash no secret Keygate issued has. */
export function randomHash(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export async function auditActions(keyId: string, action: string): Promise<Json[]> {
  const res = await admin.get(`/audit?keyId=${keyId}&action=${action}&limit=100`);
  expect(res.status).toBe(200);
  return res.body.items as Json[];
}

export async function versionStatus(keyId: string, version: number): Promise<string> {
  const row = await env.DB.prepare(
    "SELECT status FROM key_versions WHERE key_id = ? AND version = ?",
  )
    .bind(keyId, version)
    .first<{ status: string }>();
  return row!.status;
}

export async function rotationState(rotationId: string): Promise<Json | null> {
  return env.DB.prepare("SELECT state, end_reason FROM rotations WHERE id = ?")
    .bind(rotationId)
    .first<Json>();
}
