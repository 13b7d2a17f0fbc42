/* global Response */
/**
 * An auxiliary Worker for the RPC tests: another team's Worker that verifies keys through
 * Keygate's `KeygateService` entrypoint over a service binding (`env.KEYGATE`), not HTTP.
 * `POST /` with `{ key, scopes? }` answers `{ ok: true, result }` with what `verify`
 * returned, or `{ ok: false, error }` with the message it rejected with.
 */
export default {
  async fetch(request, env) {
    const { key, scopes } = await request.json();
    try {
      const result = await env.KEYGATE.verify(key, scopes === undefined ? undefined : { scopes });
      return Response.json({ ok: true, result });
    } catch (error) {
      return Response.json({ ok: false, error: String(error?.message ?? error) });
    }
  },
};
