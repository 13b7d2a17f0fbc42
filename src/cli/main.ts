import { Command, CommanderError, Option } from "commander";
import { VERSION } from "../version.js";
import { DEFAULT_URL } from "./client.js";
import { registerAudit } from "./commands/audit.js";
import { registerConsumers } from "./commands/consumers.js";
import { registerDoctor } from "./commands/doctor.js";
import { registerKeys } from "./commands/keys.js";
import { registerMaintenance } from "./commands/maintenance.js";
import { registerRotations } from "./commands/rotations.js";
import { registerSetup } from "./commands/setup.js";
import { registerUsage } from "./commands/usage.js";
import { registerVerify } from "./commands/verify.js";
import { registerWebhooks } from "./commands/webhooks.js";
import { CliError, EXIT } from "./errors.js";
import { colors } from "./output.js";

/** The `keygate` command: Keygate's management API and its wrangler set-up, from a terminal. */
export function buildProgram(): Command {
  const program = new Command("keygate")
    .description(
      "Manage a Keygate deployment: consumers, keys, rotations, webhooks, audit, usage, maintenance, set-up.",
    )
    .version(VERSION, "-v, --version")
    .addOption(
      new Option("--url <url>", "Keygate's base URL").env("KEYGATE_URL").default(DEFAULT_URL),
    )
    .addOption(
      new Option("--token <token>", "management credential (ADMIN_TOKEN)").env(
        "KEYGATE_ADMIN_TOKEN",
      ),
    )
    .option("--json", "print the API's JSON (one document per line) instead of tables")
    .option("--no-color", "no colours (also: NO_COLOR)")
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError("(add --help for usage)")
    .exitOverride()
    .configureOutput({
      outputError: (text, write) => write(colors.red(text)),
    })
    .addHelpText(
      "after",
      `
Exit codes: 0 ok, 1 failure (API or network error, failed check, invalid key, timeout,
failed maintenance step), 2 usage error (bad arguments, no token), 130 interrupted.`,
    );
  registerConsumers(program);
  registerKeys(program);
  registerRotations(program);
  registerWebhooks(program);
  registerAudit(program);
  registerUsage(program);
  registerMaintenance(program);
  registerVerify(program);
  registerSetup(program);
  registerDoctor(program);
  return program;
}

/** Runs the command line; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // commander has printed the message (or the help) already
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version") {
        return EXIT.ok;
      }
      // "commander.help" is help shown for want of a command: a usage error
      return EXIT.usage;
    }
    if (error instanceof CliError) {
      process.stderr.write(`${colors.red("keygate:")} ${error.message}\n`);
      for (const line of error.details) process.stderr.write(`${line}\n`);
      return error.exitCode;
    }
    process.stderr.write(`${colors.red("keygate: unexpected error:")} ${String(error)}\n`);
    if (error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`);
    return EXIT.failure;
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`keygate: ${String(error)}\n`);
    process.exitCode = EXIT.failure;
  },
);
