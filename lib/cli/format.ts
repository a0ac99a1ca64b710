/** The one formatter of each kind for what people read: sizes, durations, counts. */

/** Bytes as GiB with one decimal from 1 GiB up, else whole MiB; null/undefined as `missing`. */
export function formatBytes(n: number | null | undefined, missing = "-"): string {
  if (n === null || n === undefined) return missing;
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)} GiB`;
  return `${Math.round(n / 1024 ** 2)} MiB`;
}

/** Milliseconds as seconds: two decimals at most under 10 s (trailing zeros dropped), else whole. */
export function formatSeconds(ms: number): string {
  if (ms >= 10_000) return `${Math.round(ms / 1000)} s`;
  return `${Number((ms / 1000).toFixed(2))} s`;
}

/** A parameter count as 1.2B, 3.4M or the number itself. */
export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  return `${n}`;
}
