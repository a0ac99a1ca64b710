/**
 * filesystem mode: no notebook; the agent reads and writes files in a
 * workspace on the kernel's machine and runs Python scripts there, which get
 * the models through a runtime module (`import interp_exec`). One kernel is
 * the warm worker: it holds the models, prepares the workspace (so a remote
 * server works like the embedded one, gateways included) and runs every
 * tool (lib/python/fs_worker.py). Binding adopts the warm-up's models into
 * the worker, so the first script is already warm.
 */

import { bindKernel } from "../bind.ts";
import { RUN_TOOLS } from "../run_tools.ts";
import workspaceRuntimeSource from "../../python/workspace_runtime.py" with { type: "text" };
import { executionFor } from "../../config/config.ts";
import type { Connection } from "../../server/connect.ts";
import { JupyterError } from "../../cli/errors.ts";
import type { FilesystemHandle, KernelSummary, ToolSummary } from "../../config/handle.ts";
import type { JupyterClient, KernelChannel } from "../../kernel/jupyter.ts";
import { progress } from "../../cli/log.ts";
import { callKernel, installModules } from "../../kernel/call.ts";
import { callWorker, FS_CALL_CODE, FS_MODULES, type FsEnvelope } from "../../kernel/fs_worker.ts";
import { raiseFor } from "../../kernel/run.ts";
import { agentPrompt } from "../agent_prompt.ts";
import { mcpEnv, selfCommand } from "../mcp_config.ts";
import { provisionKernel, type WarmKernel, type WarmOptions } from "../../warm/provision.ts";
import { type Skill, skillSpec } from "../../config/skills.ts";
import { buildSpec, KERNEL_SETUP_SOURCE, type SetupSpec } from "../../warm/warmup.ts";

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
  await installModules(channel, FS_MODULES);
  const env = await callWorker(channel, "prepare", {
    workspace: spec.workspace,
    spec,
    setup_source: KERNEL_SETUP_SOURCE,
    runtime_source: workspaceRuntimeSource,
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
  const { client } = conn;
  const { loaded } = opts;
  const exec = executionFor(loaded.config, "filesystem");
  const { warm } = wk;
  const { ok: _ok, ...namespace } = warm.summary;
  let prepared: Awaited<ReturnType<typeof prepareWorkspace>> | undefined;
  let specWritten = false;
  return await bindKernel(conn, wk, opts, {
    mode: "filesystem",
    idleTimeout: exec.idle_timeout,
    prepare: async () => {
      const spec = buildSpec(loaded, opts.skills.map(skillSpec), wk.workspace);
      const files: Record<string, string> = {
        "AGENTS.md": agentGuide({
          experiment: loaded.config.name,
          summary: namespace,
          skills: opts.skills,
        }),
      };
      if (loaded.taskText?.trim()) files["TASK.md"] = loaded.taskText.trim() + "\n";
      specWritten = true; // prepare may fail after writing it
      prepared = await prepareWorkspace(wk.channel, spec, files);
      // The warm-up's objects go to the worker (fs_worker.py adopt), so
      // scripts get these models instead of a second copy.
      const adopted = await callKernel(wk.channel, FS_CALL_CODE, {
        name: "adopt",
        args: { variables: namespace.variables, summary: warm.summary },
      }, { timeoutMs: 30_000 });
      if (adopted.kind !== "answer") {
        const what = "handing the models to the workspace worker";
        raiseFor(adopted.run, { what, errorCode: "setup_failed" });
        throw new JupyterError("setup_failed", `${what}: the kernel gave no answer`);
      }
      const answer = adopted.envelope as FsEnvelope;
      if (!answer.ok) {
        throw new JupyterError(
          "setup_failed",
          `handing the models to the workspace worker: ${answer.error?.message}`,
        );
      }
    },
    // A failed bind leaves no spec file behind (kept with the kernel by --keep-on-error).
    undo: async () => {
      if (specWritten) await callWorker(wk.channel, "forget", {}, 10_000);
    },
    handle: (common): FilesystemHandle => {
      const ready = prepared!;
      const self = selfCommand();
      return {
        ...common,
        workspace: ready.workspace,
        python: ready.python,
        environment: { INTERP_EXEC_SPEC: ready.spec_path },
        files: ready.files,
        tools: FS_TOOLS,
        agent_prompt: agentPrompt({
          mode: "filesystem",
          experiment: loaded.config.name,
          task: loaded.taskText,
          summary: warm.summary,
          skills: opts.skills,
          workspace: ready.workspace,
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
                common.session_id,
                "--workspace",
                ready.workspace,
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
    },
  });
}

/**
 * Ends a filesystem session's setup spec: its worker removes the spec file
 * (on the kernel's machine) and the workspace's pointer to it. Best effort
 * and bounded: a worker that is busy, gone or not set up keeps it, and says
 * so; `interp-exec filesystem` prunes specs no workspace names later.
 */
export async function forgetSpec(
  client: JupyterClient,
  kernelId: string,
  timeoutMs = 10_000,
): Promise<void> {
  const kernel = await client.getKernel(kernelId, { timeoutMs }).catch(() => null);
  if (!kernel || kernel.execution_state === "dead") return;
  if (kernel.execution_state === "busy") {
    progress(`worker kernel ${kernelId} is busy: its setup spec file is left in place`);
    return;
  }
  try {
    const channel = await client.connectKernel(kernel, { startTimeoutMs: timeoutMs });
    try {
      const env = await callWorker(channel, "forget", {}, timeoutMs);
      if (!env.ok) throw new Error(env.error?.message ?? "failed");
    } finally {
      channel.close();
    }
  } catch (err) {
    progress(`could not remove the setup spec of worker ${kernelId}: ${(err as Error).message}`);
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
