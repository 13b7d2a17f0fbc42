import type { Command } from "commander";
import { baseUrlOf, KeygateClient, type RequestOptions } from "./client.js";
import { during, printJson } from "./output.js";

/** The options every command takes (declared on the program, accepted after any command). */
export interface GlobalOptions {
  url: string;
  token?: string;
  json?: boolean;
}

/** What a command runs with: how to call Keygate and how to write its answer. */
export class CliContext {
  readonly json: boolean;
  readonly client: KeygateClient;

  constructor(options: GlobalOptions) {
    this.json = options.json === true;
    this.client = new KeygateClient(baseUrlOf(options.url), options.token);
  }

  /** A management API call, with a spinner while it is slow (on a terminal, not `--json`). */
  api<T>(method: string, path: string, options: RequestOptions = {}): Promise<T> {
    return during(`${method} ${path}`, this.json, () =>
      this.client.management<T>(method, path, options),
    );
  }

  /** Writes `value` as JSON with `--json`, else runs `human`. */
  emit<T>(value: T, human: (value: T) => void): void {
    if (this.json) printJson(value);
    else human(value);
  }
}

/** The context of a command from its options and the program's. */
export function contextOf(command: Command): CliContext {
  return new CliContext(command.optsWithGlobals<GlobalOptions>());
}
