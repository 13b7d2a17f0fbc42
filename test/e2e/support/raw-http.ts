import { connect } from "node:net";

/** HTTP/1.1 over a bare socket: for requests `fetch` will not send (odd framing, huge bodies). */

export interface RawReply {
  status: number;
  headers: Map<string, string>;
  body: string;
}

/**
 * Writes `head` (request line and headers, without the blank line) and `body` to a new
 * connection to `baseUrl`, and reads one response (framed by its Content-Length, or by the
 * connection closing). A server that answers before the whole body is written may reset the
 * connection; what was answered by then is kept.
 */
export function rawRequest(
  baseUrl: string,
  head: string,
  body: string | Buffer = "",
  timeoutMs = 15_000,
): Promise<RawReply> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname);
    let received = Buffer.alloc(0);
    let settled = false;
    const finish = (error?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const reply = parse(received);
      if (reply) resolve(reply);
      else
        reject(
          error ??
            new Error(`no complete response: ${JSON.stringify(received.toString("latin1"))}`),
        );
    };
    const timer = setTimeout(() => finish(new Error("timed out")), timeoutMs);
    socket.on("data", (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
      const reply = parse(received);
      if (reply && reply.complete) finish();
    });
    socket.on("end", () => finish());
    socket.on("close", () => finish());
    socket.on("error", (error) => finish(error));
    socket.on("connect", () => {
      socket.write(`${head}\r\n\r\n`, "latin1");
      if (body.length > 0) socket.write(body);
    });
  });
}

function parse(bytes: Buffer): (RawReply & { complete: boolean }) | null {
  const end = bytes.indexOf("\r\n\r\n");
  if (end === -1) return null;
  const [statusLine = "", ...lines] = bytes.subarray(0, end).toString("latin1").split("\r\n");
  const status = Number(statusLine.split(" ")[1]);
  const headers = new Map<string, string>();
  for (const line of lines) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers.set(name, headers.has(name) ? `${headers.get(name)}, ${value}` : value);
  }
  const rest = bytes.subarray(end + 4);
  const length = headers.get("content-length");
  const complete = length !== undefined && rest.length >= Number(length);
  return { status, headers, body: rest.toString("utf8"), complete };
}

/** `body` in chunked transfer coding, in chunks of at most `size` bytes, with the last chunk. */
export function chunked(body: string, size = 16 * 1024): string {
  let out = "";
  for (let at = 0; at < body.length; at += size) {
    const piece = body.slice(at, at + size);
    out += `${Buffer.byteLength(piece).toString(16)}\r\n${piece}\r\n`;
  }
  return `${out}0\r\n\r\n`;
}
