import { Webhook } from "standardwebhooks";
import { VERSION } from "../version";
import { WEBHOOK_TIMEOUT_MS, type AttemptOutcome } from "./webhooks";

/** The longest excerpt of a failed answer's body kept as the delivery's `lastError`. */
const BODY_EXCERPT = 200;

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
 */
export async function sendWebhook(
  url: string,
  message: WebhookMessage,
  secrets: string[],
  at: number,
  timeoutMs = WEBHOOK_TIMEOUT_MS,
): Promise<AttemptOutcome> {
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
    if (status >= 200 && status < 300) {
      await response.body?.cancel();
      return { ok: true, statusCode: status, error: null, url };
    }
    if (status >= 300 && status < 400) {
      await response.body?.cancel();
      const location = response.headers.get("Location");
      let target = "elsewhere";
      try {
        if (location) target = new URL(location, url).host;
      } catch {
        // an unparsable Location: still not followed
      }
      return {
        ok: false,
        statusCode: status,
        error: `redirect to ${target} not followed: webhooks are sent to webhookUrl only`,
        url,
      };
    }
    const text = await response.text().catch(() => "");
    const excerpt = text.slice(0, BODY_EXCERPT).trim();
    return {
      ok: false,
      statusCode: status,
      error: excerpt ? `HTTP ${status}: ${excerpt}` : `HTTP ${status}`,
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
