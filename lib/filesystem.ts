/**
 * filesystem mode: no notebook; the agent reads and writes files in a
 * workspace on the kernel's machine and runs Python scripts there, which get
 * the models through a runtime module (`import interp_exec`). One kernel is
 * the warm worker: it holds the models, prepares the workspace (so a remote
 * server works like the embedded one, gateways included) and runs every
 * tool (lib/python/fs_worker.py). Binding adopts the warm-up's models into
 * the worker, so the first script is already warm.
 */

import { executionFor } from "./config.ts";
import { RUN_TOOLS } from "./mcp_mode.ts";
import type { Connection } from "./connect.ts";
import { JupyterError } from "./errors.ts";
import {
  type FilesystemHandle,
  handleBase,
  type KernelSummary,
  type ToolSummary,
} from "./handle.ts";
import type { KernelChannel } from "./jupyter.ts";
import { callKernel, installModules, type KernelModule } from "./kernel_call.ts";
import { agentPrompt } from "./agent_prompt.ts";
import { mcpEnv, selfCommand } from "./mcp_config.ts";
import {
  bindTimings,
  provisionKernel,
  recordBound,
  release,
  type WarmKernel,
  type WarmOptions,
} from "./provision.ts";
import { type Skill, skillSpec } from "./skills.ts";
import { buildSpec, KERNEL_SETUP_SOURCE, type SetupSpec } from "./warmup.ts";
import fsWorkerSource from "./python/fs_worker.py" with { type: "text" };

/** fs_worker.py, the kernel's side of filesystem mode. */
export const FS_MODULE: KernelModule = {
  name: "interp_exec_fs",
  source: fsWorkerSource,
  filename: "<interp-exec fs_worker.py>",
};

/** kernel_setup.py as a module (the warm-up defines it too; a replacement worker needs it). */
export const SETUP_MODULE: KernelModule = {
  name: "interp_exec_setup",
  source: KERNEL_SETUP_SOURCE,
  filename: "<interp-exec kernel_setup.py>",
};

/** The fixed code of every filesystem tool call; the call travels as data. */
export const FS_CALL_CODE = '__import__("interp_exec_fs").serve(globals())';

// Hands the warm-up's objects (the kernel's globals named in the summary) to
// the worker, so scripts get these models instead of a second copy.
const ADOPT_CODE = `import interp_exec_rpc as _ie_r, interp_exec_fs as _ie_f
_ie_c = _ie_r.current_call()["args"]
_ie_f._STATE["warm"] = ({k: globals()[k] for k in _ie_c["variables"] if k in globals()}, _ie_c["summary"])
_ie_r.reply({"ok": True})
del _ie_r, _ie_f, _ie_c`;

/** The agent's tools (filesystem-mcp), as a handle lists them. */
export const FS_TOOLS: ToolSummary[] = [
  {
    name: "read_file",
    description: "Read a workspace file (a line range; images as images)",
    skill: null,
  },
  { name: "write_file", description: "Write a workspace file (creating folders)", skill: null },
  {
    name: "edit_file",
    description: "Replace one exact string in a workspace file (fails when absent or not unique)",
    skill: null,
  },
  { name: "list_files", description: "List workspace files matching a glob", skill: null },
  {
    name: "run_python",
    description:
      "Run a workspace script with arguments and a timeout; the models stay warm between runs",
    skill: null,
  },
  ...RUN_TOOLS,
];

/** What one call into the worker answered. */
export type FsEnvelope =
  & { ok: boolean; error?: { kind: string; message: string } }
  & Record<
    string,
    unknown
  >;

