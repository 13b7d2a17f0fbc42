import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCli, keygate, keygateJson, type CliOptions } from "./cli-harness.js";
import { listenOnLoopback, waitFor, type Listening } from "./support/http.js";
import { startKeygate, type Keygate } from "./support/worker.js";

/**
 * The built `keygate` command's webhook and maintenance commands against Keygate in
 * miniflare, with a Node receiver on 127.0.0.1 that answers every webhook 204: the webhook
 * secret printed once (and the one printed verifies what Keygate sends), deliveries listed and
 * redelivered, the secret rotated, a maintenance pass run, and the errors of each.
 */

const WEBHOOK_SECRET = /^whsec_[A-Za-z0-9+/]+=*$/;

interface Consumer {
  id: string;
  webhookUrl: string | null;
  webhookSecret?: string;
}
interface Delivery {
  id: string;
  eventId: string;
  type: string;
  status: string;
  attempts: number;
  redeliveryOf: string | null;
}
interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

let kg: Keygate;
let as: CliOptions;
let receiver: Listening;
let receiverUrl: string;
/** requests the receiver got, by path (one path per consumer) */
const received = new Map<string, Received[]>();

beforeAll(async () => {
  await buildCli();
  kg = await startKeygate();
  as = { url: kg.url, token: kg.adminToken };
  const server: Server = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      const path = req.url ?? "/";
      received.set(path, [...(received.get(path) ?? []), { headers: req.headers, body }]);
      res.writeHead(204).end();
    });
  });
  receiver = await listenOnLoopback(server);
  receiverUrl = receiver.url;
});
afterAll(async () => {
  await receiver?.close();
  await kg?.stop();
});

let paths = 0;
const webhookPath = () => `/hooks/${++paths}`;

/** A consumer whose webhooks go to its own path on the receiver; answers it with its secret. */
async function consumerWithWebhook(): Promise<Consumer & { path: string; webhookSecret: string }> {
  const path = webhookPath();
  const consumer = await keygateJson<Consumer>(
    ["consumers", "create", "Hooked", "--webhook-url", receiverUrl + path],
    as,
  );
  return { ...consumer, path, webhookSecret: consumer.webhookSecret! };
}

async function issueKey(consumerId: string): Promise<{ id: string }> {
  return keygateJson<{ id: string }>(["keys", "create", consumerId], as);
}

/** The lines of `stdout` that are a webhook secret and nothing else. */
const secretLines = (stdout: string) =>
  stdout
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => WEBHOOK_SECRET.test(line));

/** The `n`th request (from 1) the receiver gets on `path`, once it has come. */
const nthReceived = (path: string, n: number) =>
  waitFor(`webhook ${n} on ${path}`, () => received.get(path)?.[n - 1]);

const verifies = (secret: string, request: Received) => {
  try {
    new Webhook(secret).verify(request.body, request.headers as Record<string, string>);
    return true;
  } catch {
    return false;
  }
};

describe("keygate consumers: the webhook secret", () => {
  it("create --webhook-url prints the secret once, and it signs what Keygate sends", async () => {
    const path = webhookPath();
    const result = await keygate(
      ["consumers", "create", "Hooked", "--webhook-url", receiverUrl + path],
      as,
    );
    expect(result.code).toBe(0);
    const secrets = secretLines(result.stdout);
    expect(secrets).toHaveLength(1);
    expect(result.stdout.split(secrets[0]!)).toHaveLength(2);
    expect(result.stderr).toContain("only time the webhook secret is shown");
    const id = /^id\s+(csm_\S+)$/m.exec(result.stdout)![1]!;
    expect(result.stdout).toMatch(new RegExp(`^webhook url\\s+${receiverUrl}${path}$`, "m"));

    await issueKey(id);
    const webhook = await nthReceived(path, 1);
    expect(verifies(secrets[0]!, webhook)).toBe(true);
    expect(JSON.parse(webhook.body)).toMatchObject({ type: "key.created" });
  });

  it("consumers get and list never show it", async () => {
    const consumer = await consumerWithWebhook();
    expect(consumer.webhookSecret).toMatch(WEBHOOK_SECRET);
    for (const args of [
      ["consumers", "get", consumer.id],
      ["consumers", "get", consumer.id, "--json"],
      ["consumers", "list", "--all"],
      ["consumers", "list", "--all", "--json"],
    ]) {
      const result = await keygate(args, as);
      expect(result.code).toBe(0);
      expect(result.stdout + result.stderr).not.toContain("whsec_");
    }
  });

  it("update prints the secret when it first gives the consumer a webhook URL, not after", async () => {
    const { id } = await keygateJson<Consumer>(["consumers", "create", "Later"], as);
    const first = await keygate(
      ["consumers", "update", id, "--webhook-url", receiverUrl + webhookPath()],
      as,
    );
    expect(first.code).toBe(0);
    expect(secretLines(first.stdout)).toHaveLength(1);
    expect(first.stderr).toContain("only time the webhook secret is shown");

    const moved = await keygate(
      ["consumers", "update", id, "--webhook-url", receiverUrl + webhookPath()],
      as,
    );
    expect(moved.code).toBe(0);
    expect(moved.stdout + moved.stderr).not.toContain("whsec_");
  });
});

