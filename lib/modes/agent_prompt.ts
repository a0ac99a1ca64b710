/**
 * The `agent_prompt` of a handle: markdown a harness can put into the
 * agent's system prompt. It is built from the kernel's summary, which is
 * already obfuscated, so a hidden model's identity cannot leak through it.
 */

import type { KernelSummary, ToolSummary } from "../config/handle.ts";
import type { Skill } from "../config/skills.ts";
import { formatCount } from "../cli/format.ts";

export interface PromptInput {
  mode: "notebook" | "mcp" | "filesystem";
  experiment: string;
  task?: string;
  summary: Pick<KernelSummary, "models" | "skills">;
  skills: Skill[];
  workspace: string;
  sessionId?: string;
  /** mcp mode: the tools the agent has (instead of a namespace). */
  tools?: ToolSummary[];
}

const modeIntro: Record<PromptInput["mode"], string> = {
  notebook:
    "You work in a live Jupyter kernel through the notebook MCP tools. Everything below is already loaded in it: do not load models again.",
  mcp: "You can only call the MCP tools you were given; the models below are loaded behind them.",
  filesystem:
    "You work with files: write Python scripts in the workspace and run them. The runtime module loads the models below on demand.",
};

/** Markdown describing the agent's environment. */
export function agentPrompt(p: PromptInput): string {
  const out: string[] = [`# Environment: ${p.experiment}`, "", modeIntro[p.mode]];
  if (p.sessionId && p.mode === "notebook") {
    out.push("", `Attach with \`attach_to_session(session_id="${p.sessionId}")\`.`);
  }
  if (p.mode === "notebook") {
    out.push(
      "",
      "Cells that may run longer than a minute or so: pass `background=true` to `execute_code` " +
        "(it returns a `run_id` at once), keep working, and collect the outputs with " +
        "`wait(run_id)`; `interrupt(run_id)` stops one, `list_runs` shows them.",
    );
  }
  out.push("", "## Models");
  if (p.summary.models.length === 0) out.push("", "No models are loaded.");
  for (const m of p.summary.models) {
    const params = formatCount(m.n_params);
    const name = m.hidden ? "identity hidden" : m.display_name;
    out.push(
      `- \`${m.var_name}\` and \`${m.tokenizer_var_name}\`: ${m.class}${
        m.peft ? " (PEFT adapter)" : ""
      }, ${params} parameters, ${m.device}, ${m.dtype} (${name})`,
    );
  }
  if (p.mode === "filesystem") {
    out.push(
      "",
      "## Workspace",
      "",
      `\`${p.workspace}\`: read \`AGENTS.md\` there first. Scripts load the models with`,
      "`import interp_exec; model = interp_exec.model(); tokenizer = interp_exec.tokenizer()`;",
      "skills are modules under `skills/` (`from skills.activations import extract_activations`).",
      "",
      "## Tools",
      "",
    );
    for (const t of p.tools ?? []) out.push(`- \`${t.name}\`: ${t.description}`);
    const fn = p.summary.skills.filter((s) => s.preload && s.functions.length);
    if (fn.length) {
      out.push("", "## Functions", "");
      for (const s of fn) {
        out.push(
          `- \`skills.${s.name.replace(/-/g, "_")}\`: ${s.functions.map((f) => f.name).join(", ")}`,
        );
      }
    }
    if (p.task?.trim()) out.push("", "## Task", "", p.task.trim());
    return out.join("\n") + "\n";
  }
  if (p.mode === "mcp") {
    out.push("", "## Tools", "");
    for (const t of p.tools ?? []) out.push(`- \`${t.name}\`: ${t.description.split("\n")[0]}`);
    if (p.task?.trim()) out.push("", "## Task", "", p.task.trim());
    return out.join("\n") + "\n";
  }
  const fnSkills = p.summary.skills.filter((s) =>
    s.preload && (s.functions.length || s.classes.length)
  );
  if (fnSkills.length) {
    out.push(
      "",
      "## Functions",
      "",
      "Defined in the namespace; `help(fn)` and `inspect.getsource(fn)` show more.",
    );
    for (const s of fnSkills) {
      out.push("", `### ${s.name}`);
      for (const f of [...s.functions, ...s.classes]) {
        out.push(`- \`${f.name}${f.signature}\`${f.doc ? `: ${f.doc}` : ""}`);
      }
    }
  }
  out.push(
    "",
    "## Variables",
    "",
    `- \`workspace\`: ${p.workspace} (write files here)`,
    `- \`experiment_name\`: ${p.experiment}`,
  );
  if (p.task?.trim()) out.push("", "## Task", "", p.task.trim());
  const guides = p.skills.filter((s) => !s.preload);
  for (const g of guides) out.push("", `## Guide: ${g.name}`, "", g.body);
  return out.join("\n") + "\n";
}
