import {
  createExecutionContext,
  env,
  runDurableObjectAlarm,
  runInDurableObject,
  waitOnExecutionContext,
} from "cloudflare:test";
import { expect } from "vitest";
import { limitsOf } from "../../src/coordinator/changes";
import worker from "../../src/index";
import { getConsumer } from "../../src/store/consumers";
import { getKeyState } from "../../src/store/keys";
import { projectVersion, type SecretRecord } from "../../src/domain/secret-record";
import { secretKey } from "../../src/store/kv-index";
import { intercepting, type FaultSwitch } from "../support/faults";

/**
 * Fault injection aimed at one consumer's coordinator. Every wrapper here wraps the REAL
 * binding (see ../support/faults.ts): calls go through to workerd's KV and D1 unless a fault
 * is switched on.
 */

type Bindings = typeof env;

export function stubOf(consumerId: string) {
  return env.COORDINATOR.get(env.COORDINATOR.idFromName(consumerId));
}

/**
 * Gives the consumer's coordinator its own copy of the bindings, some of them wrapped, while
 * `work` runs. The Worker and its Durable Objects share one env object in workerd, so
 * wrapping a binding in place would also fail the route's own reads, and the request would
 * never reach the coordinator.
 */
export async function withCoordinatorBindings<T>(
  consumerId: string,
  wrap: BindingWrappers,
  work: () => Promise<T>,
): Promise<T> {
  const stub = stubOf(consumerId);
  const original = await swapBindings(stub, wrap);
  try {
    return await work();
  } finally {
    await restoreBindings(stub, original);
  }
}

export interface BindingWrappers {
  DB?: (db: D1Database) => D1Database;
  KEYS?: (kv: KVNamespace) => KVNamespace;
}

async function swapBindings(stub: DurableObjectStub, wrap: BindingWrappers): Promise<Bindings> {
  let original: Bindings | undefined;
  await runInDurableObject(stub, (instance) => {
    const holder = instance as unknown as { env: Bindings };
    original = holder.env;
    holder.env = {
      ...holder.env,
      DB: wrap.DB ? wrap.DB(holder.env.DB) : holder.env.DB,
      KEYS: wrap.KEYS ? wrap.KEYS(holder.env.KEYS) : holder.env.KEYS,
    };
  });
  return original!;
}

async function restoreBindings(stub: DurableObjectStub, original: Bindings): Promise<void> {
  await runInDurableObject(stub, (instance) => {
    (instance as unknown as { env: Bindings }).env = original;
  });
}

function writes(statements: unknown): boolean {
  return (statements as { statement?: string }[]).some((s) =>
    /^\s*(INSERT|UPDATE|DELETE)/i.test(s.statement ?? ""),
  );
}

/**
 * D1 whose first writing `batch` while `fault.on` commits for real and then throws, as when
 * the answer is lost on its way back. With `thenDown`, D1 then refuses every call until the
 * switch is off, so the caller cannot ask what happened.
 */
export function committingThenFailing(
  db: D1Database,
  fault: FaultSwitch,
  thenDown = false,
): D1Database {
  let fired = false;
  return intercepting(db, (method, args, real) => {
    if (fault.on && fired && thenDown) {
      fault.refused++;
      throw new Error(`injected ${method} failure: D1 is down`);
    }
    if (fault.on && !fired && method === "batch" && writes(args[0])) {
      fired = true;
      return (real() as Promise<unknown>).then(() => {
        fault.refused++;
        throw new Error("injected batch failure after the batch committed");
      });
    }
    return real();
  });
}

/** KV whose `methods` fail while `fault.on`, for the KV keys `affected` picks only. */
export function failingFor(
  kv: KVNamespace,
  methods: string[],
  affected: (key: string) => boolean,
  fault: FaultSwitch,
): KVNamespace {
  return intercepting(kv, (method, args, real) => {
    if (fault.on && methods.includes(method) && affected(String(args[0]))) {
      fault.refused++;
      return Promise.reject(new Error(`injected ${method} failure`));
    }
    return real();
  });
}

/**
 * D1 whose statements matching `sql` fail when run while `fault.on`; every other statement
 * is the real one.
 */
export function failingStatements(db: D1Database, sql: RegExp, fault: FaultSwitch): D1Database {
  const wrapStatement = (statement: D1PreparedStatement): D1PreparedStatement =>
    intercepting(statement, (method, _args, real) => {
      if (method === "bind") return wrapStatement(real() as D1PreparedStatement);
      if (fault.on && ["run", "first", "all", "raw"].includes(method)) {
        fault.refused++;
        return Promise.reject(new Error(`injected ${method} failure`));
      }
      return real();
    });
  return intercepting(db, (method, args, real) => {
    const result = real();
    return method === "prepare" && sql.test(String(args[0]))
      ? wrapStatement(result as D1PreparedStatement)
      : result;
  });
}

/**
 * Runs the coordinator's alarm with every queued retry made due now (the retries back off
 * from one second up; a test fires them instead of waiting).
 */
export async function runRetriesNow(consumerId: string): Promise<void> {
  const stub = stubOf(consumerId);
  await runInDurableObject(stub, (_instance, state) => {
    state.storage.sql.exec("UPDATE projection_queue SET next_at = 0");
    state.storage.sql.exec("UPDATE unconfirmed_secrets SET next_at = 0");
  });
  expect(await runDurableObjectAlarm(stub)).toBe(true);
}

