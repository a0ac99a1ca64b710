/**
 * The handle: the JSON contract between interp-exec and the programs that
 * attach an agent (stage 3). One module, shared by every mode; the types come
 * from these schemas and `interp-exec schema` prints them as JSON Schema.
 */

import { z } from "zod";
import { ConfigError } from "../cli/errors.ts";
import { HANDLE_SCHEMA_VERSION, VERSION } from "../cli/version.ts";

/** A model as the kernel reports it (already obfuscated where asked). */
export const ModelSummarySchema = z.object({
  var_name: z.string(),
  tokenizer_var_name: z.string(),
  display_name: z.string().describe("the model's name, or a neutral name when hidden"),
  hidden: z.boolean(),
  class: z.string(),
  device: z.string(),
  dtype: z.string(),
  n_params: z.number().int(),
  peft: z.boolean(),
  load_seconds: z.number(),
  load_cpu_seconds: z.number().optional().describe(
    "CPU time of the kernel process while the model loaded",
  ),
  loader: z.enum(["fast load", "from_pretrained", "custom_load_code"]).optional().describe(
    "how the model was loaded (fast load: kernel_setup.py's mmap path, see fast_load)",
  ),
});

const CallableSchema = z.object({
  name: z.string(),
  signature: z.string(),
  doc: z.string(),
});

/** A skill as injected into the kernel. */
export const SkillSummarySchema = z.object({
  name: z.string(),
  origin: z.string().describe("the file it came from, or builtin:NAME"),
  preload: z.boolean(),
  functions: z.array(CallableSchema),
  classes: z.array(CallableSchema),
});

/** What kernel_setup.py reports after the warm-up. */
export const KernelSummarySchema = z.object({
  ok: z.literal(true),
  models: z.array(ModelSummarySchema),
  skills: z.array(SkillSummarySchema),
  variables: z.array(z.string()),
  environment: z.object({
    python: z.string(),
    torch: z.string(),
    transformers: z.string(),
    cuda_available: z.boolean(),
    device_name: z.string(),
  }),
  load_seconds: z.number(),
});

export const ServerInfoSchema = z.object({
  kind: z.enum(["jupyter_server", "kernel_gateway"]),
  version: z.string(),
  embedded: z.boolean().describe("started by interp-exec on this machine"),
  sessions_api: z.boolean(),
  contents_api: z.boolean(),
});

/** An MCP client config block (the common `mcpServers` shape). */
export const McpConfigSchema = z.object({
  mcpServers: z.record(
    z.string(),
    z.object({
      command: z.string(),
      args: z.array(z.string()),
      env: z.record(z.string(), z.string()),
    }),
  ),
});

/** An MCP client config block for a running Streamable HTTP server (`mcp --http`). */
export const McpHttpConfigSchema = z.object({
  mcpServers: z.record(
    z.string(),
    z.object({
      type: z.literal("http"),
      url: z.string(),
      headers: z.record(z.string(), z.string()).describe("the bearer token the server requires"),
    }),
  ),
});

export const TimingsSchema = z.object({
  total_ms: z.number(),
  connect_ms: z.number().describe("server probe (and embedded start)"),
  session_ms: z.number().describe("session/kernel creation"),
  kernel_ready_ms: z.number().describe("kernel WebSocket connected and answering"),
  warmup_ms: z.number().describe("kernel_setup.py, as seen by the client"),
  kernel_load_s: z.number().describe("model and skill loading, timed inside the kernel"),
});

const common = {
  schema_version: z.literal(HANDLE_SCHEMA_VERSION),
  interp_exec_version: z.string(),
  status: z.literal("ready"),
  experiment_name: z.string(),
  created_at: z.string().describe("ISO 8601"),
  jupyter_url: z.string().describe("server base URL; never carries the token"),
  kernel_id: z.string(),
  server: ServerInfoSchema,
  workspace: z.string(),
  namespace: KernelSummarySchema.omit({ ok: true }),
  timings: TimingsSchema,
  agent_prompt: z.string().describe("markdown for the agent's system prompt"),
};

/** notebook mode: a Jupyter session the agent attaches to. */
export const NotebookHandleSchema = z.object({
  mode: z.literal("notebook"),
  ...common,
  session_id: z.string().describe(
    "the Jupyter session id (the kernel id on servers without sessions)",
  ),
  notebook_path: z.string().nullable().describe(
    "server-relative .ipynb, null without a contents API",
  ),
  mcp_config: McpConfigSchema,
});

/** An MCP tool as a handle lists it. */
export const ToolSummarySchema = z.object({
  name: z.string(),
  description: z.string(),
  skill: z.string().nullable().describe(
    "the skill that defines it (null for model_info and custom functions)",
  ),
});

/** mcp mode: the agent gets only the researcher's functions, as MCP tools on the warm kernel. */
export const McpHandleSchema = z.object({
  mode: z.literal("mcp"),
  ...common,
  session_id: z.string().describe(
    "what mcp-serve attaches to: the Jupyter session id, or the kernel id of a bare kernel",
  ),
  tools: z.array(ToolSummarySchema),
  mcp_config: z.union([McpConfigSchema, McpHttpConfigSchema]).describe(
    "launches mcp-serve over stdio, or (mcp --http) points at the running HTTP server",
  ),
});

