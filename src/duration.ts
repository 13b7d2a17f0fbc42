/**
 * A configured number of seconds, exactly, in days, hours, minutes and seconds: `90s` is
 * `1m 30s`, `3600` is `1h`, `8902800` is `103d 1h`. (For how long ago or until, the CLI has `span`.)
 */
export function duration(seconds: number): string {
  let rest = Math.max(0, Math.round(seconds));
  if (rest === 0) return "0s";
  const parts: string[] = [];
  for (const [unit, size] of [
    ["d", 86_400],
    ["h", 3600],
    ["m", 60],
    ["s", 1],
  ] as const) {
    const count = Math.floor(rest / size);
    if (count > 0) parts.push(`${count}${unit}`);
    rest -= count * size;
  }
  return parts.join(" ");
}
