import { join } from "node:path";
import { Miniflare } from "miniflare";
import { applyMigrations, KEYGATE_RESOURCES } from "../e2e/support/worker.js";

/**
 * The soak's Keygate server, run as a child process so that it can be stopped with SIGTERM
 * and started again on the same persistence folder. It is `startKeygate`'s Miniflare (the
 * e2e helper) with persistence added: the runtime and bindings are the helper's own
 * (`KEYGATE_RESOURCES`), only the state is kept on disk here.
 *
 * Arguments: `<dir> <port> <migrate: 0|1>`; the Worker bundle is `<dir>/worker/index.js`,
 * state goes to `<dir>/state/`. The admin token comes in `SOAK_ADMIN_TOKEN` (not in argv,
 * which `ps` shows). Prints one line `{"ready":"http://127.0.0.1:<port>"}` when serving.
 */
export async function serve(argv: string[]): Promise<void> {
  const [dir, portText, migrate] = argv;
  const adminToken = process.env.SOAK_ADMIN_TOKEN;
  if (!dir || !portText || !adminToken) {
    throw new Error("usage: server <dir> <port> <migrate>, SOAK_ADMIN_TOKEN set");
  }
  const workerDir = join(dir, "worker");
  const state = join(dir, "state");
  const mf = new Miniflare({
    modules: true,
    modulesRoot: workerDir,
    scriptPath: join(workerDir, "index.js"),
    ...KEYGATE_RESOURCES,
    kvPersist: join(state, "kv"),
    d1Persist: join(state, "d1"),
    durableObjectsPersist: join(state, "do"),
    bindings: {
      ADMIN_TOKEN: adminToken,
      ORIGIN_URL: "",
      // one strict route: those requests ask the consumer's coordinator, the rest trust KV
      ROUTE_RULES: JSON.stringify([{ path: "/strict/*", strict: true }]),
    },
    host: "127.0.0.1",
    port: Number(portText),
    // no network: a placeholder `request.cf` rather than one fetched from Cloudflare
    cf: false,
  });
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await mf.dispose().catch(() => undefined);
    process.exit(0);
  };
  process.on("SIGTERM", () => void stop());
  process.on("SIGINT", () => void stop());
  // the soak died without stopping us: do not linger
  process.on("disconnect", () => void stop());
  const ready = await mf.ready;
  if (migrate === "1") await applyMigrations(mf);
  process.stdout.write(`${JSON.stringify({ ready: ready.origin })}\n`);
}
