import { readdirSync, readFileSync } from "node:fs";

/** What the benchmark reads of its workerd processes in /proc (Linux; elsewhere, nothing). */

/** The workerd processes this process started (Miniflare's children), by pid. */
export function childWorkerdPids(): number[] {
  let entries: string[];
  try {
    entries = readdirSync("/proc");
  } catch {
    return [];
  }
  const pids: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, "utf8");
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid …: fields counted after the closing paren
    const close = stat.lastIndexOf(")");
    const name = stat.slice(stat.indexOf("(") + 1, close);
    const ppid = Number(stat.slice(close + 2).split(" ")[1]);
    if (name.startsWith("workerd") && ppid === process.pid) pids.push(Number(entry));
  }
  return pids;
}

/** CPU time, in nanoseconds, used so far by every thread of `pid` (/proc schedstat). */
export function cpuNs(pid: number): number {
  let total = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return total;
}
