/**
 * The answer of `POST /verify` and of the `KeygateService.verify` RPC. It imports nothing, so
 * the CLI, type-checked for Node by tsconfig.node.json, reads the same type.
 */
export interface KeyCheck {
  valid: boolean;
  code?: string;
  keyId: string | null;
  consumerId: string | null;
  version: number | null;
  scopes: string[];
  expiresAt: string | null;
  graceUntil: string | null;
  ratelimit?: { policy: string; state: string };
}
