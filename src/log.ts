/**
 * Keygate's log lines: one JSON object per line, `event` first, so Workers Logs and
 * `wrangler tail` can filter on it. An `error` field is written as its message. Never pass a
 * secret, a hash or a token here: ids only.
 */
export function logError(event: string, fields: Record<string, unknown> = {}): void {
  console.error(line(event, fields));
}

/** An informational line, in the same shape as `logError`'s. */
export function logInfo(event: string, fields: Record<string, unknown> = {}): void {
  console.info(line(event, fields));
}

function line(event: string, fields: Record<string, unknown>): string {
  const { error, ...rest } = fields;
  return JSON.stringify(
    error === undefined ? { event, ...rest } : { event, ...rest, error: String(error) },
  );
}
