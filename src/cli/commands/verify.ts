import { Option, type Command } from "commander";
import { collect, parseDuration } from "../arguments.js";
import type { AccessToken, VerifyResult } from "../api-types.js";
import { secretFrom } from "../confirm.js";
import { contextOf } from "../context.js";
import { EXIT } from "../errors.js";
import { colors, fields, note, print } from "../output.js";

/** `keygate verify` and `keygate token`: what a key is worth, as a service would ask. */
export function registerVerify(program: Command): void {
  program
    .command("verify")
    .description("check a key as a service would (POST /verify); exit 1 if it does not verify")
    .argument("[key]", "the secret; '-' or left out: read it from stdin")
    .addOption(
      new Option("--scope <scope>", "a scope the key must hold (repeatable)").argParser(collect),
    )
    .action(
      async (argument: string | undefined, options: { scope?: string[] }, command: Command) => {
        const ctx = contextOf(command);
        const key = await secretFrom(argument, "key");
        const result = await ctx.api<VerifyResult>("POST", "/verify", {
          body: { key, ...(options.scope ? { scopes: options.scope } : {}) },
        });
        ctx.emit(result, (r) =>
          print(
            ...fields([
              ["valid", r.valid ? colors.green("yes") : colors.red(`no (${r.code ?? "invalid"})`)],
              ["key", r.keyId],
              ["consumer", r.consumerId],
              ["version", r.version],
              ["scopes", r.scopes],
              ["expires", r.expiresAt],
              ["grace until", r.graceUntil],
              ["rate limit", r.ratelimit ? `${r.ratelimit.policy}; ${r.ratelimit.state}` : null],
            ]),
          ),
        );
        if (!result.valid) process.exitCode = EXIT.failure;
      },
    );

  program
    .command("token")
    .description("exchange a key for a short-lived access token (POST /token; no admin token)")
    .argument("[key]", "the secret; '-' or left out: read it from stdin")
    .addOption(
      new Option("--scope <scope>", "narrow the token to these scopes (repeatable)").argParser(
        collect,
      ),
    )
    .addOption(
      new Option("--expires-in <duration>", "lifetime (capped by the server)").argParser(
        parseDuration,
      ),
    )
    .action(
      async (
        argument: string | undefined,
        options: { scope?: string[]; expiresIn?: number },
        command: Command,
      ) => {
        const ctx = contextOf(command);
        const key = await secretFrom(argument, "key");
        const body: Record<string, unknown> = {};
        if (options.scope) body.scope = options.scope.join(" ");
        if (options.expiresIn !== undefined) body.expiresIn = options.expiresIn;
        const token = await ctx.client.request<AccessToken>("POST", "/_keygate/v1/token", {
          body,
          headers: { Authorization: `Bearer ${key}` },
        });
        ctx.emit(token, (t) => {
          print(t.access_token);
          note(`${t.token_type} token, scope "${t.scope}", expires in ${t.expires_in}s`);
        });
      },
    );
}