/** What waits in the coordinator for a retry: queued projections and unconfirmed secrets. */
export async function pendingRetries(
  consumerId: string,
): Promise<{ projections: string[]; unconfirmed: string[] }> {
  return runInDurableObject(stubOf(consumerId), (_instance, state) => ({
    projections: state.storage.sql
      .exec<{ key_id: string }>("SELECT key_id FROM projection_queue ORDER BY key_id")
      .toArray()
      .map((r) => r.key_id),
    unconfirmed: state.storage.sql
      .exec<{ key_id: string }>("SELECT key_id FROM unconfirmed_secrets ORDER BY key_id")
      .toArray()
      .map((r) => r.key_id),
  }));
}

/** Asserts that the consumer's coordinator has nothing left for its alarm to retry. */
export async function expectNothingToRetry(consumerId: string): Promise<void> {
  expect(await pendingRetries(consumerId), `retries of ${consumerId}`).toEqual({
    projections: [],
    unconfirmed: [],
  });
}

/**
 * Asserts that revoked keys are settled: the front door refuses each, KV matches D1 for each,
 * and their coordinators have nothing left to retry.
 */
export async function expectRevokedAndSettled(
  ...keys: { id: string; key: string; consumerId: string }[]
): Promise<void> {
  for (const key of keys) {
    expect((await frontDoor(key.key)).status, `key ${key.id} at the front door`).toBe(401);
    await expectKvMatchesD1(key.id);
  }
  for (const consumerId of new Set(keys.map((k) => k.consumerId))) {
    await expectNothingToRetry(consumerId);
  }
}

/** Asserts that KV holds, for every version of the key, exactly what D1 says it should. */
export async function expectKvMatchesD1(keyId: string): Promise<void> {
  const state = await getKeyState(env.DB, keyId);
  expect(state, `key ${keyId} in D1`).not.toBeNull();
  const consumer = await getConsumer(env.DB, state!.key.consumerId);
  const now = Date.now();
  for (const version of state!.versions) {
    const expected = projectVersion(
      state!.key,
      version,
      state!.rotation,
      now,
      limitsOf(state!, consumer),
    );
    const actual = await env.KEYS.get<SecretRecord>(secretKey(version.secretHash), "json");
    expect(actual, `KV record of version ${version.version}`).toEqual(expected.record);
  }
}

/**
 * The KV keys of every secret record of a consumer that could verify (a revoked version's
 * tombstone never can), to show a failed call left none behind. (Other tests' coordinators
 * run their alarms in real time, so KV as a whole may change.)
 */
export async function kvRecordsOf(consumerId: string): Promise<string[]> {
  const names: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await env.KEYS.list({ prefix: "secret:v1:", ...(cursor ? { cursor } : {}) });
    for (const key of page.keys) {
      const record = await env.KEYS.get<SecretRecord>(key.name, "json");
      if (record?.consumerId === consumerId && record.status !== "revoked") names.push(key.name);
    }
    cursor = page.list_complete ? undefined : page.cursor;
  } while (cursor);
  return names.sort();
}

/**
 * A front-door request that reads KV every time: the isolate's record cache is off, so what
 * answers is what KV holds now.
 */
export async function frontDoor(secret: string, path = "/anything", method = "GET") {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request(`https://keygate.test${path}`, {
      method,
      headers: { Authorization: `Bearer ${secret}` },
    }),
    { ...env, CACHE_TTL_SECONDS: "0" } as Bindings,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  return res;
}

/** A management call to the Worker with some of its own bindings replaced. */
export async function adminWith(
  bindings: Partial<Bindings>,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
) {
  const ctx = createExecutionContext();
  const init: RequestInit = {
    method,
    headers: { Authorization: `Bearer ${env.ADMIN_TOKEN}`, ...headers },
  };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    (init.headers as Record<string, string>)["Content-Type"] = "application/json";
  }
  const res = await worker.fetch(
    new Request(`https://keygate.test/_keygate/v1${path}`, init),
    { ...env, ...bindings } as Bindings,
    ctx,
  );
  await waitOnExecutionContext(ctx);
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: (text ? JSON.parse(text) : {}) as Record<string, unknown>,
  };
}

/**
 * The Worker's `COORDINATOR` namespace, real, except that for the length of every call a
 * coordinator gets its own bindings wrapped as `withCoordinatorBindings` does. For calls to
 * coordinators whose consumer id the route makes up (consumer creation).
 */
export function coordinatorsWith(wrap: BindingWrappers): DurableObjectNamespace {
  const namespace = env.COORDINATOR;
  return new Proxy(namespace, {
    get(object, property) {
      const value: unknown = Reflect.get(object, property, object);
      if (typeof value !== "function") return value;
      const method = (value as (...a: unknown[]) => unknown).bind(object);
      if (property !== "get") return method;
      return (...args: unknown[]) => {
        const stub = method(...args) as DurableObjectStub;
        return new Proxy(stub, {
          get(target, name) {
            const call: unknown = Reflect.get(target, name, target);
            if (typeof call !== "function" || name === "then") return call;
            return async (...callArgs: unknown[]) => {
              const original = await swapBindings(stub, wrap);
              try {
                // an RPC method answers any property, `apply` included: call it with Reflect
                return await (Reflect.apply(
                  call as () => unknown,
                  target,
                  callArgs,
                ) as Promise<unknown>);
              } finally {
                await restoreBindings(stub, original);
              }
            };
          },
        });
      };
    },
  });
}
