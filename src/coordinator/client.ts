import type { Bindings } from "../env";
import type { KeyCoordinator } from "./key-coordinator";

/** The coordinator's RPC surface, typed as its methods (the stub's mapped types lose generics). */
export type CoordinatorApi = Pick<
  KeyCoordinator,
  | "createConsumer"
  | "updateConsumer"
  | "deleteConsumer"
  | "createKey"
  | "updateKey"
  | "rotateKey"
  | "revokeKey"
  | "completeRotation"
  | "rollbackRotation"
  | "extendRotation"
  | "rotationUsage"
  | "checkSecret"
  | "recordUsage"
  | "lease"
  | "pendingUsage"
  | "checkVersion"
  | "emitEvent"
  | "redeliverWebhook"
  | "rotateWebhookSecret"
>;

/** The stub of the consumer's `KeyCoordinator` (one instance per consumer id). */
export function coordinatorOf(env: Bindings, consumerId: string): CoordinatorApi {
  return env.COORDINATOR.get(env.COORDINATOR.idFromName(consumerId)) as unknown as CoordinatorApi;
}
