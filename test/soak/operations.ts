import type { Client, Outcome } from "./client.js";
import {
  applyComplete,
  applyExtend,
  applyRevoke,
  applyRollback,
  applyRotate,
  newKey,
  type KeyModel,
  type RotationAnswer,
} from "./model.js";
import type { Slots } from "./slots.js";
import type { Tally, ViolationKind } from "./tally.js";

/** Where management calls come from (never one of the traffic's addresses). */
export const ADMIN_ADDRESS = "127.0.0.1";

export type OperationKind =
  | "rotate"
  | "rotate_first_use"
  | "emergency"
  | "complete"
  | "rollback"
  | "extend"
  | "revoke"
  | "rotate_while_open"
  | "create";

/** The keys under churn: `live[i]` is slot i's key; revoked keys move to `graveyard`. */
export interface Population {
  live: KeyModel[];
  graveyard: KeyModel[];
}

/** Picks an operation the key's state allows, with revocation rare. */
export function chooseOperation(key: KeyModel, random = Math.random()): OperationKind {
  if (key.revoked) return "create";
  if (random < 0.03) return "revoke";
  if (key.rotation === null) {
    if (random < 0.55) return "rotate";
    if (random < 0.65) return "rotate_first_use";
    return "emergency";
  }
  if (random < 0.4) return "complete";
  if (random < 0.65) return "rollback";
  if (random < 0.88) return "extend";
  return "rotate_while_open";
}

function ms(value: unknown): number | null {
  return typeof value === "string" ? Date.parse(value) : null;
}

function rotationOf(body: Record<string, unknown> | null): RotationAnswer {
  return {
    id: String(body?.id),
    state: String(body?.state),
    fromVersion: Number(body?.fromVersion),
    toVersion: Number(body?.toVersion),
    graceUntil: ms(body?.graceUntil),
  };
}

function randomInt(min: number, max: number): number {
  return min + Math.floor(Math.random() * (max - min + 1));
}

/** Runs the management operations and keeps the model in step with their answers. */
export class Operator {
  constructor(
    private readonly client: Client,
    private readonly adminToken: string,
    private readonly tally: Tally,
    private readonly slots: Slots,
    private readonly graceSeconds: number,
  ) {}

  call(method: string, path: string, body?: unknown): Promise<Outcome> {
    return this.slots.run(() =>
      this.client.send({
        method,
        path: `/_keygate/v1${path}`,
        address: ADMIN_ADDRESS,
        headers: { Authorization: `Bearer ${this.adminToken}` },
        body,
      }),
    );
  }

  async createConsumer(name: string): Promise<string> {
    const outcome = await this.call("POST", "/consumers", { name });
    if (!outcome.ok || outcome.answer.status !== 201) {
      throw new Error(`creating consumer ${name}: ${describe(outcome)}`);
    }
    return String(outcome.answer.body?.id);
  }

  /** Issues a key for `consumerId`; null (and a violation) when refused. */
  async createKey(consumerId: string, addresses: string[]): Promise<KeyModel | null> {
    this.tally.operation("create");
    const outcome = await this.call("POST", `/consumers/${consumerId}/keys`, {
      scopes: ["soak:read"],
    });
    if (!outcome.ok || outcome.answer.status !== 201) {
      this.violation("op_refused", "create", null, "201", outcome);
      return null;
    }
    const body = outcome.answer.body;
    if (typeof body?.key !== "string" || typeof body.id !== "string" || body.version !== 1) {
      this.violation("op_inconsistent", "create", null, "201 with key, id, version 1", outcome);
      return null;
    }
    this.tally.pass("operations");
    const key = newKey(body.id, consumerId, body.key, 1, addresses);
    key.settledAt = Date.now();
    return key;
  }

  /** One operation on slot `index`'s key, holding that key's lock (its odd `seq`). */
  async operate(population: Population, index: number): Promise<void> {
    const key = population.live[index]!;
    if (key.unknown !== null) return;
    const kind = chooseOperation(key);
    if (kind === "create") {
      const replacement = await this.createKey(key.consumerId, key.addresses);
      if (replacement) population.live[index] = replacement;
      return;
    }
    this.tally.operation(kind);
    key.seq++;
    try {
      await this.apply(key, kind);
    } finally {
      key.seq++;
      key.settledAt = Date.now();
    }
    if (kind === "revoke" && key.revoked) {
      population.graveyard.push(key);
      const replacement = await this.createKey(key.consumerId, key.addresses);
      if (replacement) population.live[index] = replacement;
    }
  }

