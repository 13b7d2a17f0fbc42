import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listenOnLoopback, managementApi, waitFor, type Json } from "./support/http.js";
import { startKeygate, type Keygate } from "./support/worker.js";

/**
 * End to end: Keygate in miniflare (workerd) delivers webhooks over real sockets to a Node
 * receiver on 127.0.0.1, which verifies every request with the standardwebhooks package as a
 * consumer's endpoint would. One endpoint fails twice before it answers; Keygate's alarm
 * retries on its own schedule (5 s, then 30 s): this suite waits for it in real time, as
 * nothing outside the Worker can fire a Durable Object's alarm early.
 */

interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
  answered: number;
  /** the payload when the signature verified with the consumer's secret, else the error */
  verified: unknown;
  error: string | null;
}

interface Receiver {
  url: string;
  /** requests by path */
  received: Map<string, Received[]>;
  /** the secret each path's consumer was given (set once the consumer exists) */
  secrets: Map<string, string>;
  close(): Promise<void>;
}

/**
 * A webhook endpoint on a free loopback port. `/flaky/...` answers 500 to its first two
 * requests, `/moved/...` answers a redirect to `redirectTo`, anything else 204.
 */
async function startReceiver(redirectTo = ""): Promise<Receiver> {
  const received = new Map<string, Received[]>();
  const secrets = new Map<string, string>();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const path = req.url ?? "/";
      const list = received.get(path) ?? [];
      received.set(path, list);
      const body = Buffer.concat(chunks).toString("utf8");
      let verified: unknown = null;
      let error: string | null = null;
      try {
        const secret = secrets.get(path);
        if (!secret) throw new Error("no secret for this path");
        verified = new Webhook(secret).verify(body, req.headers as Record<string, string>);
      } catch (e) {
        error = String(e);
      }
      let status = 204;
      if (path.startsWith("/flaky/") && list.length < 2) status = 500;
      if (path.startsWith("/moved/")) status = 307;
      list.push({ path, headers: req.headers, body, answered: status, verified, error });
      if (status === 307) res.writeHead(307, { Location: `${redirectTo}${path}` });
      else res.writeHead(status);
      res.end(status === 500 ? "not now" : undefined);
    });
  });
  return { ...(await listenOnLoopback(server)), received, secrets };
}

describe("webhooks to a real receiver on loopback", () => {
  let keygate: Keygate;
  let receiver: Receiver;
  let elsewhere: Receiver;
  let api: ReturnType<typeof managementApi>;

  beforeAll(async () => {
    elsewhere = await startReceiver();
    receiver = await startReceiver(elsewhere.url);
    keygate = await startKeygate();
    api = managementApi(keygate.url, keygate.adminToken);
  });

  afterAll(async () => {
    await keygate?.stop();
    await receiver?.close();
    await elsewhere?.close();
  });

  /** A consumer whose webhookUrl is `path` on the receiver; the receiver learns its secret. */
  async function consumerAt(path: string): Promise<string> {
    const created = await api.post("/consumers", {
      name: `e2e ${path}`,
      webhookUrl: `${receiver.url}${path}`,
    });
    expect(created.status).toBe(201);
    receiver.secrets.set(path, created.body.webhookSecret as string);
    return created.body.id as string;
  }

  async function deliveries(consumerId: string): Promise<Json[]> {
    const res = await api.get(`/consumers/${consumerId}/webhooks`);
    expect(res.status).toBe(200);
    return res.body.items as Json[];
  }

  it("delivers signed events that the receiver verifies with the standardwebhooks package", async () => {
    const path = `/ok/${crypto.randomUUID()}`;
    const consumerId = await consumerAt(path);
    const key = await api.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] });
    const rotated = await api.post(`/keys/${key.body.id as string}/rotate`, {
      gracePeriodSeconds: 3600,
    });
    expect(rotated.status).toBe(201);
    const got = await waitFor("two webhooks", () => {
      const list = receiver.received.get(path) ?? [];
      return list.length >= 2 ? list : undefined;
    });
    expect(got.map((r) => r.error)).toEqual([null, null]);
    expect(got.map((r) => (r.verified as { type: string }).type)).toEqual([
      "key.created",
      "rotation.started",
    ]);
    expect(got[1]!.verified).toMatchObject({
      data: {
        consumerId,
        keyId: key.body.id,
        version: 2,
        rotationId: (rotated.body.rotation as Json).id,
        graceUntil: (rotated.body.rotation as Json).graceUntil,
      },
    });
    for (const request of got) {
      expect(request.headers["content-type"]).toBe("application/json");
      expect(request.body).not.toContain(key.body.key as string);
      expect(request.body).not.toContain(rotated.body.key as string);
    }
    const listed = await waitFor("both recorded as delivered", async () => {
      const items = await deliveries(consumerId);
      return items.every((d) => d.status === "delivered") ? items : undefined;
    });
    expect(listed.map((d) => d.lastStatusCode)).toEqual([204, 204]);
  });

  it("retries a receiver that fails twice, then delivers the same signed message", async () => {
    const path = `/flaky/${crypto.randomUUID()}`;
    const consumerId = await consumerAt(path);
    const key = await api.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] });
    expect(key.status).toBe(201);
    const [delivered] = await waitFor(
      "the third attempt",
      async () => {
        const items = await deliveries(consumerId);
        return items[0]?.status === "delivered" ? items : undefined;
      },
      75_000,
      250,
    );
    expect(delivered).toMatchObject({ type: "key.created", attempts: 3, lastStatusCode: 204 });
    const got = receiver.received.get(path)!;
    expect(got.map((r) => r.answered)).toEqual([500, 500, 204]);
    // every attempt verifies, and all three carry one webhook-id and one body
    expect(got.map((r) => r.error)).toEqual([null, null, null]);
    expect(new Set(got.map((r) => r.headers["webhook-id"])).size).toBe(1);
    expect(new Set(got.map((r) => r.body)).size).toBe(1);
    expect(got[0]!.headers["webhook-id"]).toBe(delivered!.eventId);
  }, 90_000);

  it("never follows a redirect to another host", async () => {
    const path = `/moved/${crypto.randomUUID()}`;
    const consumerId = await consumerAt(path);
    await api.post(`/consumers/${consumerId}/keys`, { scopes: ["prices:read"] });
    const [attempted] = await waitFor("the first attempt", async () => {
      const items = await deliveries(consumerId);
      return items[0]?.attempts === 1 ? items : undefined;
    });
    expect(attempted).toMatchObject({ status: "pending", lastStatusCode: 307 });
    expect(attempted!.lastError).toContain("not followed");
    expect(receiver.received.get(path)).toHaveLength(1);
    expect(elsewhere.received.size).toBe(0);
  });
});
