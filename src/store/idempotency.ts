/** How long a kept response answers replays of its `Idempotency-Key` (routes/idempotency.ts). */
export const IDEMPOTENCY_TTL_MS = 24 * 3_600_000;
