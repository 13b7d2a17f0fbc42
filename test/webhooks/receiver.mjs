/* global Response, URL */
/**
 * An auxiliary Worker standing in for consumers' webhook endpoints in the `webhooks` vitest
 * project, whose outbound fetches all come here (miniflare `outboundService`). It answers
 * like a receiver configured by the URL's query, and records every request it gets, so a
 * test can read what Keygate sent:
 *
 *   POST https://<any host>/<inbox>?fail=N        500 to the first N requests, then 204
 *   POST https://<any host>/<inbox>?status=410    always that status
 *   POST https://<any host>/<inbox>?redirect=URL  302 to URL
 *   GET  https://receiver.control/<inbox>          the requests recorded for that path
 *
 * Records are kept in memory, by host and path: each test uses its own random inbox.
 */
const received = new Map();

function inboxOf(url) {
  return `${url.host}${url.pathname}`;
}

export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.host === "receiver.control") {
      const key = url.pathname.slice(1);
      return Response.json(received.get(key) ?? []);
    }
    const key = inboxOf(url);
    const records = received.get(key) ?? [];
    received.set(key, records);
    const body = await request.text();
    const fail = Number(url.searchParams.get("fail") ?? "0");
    const fixed = url.searchParams.get("status");
    const redirect = url.searchParams.get("redirect");
    let status = 204;
    if (redirect !== null) status = 302;
    else if (fixed !== null) status = Number(fixed);
    else if (records.length < fail) status = 500;
    records.push({
      method: request.method,
      url: request.url,
      headers: Object.fromEntries(request.headers),
      body,
      answered: status,
    });
    if (redirect !== null) {
      return new Response(null, { status, headers: { Location: redirect } });
    }
    return new Response(status === 204 ? null : `receiver says ${status}`, { status });
  },
};
