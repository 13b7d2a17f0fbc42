import { createApp } from "./app";
import type { Bindings } from "./env";

export { KeyCoordinator } from "./coordinator/key-coordinator";

const app = createApp();

/** The Worker: the front door and the management API. */
export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Bindings>;
