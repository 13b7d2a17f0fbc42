import { env } from "cloudflare:workers";
import { createApp } from "./app";
import { configFor } from "./config";
import type { Bindings } from "./env";
import { scheduledMaintenance } from "./maintenance/run";
import { signerOf } from "./tokens/token-signer";
import { logError, logInfo } from "./log";

export { KeyCoordinator } from "./coordinator/key-coordinator";
export { TokenSigner } from "./tokens/token-signer";
export { KeygateService } from "./rpc/keygate-service";

const app = createApp();

// The configuration is parsed while the isolate starts (on Cloudflare, often during the TLS
// handshake) rather than by its first request. An invalid one is reported by each request.
try {
  configFor(env as Bindings);
} catch {
  // answered as 503 by every request, and listed by GET /_keygate/health
}

/** The Worker: the front door and the management API. */
export default {
  fetch: app.fetch,
  /**
   * Cron: rotate signing keys when due and drop retired ones whose tokens have expired; and
   * scheduled maintenance (src/maintenance): close rotations whose grace ended, expire keys,
   * send reminders, reconcile KV with D1. Each runs even when the other fails.
   */
  async scheduled(controller, env, ctx) {
    ctx.waitUntil(
      signerOf(env)
        .maintain()
        .then(
          (result) => logInfo("signing_keys_maintained", { ...result }),
          (error: unknown) => {
            logError("maintenance_failed", { error });
            throw error; // the cron run is recorded as failed; the next one tries again
          },
        ),
    );
    // logs its own report; a failed step fails the cron run, and the next run tries again
    ctx.waitUntil(scheduledMaintenance(env, controller.scheduledTime));
  },
} satisfies ExportedHandler<Bindings>;
