import { env, runInDurableObject } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { sendWebhook } from "../../src/webhooks/sender";
import { admin, newKey } from "../support/api";
import { consumerWithWebhook, deliverDue, endpoint, makeDue, received, stubOf } from "./support";

const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/** A path of its own on `host`, where the receiver would record anything sent. */
function at(origin: string): string {
  return `${origin}/${crypto.randomUUID()}`;
}

describe("webhooks: the webhookUrl rule at delivery", () => {
  it.each([
    ["http: to a public host, as accepted before the rule", at("http://hooks.test")],
    ["a private address", at("https://10.0.0.1")],
    ["the metadata address", at("https://169.254.169.254")],
    ["a decimal loopback", at("https://2130706433")],
    ["an IPv4-mapped loopback", at("https://[::ffff:127.0.0.1]")],
    ["userinfo", at("https://user:pass@hooks.test")],
    ["the metadata name", at("https://metadata.google.internal")],
  ])("does not fetch %s, and fails the attempt saying why", async (_label, url) => {
    const outcome = await sendWebhook(
      url,
      { eventId: "evt_x", payload: "{}" },
      [SECRET],
      Date.now(),
    );
    expect(outcome).toMatchObject({ ok: false, statusCode: null, url });
    expect(outcome.error).toMatch(/^not sent: webhookUrl must /);
    expect(await received(url)).toEqual([]);
  });

  it("a consumer's stored private URL is not fetched by the coordinator", async () => {
    const consumer = await consumerWithWebhook();
    const stored = at("https://10.0.0.1");
    // as a URL stored before the rule: written past the API, and the coordinator reset so it
    // reads the consumer again (workerd logs the abort as an uncaught exception; expected)
    await env.DB.prepare("UPDATE consumers SET webhook_url = ? WHERE id = ?")
      .bind(stored, consumer.id)
      .run();
    await runInDurableObject(stubOf(consumer.id), (_instance, state) =>
      state.abort("reload"),
    ).catch(() => undefined);
    await newKey(["prices:read"], {}, consumer.id);
    const [row] = await deliverDue(consumer.id);
    expect(row).toMatchObject({
      status: "pending",
      attempts: 1,
      url: stored,
      last_status_code: null,
      last_error: "not sent: webhookUrl must not point at 10.0.0.1: a private address",
    });
    expect(await received(stored)).toEqual([]);
    expect(await received(consumer.url)).toEqual([]);

    // once the consumer has a URL the rule accepts, the retry goes there
    const fixed = endpoint();
    const patched = await admin.patch(`/consumers/${consumer.id}`, { webhookUrl: fixed });
    expect(patched.status).toBe(200);
    await makeDue(row!.id);
    const [retried] = await deliverDue(consumer.id);
    expect(retried).toMatchObject({ status: "delivered", attempts: 2, url: fixed });
    expect(await received(fixed)).toHaveLength(1);
  });

  it("a failed delivery records the status and fixed words, never the receiver's body", async () => {
    const consumer = await consumerWithWebhook(endpoint("status=500"));
    await newKey(["prices:read"], {}, consumer.id);
    const [row] = await deliverDue(consumer.id);
    expect(row).toMatchObject({
      last_status_code: 500,
      last_error: "HTTP 500: not a 2xx answer",
    });
    // the receiver answered "receiver says 500" (test/webhooks/receiver.mjs)
    expect((await received(consumer.url))[0]!.answered).toBe(500);
    const listed = await admin.get(`/consumers/${consumer.id}/webhooks`);
    expect(JSON.stringify(listed.body)).not.toContain("receiver says");
  });
});
