import { Option, type Command } from "commander";
import {
  bodyOf,
  orNone,
  parseDuration,
  parseJsonObject,
  parsePositiveInt,
  parseRateLimit,
} from "../arguments.js";
import type { Consumer, Page, RotatedWebhookSecret } from "../api-types.js";
import { confirmOrRefuse } from "../confirm.js";
import { contextOf } from "../context.js";
import { UsageError } from "../errors.js";
import { cell, fields, note, print, printSecret, rateLimitText, table } from "../output.js";
import { fetchPage, noteNextPage, withPageOptions, type PageOptions } from "../pages.js";
import { consumerPath } from "../paths.js";

function consumerFields(consumer: Consumer): string[] {
  return fields([
    ["id", consumer.id],
    ["name", consumer.name],
    ["rate limit", rateLimitText(consumer.rateLimit)],
    ["monthly quota", consumer.monthlyQuota],
    ["webhook url", consumer.webhookUrl],
    ["metadata", consumer.metadata],
    ["created", consumer.createdAt],
    ["updated", consumer.updatedAt],
  ]);
}

/** A consumer, and its webhook secret when this answer is the one that shows it (once). */
function printConsumer({ webhookSecret, ...consumer }: Consumer): void {
  print(...consumerFields(consumer));
  if (webhookSecret !== undefined) printSecret(webhookSecret, "the webhook secret");
}

const CONSUMER_FIELDS = ["name", "metadata", "rateLimit", "monthlyQuota", "webhookUrl"] as const;

/** `keygate consumers …`: the people and services keys are issued to. */
export function registerConsumers(program: Command): void {
  const consumers = program
    .command("consumers")
    .description("create, list, show, update and delete consumers; rotate their webhook secrets");

  consumers
    .command("create")
    .description("create a consumer")
    .argument("<name>", "the consumer's name")
    .addOption(
      new Option(
        "--rate-limit <limit/period>",
        "default rate limit of its keys, e.g. 100/60",
      ).argParser(parseRateLimit),
    )
    .addOption(
      new Option("--monthly-quota <n>", "requests per calendar month (UTC)").argParser(
        parsePositiveInt,
      ),
    )
    .option(
      "--webhook-url <url>",
      "where Keygate sends this consumer's webhooks (its signing secret is printed once)",
    )
    .addOption(
      new Option("--metadata <json>", "a JSON object kept with it").argParser(parseJsonObject),
    )
    .action(async (name: string, options: object, command: Command) => {
      const ctx = contextOf(command);
      const consumer = await ctx.api<Consumer>("POST", "/consumers", {
        body: bodyOf({ ...options, name }, CONSUMER_FIELDS),
      });
      ctx.emit(consumer, printConsumer);
    });

  withPageOptions(consumers.command("list").description("list consumers, newest first")).action(
    async (options: PageOptions, command: Command) => {
      const ctx = contextOf(command);
      const page = await fetchPage<Consumer>(ctx, "/consumers", options);
      ctx.emit(page, (p: Page<Consumer>) => {
        print(
          ...table(
            ["id", "name", "rate limit", "quota", "created"],
            p.items.map((c) => [
              c.id,
              c.name,
              rateLimitText(c.rateLimit),
              c.monthlyQuota,
              c.createdAt,
            ]),
          ),
        );
        noteNextPage(p);
      });
    },
  );

  consumers
    .command("get")
    .description("show a consumer")
    .argument("<id>", "consumer id (csm_…)")
    .action(async (id: string, _options: unknown, command: Command) => {
      const ctx = contextOf(command);
      const consumer = await ctx.api<Consumer>("GET", consumerPath(id));
      ctx.emit(consumer, (c) => print(...consumerFields(c)));
    });

  consumers
    .command("update")
    .description("change a consumer's name, limits, webhook or metadata ('none' clears a field)")
    .argument("<id>", "consumer id (csm_…)")
    .option("--name <name>", "new name")
    .addOption(
      new Option("--rate-limit <limit/period>", "e.g. 100/60, or none").argParser(
        orNone(parseRateLimit),
      ),
    )
    .addOption(
      new Option("--monthly-quota <n>", "requests per month, or none").argParser(
        orNone(parsePositiveInt),
      ),
    )
    .addOption(
      new Option("--webhook-url <url>", "webhook URL, or none").argParser(orNone((v) => v)),
    )
    .addOption(
      new Option("--metadata <json>", "a JSON object, or none").argParser(orNone(parseJsonObject)),
    )
    .action(async (id: string, options: object, command: Command) => {
      const body = bodyOf(options, CONSUMER_FIELDS);
      if (Object.keys(body).length === 0) {
        throw new UsageError("nothing to update: pass at least one of the options (see --help)");
      }
      const ctx = contextOf(command);
      const consumer = await ctx.api<Consumer>("PATCH", consumerPath(id), { body });
      ctx.emit(consumer, printConsumer);
    });

  consumers
    .command("delete")
    .description("delete a consumer and revoke every key of it")
    .argument("<id>", "consumer id (csm_…)")
    .option("-y, --yes", "do not ask for confirmation")
    .action(async (id: string, options: { yes?: boolean }, command: Command) => {
      const ctx = contextOf(command);
      await confirmOrRefuse(`Delete consumer ${id} and revoke all its keys?`, options.yes);
      const result = await ctx.api<{ id: string; deleted: true; revokedKeys: string[] }>(
        "DELETE",
        consumerPath(id),
      );
      ctx.emit(result, (r) => {
        print(`deleted ${r.id}`);
        note(`revoked keys: ${cell(r.revokedKeys)}`);
      });
    });

  consumers
    .command("rotate-webhook-secret")
    .description("replace the consumer's webhook signing secret; prints the new one once")
    .argument("<id>", "consumer id (csm_…)")
    .addOption(
      new Option(
        "--overlap <duration>",
        "how long the old secret keeps signing beside the new one, up to 7d; 0: it stops at once (default: the server's, 1d)",
      ).argParser(parseDuration),
    )
    .action(async (id: string, options: { overlap?: number }, command: Command) => {
      const ctx = contextOf(command);
      const rotated = await ctx.api<RotatedWebhookSecret>(
        "POST",
        `${consumerPath(id)}/webhook-secret/rotate`,
        { body: options.overlap === undefined ? {} : { keepPreviousSeconds: options.overlap } },
      );
      ctx.emit(rotated, (r) => {
        print(
          ...fields([
            ["consumer", r.consumerId],
            [
              "old secret",
              r.previousSecretRetiresAt
                ? `signs beside the new one until ${r.previousSecretRetiresAt}`
                : "no longer signs",
            ],
          ]),
        );
        printSecret(r.webhookSecret, "the webhook secret");
      });
    });
}