/** Calls the worker; a run without an answer (death, timeout, server gone) raises. */
export async function callWorker(
  channel: KernelChannel,
  name: string,
  args: Record<string, unknown>,
  timeoutMs = 120_000,
): Promise<FsEnvelope> {
  const out = await callKernel(channel, FS_CALL_CODE, { name, args }, { timeoutMs });
  if (out.kind !== "answer") {
    const run = out.run;
    throw new JupyterError(
      run.status === "died" ? "kernel_died" : run.status === "timeout" ? "timeout" : "websocket",
      `the workspace worker did not answer ${name}: ${
        run.error ? `${run.error.ename}: ${run.error.evalue}` : run.note ?? run.status
      }`,
    );
  }
  return out.envelope as FsEnvelope;
}

/**
 * Prepares the workspace through the worker kernel (the runtime module, the
 * skills as modules and as .claude/skills, the task and the agent guide),
 * the spec kept outside it. Returns what prepare answered.
 */
export async function prepareWorkspace(
  channel: KernelChannel,
  spec: SetupSpec,
  files: Record<string, string>,
): Promise<{ workspace: string; python: string; files: string[]; spec_path: string }> {
  await installModules(channel, [FS_MODULE]);
  const env = await callWorker(channel, "prepare", {
    workspace: spec.workspace,
    spec,
    setup_source: KERNEL_SETUP_SOURCE,
    files,
  });
  if (!env.ok) {
    throw new JupyterError(
      "setup_failed",
      `preparing the workspace ${spec.workspace}: ${env.error?.message ?? "failed"}`,
      env.error?.kind === "path"
        ? "execution.workspace must be a folder the kernel can write"
        : undefined,
    );
  }
  return env as unknown as {
    workspace: string;
    python: string;
    files: string[];
    spec_path: string;
  };
}

/** The agent guide written into the workspace as AGENTS.md. */
export function agentGuide(p: {
  experiment: string;
  summary: Pick<KernelSummary, "models" | "skills">;
  skills: Skill[];
}): string {
  const models = p.summary.models;
  const out = [
    `# Working in this workspace: ${p.experiment}`,
    "",
    "You work with files: write Python scripts here and run them with the `run_python` tool.",
    "Paths are relative to this folder; nothing outside it can be read or written through the tools.",
    "",
    "## The models",
    "",
    "Scripts get the experiment's models from the runtime module. They are loaded once and kept",
    "warm: later runs get them at once. Every run starts from a clean module namespace: globals,",
    "hooks and patches of earlier runs are gone.",
    "",
    "```python",
    "import interp_exec",
    "",
    `model = interp_exec.model()          # ${models[0]?.var_name ?? "model"}`,
    `tokenizer = interp_exec.tokenizer()  # its tokenizer`,
    "```",
    "",
  ];
  for (const m of models) {
    out.push(
      `- \`interp_exec.model("${m.var_name}")\` and \`interp_exec.tokenizer("${m.tokenizer_var_name}")\`: ${m.class}, ${m.device}, ${m.dtype}${
        m.peft ? ", a PEFT adapter" : ""
      }`,
    );
  }
  if (models.length === 0) out.push("No models are configured.");
  const fnSkills = p.summary.skills.filter((s) => s.preload && s.functions.length);
  if (fnSkills.length) {
    out.push(
      "",
      "## Functions",
      "",
      "Each skill is a module under `skills/` (see also `.claude/skills/`):",
    );
    for (const s of fnSkills) {
      const mod = s.name.replace(/-/g, "_");
      out.push(
        "",
        `### ${s.name}`,
        "",
        `\`from skills.${mod} import ${s.functions.slice(0, 3).map((f) => f.name).join(", ")}\``,
        "",
      );
      for (const f of s.functions) {
        out.push(`- \`${f.name}${f.signature}\`${f.doc ? `: ${f.doc}` : ""}`);
      }
    }
  }
  out.push(
    "",
    "## Running scripts",
    "",
    "- `run_python(path, args=[], timeout_seconds=None, fresh_process=False)` returns the exit code,",
    "  stdout, stderr and the files the run created or changed. Long output is cut in the middle.",
    "- `fresh_process=True` runs the script in a new Python process that loads the models itself",
    "  (slow; for scripts that change the models or the process).",
    "- A script that crashes the worker (say, out of memory) is reported; the next run gets a new",
    "  worker, which loads the models again on first use.",
  );
  const guides = p.skills.filter((s) => !s.preload);
  for (const g of guides) out.push("", `## Guide: ${g.name}`, "", g.body);
  return out.join("\n") + "\n";
}