  private async apply(key: KeyModel, kind: Exclude<OperationKind, "create">): Promise<void> {
    const rotation = key.rotation;
    switch (kind) {
      case "rotate":
      case "emergency":
      case "rotate_first_use":
      case "rotate_while_open": {
        const outcome = await this.call("POST", `/keys/${key.id}/rotate`, this.rotateBody(kind));
        if (kind === "rotate_while_open") {
          this.expectRefusal(key, kind, outcome, 409, "rotation_in_progress");
          return;
        }
        const body = this.expect(key, kind, outcome, 201);
        if (body === null) return;
        const r = body.rotation as Record<string, unknown> | null | undefined;
        const problem = applyRotate(key, kind === "emergency", {
          secret: String(body.key),
          version: Number(body.version),
          rotationId: String(r?.id),
          rotationState: String(r?.state),
          fromVersion: Number(r?.fromVersion),
          toVersion: Number(r?.toVersion),
          graceUntil: ms(r?.graceUntil),
          startedAt: ms(r?.startedAt) ?? Date.now(),
        });
        this.settle(key, kind, problem, outcome);
        return;
      }
      case "complete": {
        const path = `/rotations/${rotation!.id}/complete`;
        let outcome = await this.call("POST", path, {});
        // contract §9: completing while the old secret is still in use may ask for force
        if (
          outcome.ok &&
          outcome.answer.status === 409 &&
          /force/i.test(String(outcome.answer.body?.detail))
        ) {
          this.tally.operation("complete_forced");
          outcome = await this.call("POST", path, { force: true });
        }
        const body = this.expect(key, kind, outcome, 200);
        if (body !== null) this.settle(key, kind, applyComplete(key, rotationOf(body)), outcome);
        return;
      }
      case "rollback": {
        const outcome = await this.call("POST", `/rotations/${rotation!.id}/rollback`, {});
        const body = this.expect(key, kind, outcome, 200);
        if (body !== null) this.settle(key, kind, applyRollback(key, rotationOf(body)), outcome);
        return;
      }
      case "extend": {
        const before = key.versions.get(rotation!.fromVersion)?.graceUntil ?? null;
        const outcome = await this.call("POST", `/rotations/${rotation!.id}/extend`, {
          gracePeriodSeconds: randomInt(60, 3600),
        });
        const body = this.expect(key, kind, outcome, 200);
        if (body !== null) {
          this.settle(key, kind, applyExtend(key, rotationOf(body), before), outcome);
        }
        return;
      }
      case "revoke": {
        const outcome = await this.call("POST", `/keys/${key.id}/revoke`, { reason: "soak" });
        const body = this.expect(key, kind, outcome, 200);
        if (body !== null) this.settle(key, kind, applyRevoke(key, String(body.status)), outcome);
        return;
      }
    }
  }

  /** A rotate body: planned grace of `graceSeconds` to twice that, or 0 (emergency). */
  private rotateBody(kind: "rotate" | "emergency" | "rotate_first_use" | "rotate_while_open") {
    const grace = randomInt(this.graceSeconds, 2 * this.graceSeconds);
    switch (kind) {
      case "emergency":
        return { gracePeriodSeconds: 0 };
      case "rotate_first_use":
        return { gracePeriodSeconds: grace, graceStartsOnFirstUse: true };
      case "rotate_while_open":
        // planned or emergency, either must be refused while a rotation is open
        return { gracePeriodSeconds: Math.random() < 0.5 ? 0 : grace };
      case "rotate":
        return { gracePeriodSeconds: grace };
    }
  }

  /**
   * The answer's body when it is the expected success, else null. A refusal changes nothing
   * (the model stays); a lost answer or a 5xx leaves the outcome unknown, so the key is no
   * longer judged.
   */
  private expect(
    key: KeyModel,
    kind: string,
    outcome: Outcome,
    status: number,
  ): Record<string, unknown> | null {
    if (outcome.ok && outcome.answer.status === status) return outcome.answer.body ?? {};
    if (!outcome.ok || outcome.answer.status >= 500) {
      key.unknown = `${kind}: ${describe(outcome)}`;
      this.violation(
        outcome.ok ? "server_error" : "op_unexpected",
        kind,
        key,
        String(status),
        outcome,
      );
      return null;
    }
    this.violation("op_refused", kind, key, String(status), outcome);
    return null;
  }

  private expectRefusal(
    key: KeyModel,
    kind: string,
    outcome: Outcome,
    status: number,
    code: string,
  ): void {
    if (outcome.ok && outcome.answer.status === status && outcome.answer.code === code) {
      this.tally.pass("operations");
      return;
    }
    // anything but a clean refusal may have changed the key in a way the model cannot follow
    if (!outcome.ok || outcome.answer.status < 400 || outcome.answer.status >= 500) {
      key.unknown = `${kind}: ${describe(outcome)}`;
    }
    this.violation(
      outcome.ok && outcome.answer.status >= 500 ? "server_error" : "op_unexpected",
      kind,
      key,
      `${status} ${code}`,
      outcome,
    );
  }

  private settle(key: KeyModel, kind: string, problem: string | null, outcome: Outcome): void {
    if (problem === null) {
      this.tally.pass("operations");
      return;
    }
    key.unknown = `${kind}: ${problem}`;
    this.violation(
      "op_inconsistent",
      kind,
      key,
      "an answer consistent with the model",
      outcome,
      problem,
    );
  }

  private violation(
    kind: ViolationKind,
    operation: string,
    key: KeyModel | null,
    expected: string,
    outcome: Outcome,
    note?: string,
  ): void {
    const detail = outcome.ok ? outcome.answer.body?.detail : undefined;
    this.tally.fail(kind, {
      phase: "operations",
      keyId: key?.id ?? null,
      version: key?.current ?? null,
      address: ADMIN_ADDRESS,
      expected: `${operation} → ${expected}`,
      got: describe(outcome),
      note: note ?? (typeof detail === "string" ? detail : undefined),
    });
  }
}

function describe(outcome: Outcome): string {
  if (!outcome.ok) return `no answer (${outcome.error})`;
  const { status, code } = outcome.answer;
  return code ? `${status} ${code}` : String(status);
}
