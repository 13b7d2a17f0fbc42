import { writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import WebSocket from "ws";
import { freePort, managementApi, request } from "../e2e/support/http.js";
import { startKeygate } from "../e2e/support/worker.js";
import { runLoad } from "./load.js";

/**
 * `npm run bench -- --profile <scenario>`: a CPU profile of the Keygate Worker under load,
 * taken through workerd's DevTools inspector, to find where a path spends its time. Writes
 * the `.cpuprofile` (open it in Chrome DevTools or speedscope) and prints the functions with
 * the most samples. Information for whoever optimises, never a pass/fail.
 */

export const PROFILE_SCENARIOS = ["passthrough", "hot", "malformed", "jwt"] as const;
export type ProfileScenario = (typeof PROFILE_SCENARIOS)[number];

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
}

/** A minimal DevTools protocol client: one request at a time, answers matched by id. */
async function devtools(url: string) {
  const socket = new WebSocket(url);
  await new Promise((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", reject);
  });
  let lastId = 0;
  const waiting = new Map<number, (result: unknown) => void>();
  socket.on("message", (data) => {
    const message = JSON.parse(String(data)) as { id?: number; result?: unknown };
    if (message.id !== undefined) waiting.get(message.id)?.(message.result);
  });
  return {
    send<T>(method: string, params: object = {}): Promise<T> {
      const id = ++lastId;
      return new Promise<T>((resolve) => {
        waiting.set(id, (result) => resolve(result as T));
        socket.send(JSON.stringify({ id, method, params }));
      });
    },
    close: () => socket.close(),
  };
}

/** Share of samples per function, self and inclusive, highest first. */
export function summariseProfile(profile: CpuProfile, top = 25): string {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes)
    for (const child of node.children ?? []) parent.set(child, node.id);
  const nameOf = (node: ProfileNode) => {
    const { functionName, url, lineNumber } = node.callFrame;
    return `${functionName || "(anonymous)"}${url ? ` ${url.split("/").pop()}:${lineNumber + 1}` : ""}`;
  };
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const id of profile.samples) {
    const node = byId.get(id);
    if (!node) continue;
    self.set(nameOf(node), (self.get(nameOf(node)) ?? 0) + 1);
    const seen = new Set<string>();
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
      const name = nameOf(byId.get(at)!);
      if (seen.has(name)) continue;
      seen.add(name);
      inclusive.set(name, (inclusive.get(name) ?? 0) + 1);
    }
  }
  const total = profile.samples.length || 1;
  const table = (title: string, counts: Map<string, number>) =>
    [
      title,
      ...[...counts]
        .sort((a, b) => b[1] - a[1])
        .slice(0, top)
        .map(([name, count]) => `${((100 * count) / total).toFixed(1).padStart(6)} %  ${name}`),
    ].join("\n");
  return `${total} samples\n${table("self time:", self)}\n\n${table("inclusive time:", inclusive)}`;
}

/** Profiles one scenario for `durationSeconds` at `connections`; returns the exit code. */
export async function profileScenario(
  scenario: ProfileScenario,
  durationSeconds: number,
  connections: number,
): Promise<number> {
  const inspectorPort = await freePort();
  const keygate = await startKeygate({
    routeRules: [{ path: "/public/*", public: true }],
    inspectorPort,
  });
  try {
    const api = managementApi(keygate.url, keygate.adminToken);
    const consumer = await api.post("/consumers", { name: "profile" });
    const created = await api.post(`/consumers/${String(consumer.body.id)}/keys`, {
      scopes: ["bench:read"],
    });
    const key = created.body.key as string;
    const headers: Record<string, string> = { "CF-Connecting-IP": "198.51.100.20" };
    if (scenario === "hot") headers.Authorization = `Bearer ${key}`;
    if (scenario === "malformed") {
      headers.Authorization = `Bearer ${key.slice(0, -1)}${key.endsWith("A") ? "B" : "A"}`;
    }
    if (scenario === "jwt") {
      const token = await request(keygate.url, "POST", "/_keygate/v1/token", {
        headers: { Authorization: `Bearer ${key}` },
        body: { expiresIn: 3600 },
      });
      headers.Authorization = `Bearer ${String(token.body.access_token)}`;
    }
    const url = `${keygate.url}${scenario === "passthrough" ? "/public/profile" : "/profile"}`;
    await runLoad({ url, headers, connections, durationSeconds: 1 }); // warm-up
    const targets = (await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json()) as {
      title: string;
      webSocketDebuggerUrl: string;
    }[];
    // miniflare names the user Worker `core:user:<name>`; the rest are its own services
    const target = targets.find((t) => t.title.includes("core:user:")) ?? targets[0];
    if (!target) throw new Error("workerd's inspector lists no Worker");
    const client = await devtools(target.webSocketDebuggerUrl);
    await client.send("Profiler.enable");
    await client.send("Profiler.setSamplingInterval", { interval: 50 });
    await client.send("Profiler.start");
    const result = await runLoad({ url, headers, connections, durationSeconds });
    const { profile } = await client.send<{ profile: CpuProfile }>("Profiler.stop");
    client.close();
    const path = join(tmpdir(), `keygate-${scenario}-${Date.now()}.cpuprofile`);
    await writeFile(path, JSON.stringify(profile));
    console.log(`${scenario}: ${Math.round(result.rps)} rps while profiled; profile: ${path}\n`);
    console.log(summariseProfile(profile));
    return 0;
  } finally {
    await keygate.stop();
  }
}
