import { SELF } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { framingProblem } from "../../src/edge/request-framing";
import { ADMIN } from "../support/api";

const framing = (fields: [string, string][]) => framingProblem(new Headers(fields));

describe("framingProblem", () => {
  it.each([
    ["no framing fields", []],
    ["Content-Length: 0", [["Content-Length", "0"]]],
    ["Content-Length: 1234", [["Content-Length", "1234"]]],
    ["Transfer-Encoding: chunked", [["Transfer-Encoding", "chunked"]]],
    ["Transfer-Encoding: Chunked", [["Transfer-Encoding", "Chunked"]]],
    ["Transfer-Encoding: gzip, chunked", [["Transfer-Encoding", "gzip, chunked"]]],
  ] as [string, [string, string][]][])("accepts %s", (_label, fields) => {
    expect(framing(fields)).toBeNull();
  });

  it.each([
    ["Content-Length: 5, 7", [["Content-Length", "5, 7"]]],
    [
      "Content-Length twice, differing",
      [
        ["Content-Length", "5"],
        ["Content-Length", "7"],
      ],
    ],
    [
      "Content-Length twice, equal",
      [
        ["Content-Length", "5"],
        ["Content-Length", "5"],
      ],
    ],
    ["Content-Length: -1", [["Content-Length", "-1"]]],
    ["Content-Length: abc", [["Content-Length", "abc"]]],
    ["an empty Content-Length", [["Content-Length", ""]]],
    ["Transfer-Encoding: chunked, chunked", [["Transfer-Encoding", "chunked, chunked"]]],
    [
      "Transfer-Encoding: chunked twice",
      [
        ["Transfer-Encoding", "chunked"],
        ["Transfer-Encoding", "chunked"],
      ],
    ],
    ["Transfer-Encoding: chunked, gzip", [["Transfer-Encoding", "chunked, gzip"]]],
    ["Transfer-Encoding: gzip", [["Transfer-Encoding", "gzip"]]],
    ["Transfer-Encoding: identity", [["Transfer-Encoding", "identity"]]],
    [
      "Transfer-Encoding and Content-Length",
      [
        ["Transfer-Encoding", "chunked"],
        ["Content-Length", "5"],
      ],
    ],
  ] as [string, [string, string][]][])("refuses %s", (_label, fields) => {
    expect(framing(fields)).toEqual(expect.any(String));
  });
});

describe("requestFraming on every route", () => {
  it.each([
    ["the front door", "/prices/eur", {}],
    ["a public route", "/public/x", {}],
    ["the management API", "/_keygate/v1/consumers", ADMIN],
    ["the token route", "/_keygate/v1/token", {}],
    ["health", "/_keygate/health", {}],
  ])("answers 400 malformed_request on %s", async (_label, path, auth) => {
    const res = await SELF.fetch(`https://keygate.test${path}`, {
      method: "POST",
      headers: {
        ...auth,
        "Transfer-Encoding": "chunked, chunked",
        "Content-Type": "application/json",
      },
      body: "{}",
    });
    expect(res.status).toBe(400);
    expect(res.headers.get("Content-Type")).toBe("application/problem+json");
    expect(res.headers.get("Keygate-Error")).toBe("malformed_request");
    expect(res.headers.get("Cache-Control")).toBe("no-store");
    expect(await res.json()).toMatchObject({
      code: "malformed_request",
      requestId: expect.any(String),
    });
  });
});
