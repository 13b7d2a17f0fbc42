import { parseArgs } from "node:util";

/** How the soak plays many client addresses on loopback (see client.ts). */
export type ClientIpMode = "auto" | "socket" | "header";

/** Command-line flags of `npm run soak`. */
export interface SoakOptions {
  seconds: number;
  consumers: number;
  keys: number;
  /** requests in flight at most: traffic, management calls and sweeps together */
  concurrency: number;
  /** client addresses that share the keys' traffic (several bots behind a few NATs) */
  addresses: number;
  /** mean pause between two operations on one key */
  opIntervalMs: number;
  /** how long after an operation's answer a request on that key is checked (contract §5: 0) */
  settleMs: number;
  clientIp: ClientIpMode;
  /** the grace of a planned rotation, at least an hour so no grace ends during a run */
  graceSeconds: number;
  /** the Worker's entry module to bundle; null: this checkout's src/index.ts */
  worker: string | null;
  /** keep the temporary folder (worker bundle, persistence, server log) */
  keep: boolean;
  help: boolean;
}

export const USAGE = `Usage: npm run soak [-- options]

Runs Keygate locally (miniflare, own port and persistence folder, echo origin), churns key
rotations on many keys while sending traffic on every key from several client addresses,
restarts the server midway, and checks every answer against a model built from the management
API's answers. Ends with "N passed, N failed"; the exit code is 1 on any violation.

Options:
  --seconds <n>         seconds of churn (default 60); the restart comes at half time and
                        its window (stop, start, sweep) is not counted in them
  --consumers <n>       consumers (default 4)
  --keys <n>            keys, spread over the consumers (default 30)
  --concurrency <n>     requests in flight at most (default 16; 4 of them for management)
  --addresses <n>       client addresses on loopback (default 12)
  --op-interval-ms <n>  mean pause between two operations on one key (default 1500)
  --settle-ms <n>       wait after an operation's answer before checking its key (default 0)
  --client-ip <mode>    auto | socket (bind 127.x.y.z) | header (send CF-Connecting-IP);
                        auto binds sockets when the system allows it (default auto)
  --grace-seconds <n>   grace of planned rotations (default 7200, at least 3600)
  --worker <file>       bundle this Worker entry instead of src/index.ts (e.g. another
                        revision's src/, extracted under this checkout so packages resolve)
  --keep                keep the temporary folder and print where it is
  -h, --help            show this text`;

function integer(name: string, text: string | undefined, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`--${name} must be an integer of at least ${min}, got ${JSON.stringify(text)}`);
  }
  return value;
}

export function parseOptions(argv: string[]): SoakOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      seconds: { type: "string" },
      consumers: { type: "string" },
      keys: { type: "string" },
      concurrency: { type: "string" },
      addresses: { type: "string" },
      "op-interval-ms": { type: "string" },
      "settle-ms": { type: "string" },
      "client-ip": { type: "string" },
      "grace-seconds": { type: "string" },
      worker: { type: "string" },
      keep: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const clientIp = values["client-ip"] ?? "auto";
  if (clientIp !== "auto" && clientIp !== "socket" && clientIp !== "header") {
    throw new Error(`--client-ip takes auto, socket or header, got ${clientIp}`);
  }
  const options: SoakOptions = {
    seconds: integer("seconds", values.seconds, 60, 4),
    consumers: integer("consumers", values.consumers, 4, 1),
    keys: integer("keys", values.keys, 30, 1),
    concurrency: integer("concurrency", values.concurrency, 16, 6),
    addresses: integer("addresses", values.addresses, 12, 1),
    opIntervalMs: integer("op-interval-ms", values["op-interval-ms"], 1500, 1),
    settleMs: integer("settle-ms", values["settle-ms"], 0, 0),
    clientIp,
    graceSeconds: integer("grace-seconds", values["grace-seconds"], 7200, 3600),
    worker: values.worker ?? null,
    keep: values.keep,
    help: values.help,
  };
  if (options.keys < options.consumers) {
    throw new Error(`--keys (${options.keys}) must be at least --consumers (${options.consumers})`);
  }
  if (options.addresses > 250) throw new Error("--addresses is at most 250");
  return options;
}