/** filesystem mode: a workspace of files and scripts, the models kept warm in a worker kernel. */
export const FilesystemHandleSchema = z.object({
  mode: z.literal("filesystem"),
  ...common,
  session_id: z.string().describe("the warm worker's kernel id (what filesystem-mcp attaches to)"),
  workspace: z.string().describe("absolute path of the workspace on the kernel's machine"),
  python: z.string().describe("the Python that runs the workspace's scripts"),
  environment: z.record(z.string(), z.string()).describe(
    "variables a script run outside the tools needs to load the models (INTERP_EXEC_SPEC)",
  ),
  files: z.array(z.string()).describe("what interp-exec wrote into the workspace"),
  tools: z.array(ToolSummarySchema),
  mcp_config: McpConfigSchema,
});

/** Every mode's handle, told apart by `mode`. */
export const HandleSchema = z.discriminatedUnion("mode", [
  NotebookHandleSchema,
  McpHandleSchema,
  FilesystemHandleSchema,
]);

export type KernelSummary = z.infer<typeof KernelSummarySchema>;
export type ServerInfo = z.infer<typeof ServerInfoSchema>;
export type McpConfig = z.infer<typeof McpConfigSchema>;
export type Timings = z.infer<typeof TimingsSchema>;
export type NotebookHandle = z.infer<typeof NotebookHandleSchema>;
export type McpHandle = z.infer<typeof McpHandleSchema>;
export type FilesystemHandle = z.infer<typeof FilesystemHandleSchema>;
export type ToolSummary = z.infer<typeof ToolSummarySchema>;
export type Handle = z.infer<typeof HandleSchema>;

/** The fields every handle shares, filled in for a new one. */
export function handleBase(): {
  schema_version: 1;
  interp_exec_version: string;
  created_at: string;
} {
  return {
    schema_version: HANDLE_SCHEMA_VERSION,
    interp_exec_version: VERSION,
    created_at: new Date().toISOString(),
  };
}

/** JSON Schema of the handle (one handle, or an array of them with --sessions). */
export function handleJsonSchema(): unknown {
  const schema = z.union([HandleSchema, z.array(HandleSchema).min(1)]);
  return {
    $id: `https://interp-exec.dev/schema/handle-v${HANDLE_SCHEMA_VERSION}.json`,
    title: `interp-exec handle v${HANDLE_SCHEMA_VERSION}`,
    ...z.toJSONSchema(schema, { target: "draft-2020-12", io: "output" }),
  };
}

/**
 * Parses a handle from JSON text (a file or stdin), one or several; errors
 * (ConfigError, exit 2) name `source`, the JSON path and what was expected.
 */
export function parseHandles(text: string, source: string): Handle[] {
  const expected = "a handle printed by 'interp-exec notebook' (a JSON object with mode, " +
    "session_id, kernel_id, ...) or a non-empty array of them";
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(
      `${source}: not JSON: ${(err as Error).message.split("\n")[0]}`,
      `expected ${expected}`,
    );
  }
  if (Array.isArray(data) && data.length === 0) {
    throw new ConfigError(`${source}: an empty array holds no handle`, `expected ${expected}`);
  }
  const list: unknown[] = Array.isArray(data) ? data : [data];
  return list.map((item, i) => {
    const at = Array.isArray(data) ? `[${i}]` : "";
    if (item === null || typeof item !== "object" || Array.isArray(item)) {
      throw new ConfigError(
        `${source}${at}: expected a handle (a JSON object), got ${jsonKind(item)}`,
        `expected ${expected}`,
      );
    }
    const obj = item as Record<string, unknown>;
    if (obj.schema_version !== HANDLE_SCHEMA_VERSION) {
      throw new ConfigError(
        `${source}${at}: schema_version: ${
          obj.schema_version === undefined ? "missing" : `got ${JSON.stringify(obj.schema_version)}`
        }; this interp-exec (${VERSION}) reads handle schema_version ${HANDLE_SCHEMA_VERSION}`,
        `expected ${expected}`,
      );
    }
    const modes = HandleSchema.options.map((o) => o.shape.mode.value);
    if (!modes.includes(obj.mode as never)) {
      throw new ConfigError(
        `${source}${at}: mode: ${
          obj.mode === undefined ? "missing" : `got ${JSON.stringify(obj.mode)}`
        }; expected one of ${modes.join(", ")}`,
        `expected ${expected}`,
      );
    }
    const r = HandleSchema.safeParse(item);
    if (!r.success) {
      const issue = r.error.issues[0];
      const value = issue.path.reduce<unknown>(
        (
          v,
          k,
        ) => (v !== null && typeof v === "object"
          ? (v as Record<PropertyKey, unknown>)[k]
          : undefined),
        item,
      );
      const path = issue.path.map((p) => typeof p === "number" ? `[${p}]` : `.${String(p)}`)
        .join("").replace(/^\./, "");
      throw new ConfigError(
        `${source}${at}: not an interp-exec handle: ${path || "(top level)"}: ${
          issue.code === "invalid_type"
            ? value === undefined
              ? `required (${issue.expected}) but missing`
              : `expected ${issue.expected}, got ${jsonKind(value)}`
            : `${issue.message}; got ${jsonKind(value)}`
        }`,
        `expected ${expected}`,
      );
    }
    return r.data;
  });
}

function jsonKind(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  const s = JSON.stringify(value);
  return `${typeof value} ${s.length > 40 ? s.slice(0, 37) + "..." : s}`;
}
