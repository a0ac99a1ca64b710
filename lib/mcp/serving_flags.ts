/**
 * The flags every MCP server subcommand (notebook-mcp, filesystem-mcp,
 * mcp-serve) takes besides its own: the transport, the kernel start bound,
 * progress, outputs as resources, quiet. One definition, one help text, one
 * reading, so the three servers cannot drift apart.
 */

import { httpPortFlag, secondsFlag } from "../cli/args.ts";
import { setQuiet } from "../cli/log.ts";

/** parseArgs options of the shared flags. */
export const servingFlagOptions = {
  http: { type: "string" },
  "kernel-start-timeout": { type: "string" },
  "progress-interval": { type: "string" },
  "inline-outputs": { type: "boolean" },
  quiet: { type: "boolean", short: "q" },
} as const;

/** Help lines of the transport flag (it comes first in every server's options). */
export const httpFlagHelp =
  `  --http PORT                serve Streamable HTTP at http://127.0.0.1:PORT/mcp instead of
                             stdio (0: any free port; env INTERP_EXEC_MCP_TOKEN requires
                             'Authorization: Bearer TOKEN')`;

/** Help lines of the other shared flags (they end every server's options). */
export const servingFlagHelp =
  `  --kernel-start-timeout S   bound on connecting to or starting a kernel (default 120)
  --inline-outputs           images and long outputs inline (bounded) instead of as
                             resources: a thumbnail or the first and last lines, and a
                             resource_link that resources/read serves
  --progress-interval SECS   how often a long call reports progress (default 2)
  -q, --quiet                no progress lines on stderr
  -h, --help                 this help`;

/** What the shared flags say, checked (errors name the flag); applies --quiet. */
export function servingSettings(values: {
  http?: string;
  "kernel-start-timeout"?: string;
  "progress-interval"?: string;
  "inline-outputs"?: boolean;
  quiet?: boolean;
}): {
  port: number | undefined;
  kernelStartTimeoutMs: number;
  progressIntervalMs: number;
  inlineOutputs: boolean;
} {
  setQuiet(values.quiet ?? false);
  return {
    port: values.http === undefined ? undefined : httpPortFlag(values.http),
    kernelStartTimeoutMs: secondsFlag(
      "kernel-start-timeout",
      values["kernel-start-timeout"],
      120,
      false,
    ),
    progressIntervalMs: secondsFlag("progress-interval", values["progress-interval"], 2, false),
    inlineOutputs: values["inline-outputs"] ?? false,
  };
}