describe("keygate webhooks list and redeliver", () => {
  it("lists the delivery of a key's creation, as JSON and as a table", async () => {
    const consumer = await consumerWithWebhook();
    const key = await issueKey(consumer.id);
    const page = await keygateJson<Page<Delivery & { payload: { data: { keyId: string } } }>>(
      ["webhooks", "list", consumer.id],
      as,
    );
    expect(page.items).toHaveLength(1);
    const delivery = page.items[0]!;
    expect(delivery).toMatchObject({ type: "key.created", payload: { data: { keyId: key.id } } });

    const table = await keygate(["webhooks", "list", consumer.id], as);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^ID\s+EVENT\s+STATUS\s+ATTEMPTS\s+LAST RESULT\s+NEXT ATTEMPT$/m);
    expect(table.stdout).toMatch(
      new RegExp(`^${delivery.id}\\s+key\\.created\\s+\\w+\\s+\\d`, "m"),
    );
  });

  it("filters by --status and pages with --limit", async () => {
    const consumer = await consumerWithWebhook();
    await issueKey(consumer.id);
    await issueKey(consumer.id);
    // the receiver answers 204: nothing sent to it ever fails
    const failed = await keygateJson<Page<Delivery>>(
      ["webhooks", "list", consumer.id, "--status", "failed"],
      as,
    );
    expect(failed.items).toEqual([]);
    const first = await keygateJson<Page<Delivery>>(
      ["webhooks", "list", consumer.id, "--limit", "1"],
      as,
    );
    expect(first.items).toHaveLength(1);
    expect(first.nextCursor).not.toBeNull();
    const all = await keygateJson<Page<Delivery>>(
      ["webhooks", "list", consumer.id, "--all", "--limit", "1"],
      as,
    );
    expect(all.items).toHaveLength(2);
    expect(all.nextCursor).toBeNull();

    const badStatus = await keygate(["webhooks", "list", consumer.id, "--status", "lost"], as);
    expect(badStatus.code).toBe(2);
    expect(badStatus.stderr).toContain("Allowed choices are pending, delivered, failed");
  });

  it("redelivers an event as a new delivery, with the same webhook-id", async () => {
    const consumer = await consumerWithWebhook();
    await issueKey(consumer.id);
    const [original] = (await keygateJson<Page<Delivery>>(["webhooks", "list", consumer.id], as))
      .items;
    const again = await keygateJson<Delivery>(
      ["webhooks", "redeliver", consumer.id, original!.id],
      as,
    );
    expect(again).toMatchObject({
      redeliveryOf: original!.id,
      eventId: original!.eventId,
      type: "key.created",
    });
    expect(again.id).not.toBe(original!.id);

    const table = await keygate(["webhooks", "redeliver", consumer.id, original!.id], as);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(new RegExp(`^redelivery of\\s+${original!.id}$`, "m"));
    expect(table.stdout).toMatch(/^event\s+key\.created$/m);

    const listed = await keygateJson<Page<Delivery>>(["webhooks", "list", consumer.id], as);
    expect(listed.items.filter((d) => d.eventId === original!.eventId)).toHaveLength(3);
  });

  it("unknown consumer or delivery: not_found, exit 1", async () => {
    const listed = await keygate(["webhooks", "list", "csm_doesnotexist"], as);
    expect(listed.code).toBe(1);
    expect(listed.stderr).toMatch(/keygate: not_found \(404\): No consumer with that id\./);
    expect(listed.stderr).toMatch(/request id: req_/);
    expect(listed.stdout).toBe("");

    const consumer = await consumerWithWebhook();
    const redelivered = await keygate(["webhooks", "redeliver", consumer.id, "whd_nothere"], as);
    expect(redelivered.code).toBe(1);
    expect(redelivered.stderr).toMatch(/keygate: not_found \(404\): no such webhook delivery/);

    const otherConsumer = await keygate(
      ["webhooks", "redeliver", "csm_doesnotexist", "whd_nothere", "--json"],
      as,
    );
    expect(otherConsumer.code).toBe(1);
    expect(otherConsumer.stderr).toMatch(/keygate: not_found \(404\)/);
    expect(otherConsumer.stdout).toBe("");

    const missing = await keygate(["webhooks", "redeliver", consumer.id], as);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("missing required argument 'delivery-id'");
  });
});