/**
 * Binding a warm kernel to filesystem mode: the workspace prepared through
 * it, the warm-up's models adopted by the worker, the session recorded, the
 * handle built. Closes the kernel's channel; on failure shuts the kernel
 * down (unless `keepOnError`).
 */
export async function bindFilesystem(
  conn: Connection,
  wk: WarmKernel,
  opts: Pick<WarmOptions, "loaded" | "skills" | "keepOnError">,
): Promise<FilesystemHandle> {
  const { client, info } = conn;
  const { loaded } = opts;
  const exec = executionFor(loaded.config, "filesystem");
  const { warm, started } = wk;
  let ok = false;
  try {
    const { ok: _ok, ...namespace } = warm.summary;
    const spec = buildSpec(loaded, opts.skills.map(skillSpec), wk.workspace);
    const files: Record<string, string> = {
      "AGENTS.md": agentGuide({
        experiment: loaded.config.name,
        summary: namespace,
        skills: opts.skills,
      }),
    };
    if (loaded.taskText?.trim()) files["TASK.md"] = loaded.taskText.trim() + "\n";
    const prepared = await prepareWorkspace(wk.channel, spec, files);
    const adopted = await callKernel(wk.channel, ADOPT_CODE, {
      name: "adopt",
      args: { variables: namespace.variables, summary: warm.summary },
    }, { timeoutMs: 30_000 });
    if (adopted.kind !== "answer") {
      throw new Error(
        `handing the models to the workspace worker failed: ${
          adopted.run.note ?? adopted.run.status
        }`,
      );
    }
    const sessionId = await recordBound(client, started, {
      loaded,
      mode: "filesystem",
      idleTimeout: exec.idle_timeout,
    });
    const self = selfCommand();
    const handle: FilesystemHandle = {
      mode: "filesystem",
      ...handleBase(),
      status: "ready",
      experiment_name: loaded.config.name,
      session_id: sessionId,
      kernel_id: started.kernel.id,
      jupyter_url: client.url,
      server: info,
      workspace: prepared.workspace,
      python: prepared.python,
      environment: { INTERP_EXEC_SPEC: prepared.spec_path },
      files: prepared.files,
      namespace,
      tools: FS_TOOLS,
      timings: bindTimings(wk),
      agent_prompt: agentPrompt({
        mode: "filesystem",
        experiment: loaded.config.name,
        task: loaded.taskText,
        summary: warm.summary,
        skills: opts.skills,
        workspace: prepared.workspace,
        tools: FS_TOOLS,
      }),
      mcp_config: {
        mcpServers: {
          "interp-exec-filesystem": {
            command: self.command,
            args: [
              ...self.args,
              "filesystem-mcp",
              "--session",
              sessionId,
              "--workspace",
              prepared.workspace,
              "--jupyter-url",
              client.url,
              ...(exec.run_timeout !== 600 ? ["--timeout", String(exec.run_timeout)] : []),
              ...(exec.fresh_process ? ["--fresh-process"] : []),
            ],
            env: mcpEnv(self),
          },
        },
      },
    };
    ok = true;
    return handle;
  } finally {
    wk.channel.close();
    if (!ok) await release(client, started, opts.keepOnError);
  }
}

/** Creates one warm filesystem-mode worker and returns its handle: provisioning, then binding. */
export async function warmFilesystemSession(
  conn: Connection,
  opts: WarmOptions,
): Promise<FilesystemHandle> {
  const wk = await provisionKernel(conn, { ...opts, hiddenSetup: true });
  return await bindFilesystem(conn, wk, opts);
}
