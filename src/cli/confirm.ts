import { createInterface } from "node:readline/promises";
import { UsageError } from "./errors.js";

/**
 * Asks before something that cannot be undone, unless `--yes`. Without a terminal to ask
 * on, refuses: a script must say `--yes`.
 */
export async function confirmOrRefuse(question: string, yes: boolean | undefined): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new UsageError(`${question} Pass --yes to confirm (no terminal to ask on).`);
  }
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await prompt.question(`${question} [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) throw new UsageError("cancelled");
  } finally {
    prompt.close();
  }
}

/** A secret from the argument, or from stdin when the argument is `-` or left out. */
export async function secretFrom(argument: string | undefined, what: string): Promise<string> {
  if (argument !== undefined && argument !== "-") return argument;
  if (process.stdin.isTTY) {
    throw new UsageError(`no ${what}: pass it as the argument, or pipe it on stdin`);
  }
  let text = "";
  for await (const chunk of process.stdin) text += String(chunk);
  const secret = text.trim();
  if (secret === "") throw new UsageError(`no ${what} on stdin`);
  return secret;
}
