import { describe, expect, it } from "vitest";
import {
  afterAttempt,
  MAX_WEBHOOK_ATTEMPTS,
  webhookDataProblem,
  webhookEventsFor,
  webhookPayload,
  type AttemptOutcome,
} from "../../src/webhooks/events";
import { signedHeaders } from "../../src/webhooks/sender";
import { generateWebhookSecret } from "../../src/webhooks/signing-secrets";
import type { KeyState, Rotation } from "../../src/domain/key-state";
import type { AuditEvent } from "../../src/store/audit";
import { Webhook } from "standardwebhooks";

const T0 = Date.UTC(2026, 4, 1, 12);
const FAILED: AttemptOutcome = { ok: false, statusCode: 500, error: "HTTP 500", url: "https://x" };
const DELIVERED: AttemptOutcome = { ok: true, statusCode: 204, error: null, url: "https://x" };

function state(): KeyState {
  return {
    key: {
      id: "key1",
      consumerId: "csm_1",
      name: null,
      metadata: null,
      rateLimit: null,
      status: "active",
      currentVersion: 2,
      createdAt: T0,
      updatedAt: T0,
      revokedAt: null,
      revokeReason: null,
    },
    versions: [1, 2].map((version) => ({
      version,
      secretHash: `hash${version}`,
      hint: `abc${version}`,
      scopes: ["prices:read"],
      status: version === 2 ? "active" : "grace",
      createdAt: T0,
      expiresAt: null,
      graceUntil: version === 1 ? T0 + 3_600_000 : null,
      retiredAt: null,
      lastUsedAt: null,
    })),
    rotation: null,
  };
}

const rotation: Rotation = {
  id: "rot_1",
  keyId: "key1",
  consumerId: "csm_1",
  state: "in_progress",
  fromVersion: 1,
  toVersion: 2,
  startedAt: T0,
  gracePeriodMs: 3_600_000,
  graceUntil: T0 + 3_600_000,
  graceStartsOnFirstUse: false,
  completeWhenIdleMs: null,
  firstUsedAt: null,
  endedAt: null,
  endReason: null,
};

function audit(action: string, details: Record<string, unknown>): AuditEvent {
  return {
    id: `evt_${action}`,
    at: T0,
    actor: "admin",
    action,
    consumerId: "csm_1",
    keyId: "key1",
    target: "key:key1",
    details,
    requestId: null,
  };
}

describe("webhook events and payloads (pure)", () => {
  it("maps the audit events a consumer hears about, and only those", () => {
    const events = webhookEventsFor(
      [
        audit("rotation.started", { rotationId: "rot_1", emergency: false }),
        audit("rotation.extended", { rotationId: "rot_1" }),
        audit("key.updated", { fields: ["name"] }),
      ],
      state(),
      [rotation],
    );
    expect(events).toEqual([
      {
        id: "evt_rotation.started",
        type: "rotation.started",
        at: T0,
        data: {
          keyId: "key1",
          version: 2,
          rotationId: "rot_1",
          fromVersion: 1,
          toVersion: 2,
          graceUntil: T0 + 3_600_000,
          graceStartsOnFirstUse: false,
          emergency: false,
          expiresAt: null,
        },
      },
    ]);
  });

  it("writes { type, timestamp, data } with ISO times and the consumer id", () => {
    const [event] = webhookEventsFor(
      [audit("rotation.started", { rotationId: "rot_1" })],
      state(),
      [rotation],
    );
    expect(JSON.parse(webhookPayload("csm_1", event!))).toEqual({
      type: "rotation.started",
      timestamp: "2026-05-01T12:00:00.000Z",
      data: expect.objectContaining({
        consumerId: "csm_1",
        graceUntil: "2026-05-01T13:00:00.000Z",
      }),
    });
  });

  it("never writes a secret field, and says what is wrong with data from outside", () => {
    const event = {
      id: "e",
      type: "key.expiring" as const,
      at: T0,
      data: { keyId: "k", version: 1, secretHash: "x" },
    };
    expect(() => webhookPayload("csm_1", event)).toThrow(/never carries "secretHash"/);
    expect(webhookDataProblem({ keyId: "k", version: 1 })).toBeNull();
    expect(webhookDataProblem({ keyId: "", version: 1 })).toMatch(/keyId/);
    expect(webhookDataProblem({ keyId: "k", version: 0 })).toMatch(/version/);
    expect(webhookDataProblem({ keyId: "k", version: 1, key: "kg_x" })).toMatch(/"key"/);
  });
});

describe("retry schedule (pure)", () => {
  it("backs off 5 s, 30 s, 2 min, 10 min, 1 h … and fails after the last attempt", () => {
    let attempts = 0;
    const waits: number[] = [];
    let progress = afterAttempt(attempts, FAILED, T0);
    while (progress.status === "pending") {
      waits.push(progress.nextAttemptAt! - T0);
      attempts = progress.attempts;
      progress = afterAttempt(attempts, FAILED, T0);
    }
    expect(waits.slice(0, 5)).toEqual([5_000, 30_000, 120_000, 600_000, 3_600_000]);
    expect(waits).toEqual([...waits].sort((a, b) => a - b));
    expect(progress).toEqual({
      status: "failed",
      attempts: MAX_WEBHOOK_ATTEMPTS,
      nextAttemptAt: null,
      lastAttemptAt: T0,
      deliveredAt: null,
    });
  });

  it("a 2xx delivers; an attempt that had nowhere to go gives up without counting", () => {
    expect(afterAttempt(2, DELIVERED, T0)).toEqual({
      status: "delivered",
      attempts: 3,
      nextAttemptAt: null,
      lastAttemptAt: T0,
      deliveredAt: T0,
    });
    expect(afterAttempt(2, FAILED, T0, false)).toMatchObject({ status: "failed", attempts: 2 });
  });
});

describe("signing", () => {
  it("signs with every secret given, each verifiable on its own", () => {
    const current = generateWebhookSecret();
    const previous = generateWebhookSecret();
    const now = Date.now();
    const payload = '{"type":"key.created"}';
    const headers = signedHeaders({ eventId: "evt_1", payload }, [current, previous], now);
    expect(headers["webhook-id"]).toBe("evt_1");
    expect(headers["webhook-timestamp"]).toBe(String(Math.floor(now / 1000)));
    expect(headers["webhook-signature"]!.split(" ")).toHaveLength(2);
    for (const secret of [current, previous]) {
      expect(new Webhook(secret).verify(payload, headers)).toEqual({ type: "key.created" });
    }
    expect(() => new Webhook(generateWebhookSecret()).verify(payload, headers)).toThrow();
  });
});