describe("keygate consumers rotate-webhook-secret", () => {
  it("prints a new secret once; with --overlap 0 only the new one signs", async () => {
    const consumer = await consumerWithWebhook();
    const result = await keygate(
      ["consumers", "rotate-webhook-secret", consumer.id, "--overlap", "0"],
      as,
    );
    expect(result.code).toBe(0);
    const secrets = secretLines(result.stdout);
    expect(secrets).toHaveLength(1);
    const secret = secrets[0]!;
    expect(secret).not.toBe(consumer.webhookSecret);
    expect(result.stderr).toContain("only time the webhook secret is shown");
    expect(result.stdout).toMatch(/^old secret\s+no longer signs$/m);

    await issueKey(consumer.id);
    const webhook = await nthReceived(consumer.path, 1);
    expect(verifies(secret, webhook)).toBe(true);
    expect(verifies(consumer.webhookSecret, webhook)).toBe(false);
  });

  it("keeps the old secret signing for --overlap, or the server's default day", async () => {
    const consumer = await consumerWithWebhook();
    const byDefault = await keygateJson<{ webhookSecret: string; previousSecretRetiresAt: string }>(
      ["consumers", "rotate-webhook-secret", consumer.id],
      as,
    );
    expect(byDefault.webhookSecret).toMatch(WEBHOOK_SECRET);
    expect(byDefault.previousSecretRetiresAt).not.toBeNull();

    const hour = await keygateJson<{ webhookSecret: string; previousSecretRetiresAt: string }>(
      ["consumers", "rotate-webhook-secret", consumer.id, "--overlap", "1h"],
      as,
    );
    expect(hour.webhookSecret).not.toBe(byDefault.webhookSecret);
    expect(Date.parse(hour.previousSecretRetiresAt)).toBeLessThan(
      Date.parse(byDefault.previousSecretRetiresAt),
    );

    const table = await keygate(["consumers", "rotate-webhook-secret", consumer.id], as);
    expect(table.stdout).toMatch(/^old secret\s+signs beside the new one until \d{4}-/m);
  });

  it("errors: unknown consumer, an overlap past 7 days, a malformed duration", async () => {
    const unknown = await keygate(["consumers", "rotate-webhook-secret", "csm_doesnotexist"], as);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/keygate: not_found \(404\): no such consumer/);
    expect(unknown.stdout + unknown.stderr).not.toContain("whsec_");

    const consumer = await consumerWithWebhook();
    const tooLong = await keygate(
      ["consumers", "rotate-webhook-secret", consumer.id, "--overlap", "8d"],
      as,
    );
    expect(tooLong.code).toBe(1);
    expect(tooLong.stderr).toMatch(/validation_failed \(400\)/);

    const malformed = await keygate(
      ["consumers", "rotate-webhook-secret", consumer.id, "--overlap", "soon"],
      as,
    );
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toContain("expected seconds or a duration");
  });
});

describe("keygate maintenance run", () => {
  it("prints the pass's report, and its JSON with --json", async () => {
    const result = await keygate(["maintenance", "run"], as);
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^changes\s+\d+$/m);
    expect(result.stdout).toMatch(/^keys checked\s+\d+ \(walk (complete|continues next run)\)$/m);
    expect(result.stdout).toMatch(/^failures\s+0$/m);

    const report = await keygateJson<{
      changes: number;
      startedAt: string;
      reconciliation: { keysChecked: number; fixed: unknown[] };
      failures: unknown[];
    }>(["maintenance", "run"], as);
    expect(report).toMatchObject({ failures: [] });
    expect(typeof report.changes).toBe("number");
    expect(typeof report.reconciliation.keysChecked).toBe("number");
    expect(Number.isNaN(Date.parse(report.startedAt))).toBe(false);
  });

  it("a refused token: exit 1 with the problem, no report", async () => {
    const result = await keygate(["maintenance", "run", "--json"], {
      url: kg.url,
      token: "not-the-admin-token-0123456789",
    });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/keygate: invalid_key \(401\): /);
    expect(result.stdout).toBe("");
  });
});
