import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildCli, keygate, keygateJson, type CliOptions } from "./cli-harness.js";
import { waitFor } from "./support/http.js";
import { startKeygate, type Keygate } from "./support/worker.js";

/**
 * The built `keygate` command's webhook commands against Keygate in miniflare, with a Node
 * receiver on 127.0.0.1 that answers every webhook 204: the webhook secret printed once (and
 * the one printed verifies what Keygate sends).
 */

const WEBHOOK_SECRET = /^whsec_[A-Za-z0-9+/]+=*$/;

interface Consumer {
  id: string;
  webhookUrl: string | null;
  webhookSecret?: string;
}
interface Received {
  headers: IncomingHttpHeaders;
  body: string;
}

let kg: Keygate;
let as: CliOptions;
let receiver: Server;
let receiverUrl: string;
/** requests the receiver got, by path (one path per consumer) */
const received = new Map<string, Received[]>();

beforeAll(async () => {
  await buildCli();
  kg = await startKeygate();
  as = { url: kg.url, token: kg.adminToken };
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      const path = req.url ?? "/";
      received.set(path, [...(received.get(path) ?? []), { headers: req.headers, body }]);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});
afterAll(async () => {
  receiver?.closeAllConnections();
  await new Promise((resolve) => receiver?.close(resolve));
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
