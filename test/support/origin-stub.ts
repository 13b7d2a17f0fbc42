import { afterEach, beforeEach, vi } from "vitest";

/**
 * The origin behind the Worker, as the Worker's outbound `fetch` stubbed in this isolate (the
 * Worker under test runs in it too): every upstream request is kept in `requests`, and
 * `answer` makes the origin's response (by default a plain 200). Both are reset before each
 * test of the file that calls this.
 */
export function stubOrigin() {
  const origin = {
    requests: [] as Request[],
    answer: (): Response => new Response("from the origin"),
  };
  beforeEach(() => {
    origin.requests.length = 0;
    origin.answer = () => new Response("from the origin");
    vi.stubGlobal(
      "fetch",
      vi.fn(async (input: RequestInfo | URL, init?: RequestInit) => {
        origin.requests.push(new Request(input, init));
        return origin.answer();
      }),
    );
  });
  afterEach(() => vi.unstubAllGlobals());
  return origin;
}
