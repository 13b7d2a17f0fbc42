import { Webhook } from "standardwebhooks";
import { VERSION } from "../version";
import { webhookUrlProblem } from "./webhook-url";
import { WEBHOOK_TIMEOUT_MS, type AttemptOutcome } from "./events";

export interface WebhookMessage {
  /** the `webhook-id`: the same on every attempt and redelivery of an event */
  eventId: string;
  /** the exact JSON body */
  payload: string;
}

/**
 * The Standard Webhooks headers of one attempt, signed at `at` with every secret given (the
 * current one and, during a rotation, the previous one), space-separated `v1,` signatures.
 */
export function signedHeaders(
  message: WebhookMessage,
  secrets: string[],
  at: number,
): Record<string, string> {
  const timestamp = new Date(at);
  return {
    "Content-Type": "application/json",
    "User-Agent": `Keygate-Webhooks/${VERSION}`,
    "webhook-id": message.eventId,
    "webhook-timestamp": String(Math.floor(at / 1000)),
    "webhook-signature": secrets
      .map((secret) => new Webhook(secret).sign(message.eventId, timestamp, message.payload))
      .join(" "),
  };
}

/**
 * One attempt: a POST to `url`, never following a redirect (a 3xx is a failed attempt, so a
 * receiver cannot send the signed request on to another host), given up after
 * `WEBHOOK_TIMEOUT_MS`. A 2xx answer is a delivery; anything else, or no answer, is not.
 *
 * The URL is checked again first (webhook-url.ts): one stored before the rule, or refused by
 * it since, is not fetched. A failure is described in fixed words with the status code; the
 * receiver's body is cancelled unread, so nothing it says reaches `lastError`, which any
 * `keygate:read` key can see.
 */
export async function sendWebhook(
  url: string,
  message: WebhookMessage,
  secrets: string[],
  at: number,
  timeoutMs = WEBHOOK_TIMEOUT_MS,
): Promise<AttemptOutcome> {
  const refused = webhookUrlProblem(url, null);
  if (refused !== null) {
    return { ok: false, statusCode: null, error: `not sent: webhookUrl ${refused}`, url };
  }
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: signedHeaders(message, secrets, at),
      body: message.payload,
      redirect: "manual",
      signal,
    });
    const status = response.status;
    await response.body?.cancel().catch(() => undefined);
    if (status >= 200 && status < 300) return { ok: true, statusCode: status, error: null, url };
    return {
      ok: false,
      statusCode: status,
      error:
        status >= 300 && status < 400
          ? `HTTP ${status}: a redirect, not followed (webhooks go to webhookUrl only)`
          : `HTTP ${status}: not a 2xx answer`,
      url,
    };
  } catch (error) {
    const timedOut = signal.aborted;
    return {
      ok: false,
      statusCode: null,
      error: timedOut
        ? `no answer within ${Math.round(timeoutMs / 1000)} s`
        : `request failed: ${String((error as Error | undefined)?.message ?? error)}`,
      url,
    };
  }
}
