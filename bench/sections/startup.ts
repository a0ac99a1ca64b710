/** The bench section `startup`; bench.ts runs it. */

import { DENO, log, ROOT, rows } from "../context.ts";
import { timed } from "../runners.ts";
import { compare } from "../stats.ts";
import { join } from "node:path";

export async function startupSection(bundle: string, emptyScript: string): Promise<void> {
  const n = 10;
  const variants: { name: string; cmd: string[]; cwd?: string }[] = [
    { name: "deno runtime, empty script", cmd: [DENO, "run", "-A", "--no-config", emptyScript] },
    {
      name: "interp-exec --version (bundle)",
      cmd: [DENO, "run", "-A", "--no-config", bundle, "--version"],
    },
    {
      name: "interp-exec --version (source, deno run)",
      cmd: [DENO, "run", "-A", "--frozen", "--quiet", join(ROOT, "main.ts"), "--version"],
      cwd: ROOT,
    },
  ];
  const binary = join(ROOT, "dist", "interp-exec");
  const probe = await timed([binary, "--version"]).catch(() => undefined);
  if (probe?.code === 0 && probe.stdout.startsWith("interp-exec")) {
    variants.push({ name: "interp-exec --version (compiled binary)", cmd: [binary, "--version"] });
  } else {
    log("no working dist/interp-exec (deno task compile): the binary is not measured");
  }
  const times = variants.map(() => [] as number[]);
  const rss = variants.map(() => [] as number[]);
  for (let i = 0; i < n + 1; i++) {
    for (const [j, v] of variants.entries()) {
      const r = await timed(v.cmd, { cwd: v.cwd });
      if (r.code !== 0) throw new Error(`${v.cmd.join(" ")} exited ${r.code}: ${r.stderr}`);
      if (i === 0) continue; // the first round warms caches
      times[j].push(r.ms);
      if (r.rssKB !== null) rss[j].push(r.rssKB / 1024);
    }
  }
  for (let j = 1; j < variants.length; j++) {
    rows.push(compare("startup", variants[j].name, times[j], "ms", variants[0].name, times[0]));
  }
  if (rss[1].length) {
    rows.push(
      compare(
        "startup",
        "peak RSS of `--version` (bundle)",
        rss[1],
        "MB",
        variants[0].name,
        rss[0],
      ),
    );
  }
}
