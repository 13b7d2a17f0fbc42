import { Option, type Command } from "commander";
import type { Page, WebhookDelivery } from "../api-types.js";
import { contextOf } from "../context.js";
import { fields, print, table } from "../output.js";
import { fetchPage, noteNextPage, withPageOptions, type PageOptions } from "../pages.js";
import { consumerPath } from "../paths.js";

const webhooksPath = (consumerId: string) => `${consumerPath(consumerId)}/webhooks`;

/**
 * How the last attempt went: its error (the receiver's status in fixed words, `HTTP 500: not
 * a 2xx answer`, never its body; or why no answer came, or why it was not sent), else the
 * status of a delivery; null before the first attempt.
 */
function lastResult(delivery: WebhookDelivery): string | null {
  if (delivery.lastError) return delivery.lastError;
  return delivery.lastStatusCode === null ? null : `HTTP ${delivery.lastStatusCode}`;
}

function deliveryFields(delivery: WebhookDelivery): string[] {
  return fields([
    ["id", delivery.id],
    ["consumer", delivery.consumerId],
    ["event", delivery.type],
    ["webhook-id", delivery.eventId],
    ["status", delivery.status],
    ["attempts", delivery.attempts],
    ["last attempt", delivery.lastAttemptAt],
    ["last result", lastResult(delivery)],
    ["next attempt", delivery.nextAttemptAt],
    ["delivered", delivery.deliveredAt],
    ["redelivery of", delivery.redeliveryOf],
    ["created", delivery.createdAt],
  ]);
}

interface ListOptions extends PageOptions {
  status?: WebhookDelivery["status"];
}

/** `keygate webhooks …`: what Keygate sent a consumer, and sending it again. */
export function registerWebhooks(program: Command): void {
  const webhooks = program
    .command("webhooks")
    .description("list a consumer's webhook deliveries and redeliver them");

  withPageOptions(
    webhooks
      .command("list")
      .description("a consumer's webhook deliveries, newest first")
      .argument("<consumer-id>", "consumer id (csm_…)")
      .addOption(
        new Option("--status <status>", "only deliveries in this state").choices([
          "pending",
          "delivered",
          "failed",
        ]),
      ),
  ).action(async (consumerId: string, options: ListOptions, command: Command) => {
    const ctx = contextOf(command);
    const page = await fetchPage<WebhookDelivery>(ctx, webhooksPath(consumerId), options, {
      status: options.status,
    });
    ctx.emit(page, (p: Page<WebhookDelivery>) => {
      print(
        ...table(
          ["id", "event", "status", "attempts", "last result", "next attempt"],
          p.items.map((d) => [d.id, d.type, d.status, d.attempts, lastResult(d), d.nextAttemptAt]),
        ),
      );
      noteNextPage(p);
    });
  });

  webhooks
    .command("redeliver")
    .description("send a delivery's event again, as a new delivery with its own attempts")
    .argument("<consumer-id>", "consumer id (csm_…)")
    .argument("<delivery-id>", "delivery id (whd_…)")
    .action(async (consumerId: string, deliveryId: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const delivery = await ctx.api<WebhookDelivery>(
        "POST",
        `${webhooksPath(consumerId)}/${encodeURIComponent(deliveryId)}/redeliver`,
        { body: {} },
      );
      ctx.emit(delivery, (d) => print(...deliveryFields(d)));
    });
}
