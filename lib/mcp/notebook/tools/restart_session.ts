import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { z } from "zod";
import { sleep } from "../../../kernel/jupyter.ts";
import type { NotebookMcpContext } from "../context.ts";
import { describeNamespace, introspect, type Namespace } from "../introspect.ts";
import { startProgress } from "../../progress.ts";
import { addTool, textResult } from "../../tool.ts";
import type { AttachedSession } from "../attached_session.ts";
import { findRecord, restartSession, type RestartTarget } from "../../../modes/notebook/restart.ts";
import { ContentsStore, MemoryStore } from "../../../document/store.ts";
import { sessionId, sessionShape, sessionStructured, timeoutSeconds } from "../schemas.ts";
import { replay } from "./start_new_session.ts";

/** restart_session: the same notebook, a new warm kernel (models loaded again). */
export function registerRestartSession(server: McpServer, ctx: NotebookMcpContext): void {
  addTool(server, ctx, "restart_session", {
    title: "Restart the session with the models loaded again",
    description:
      "Give the session's notebook a fresh kernel warmed like the first (models, tokenizers and " +
      "skill functions loaded again): after the kernel died, the server restarted, memory ran " +
      "out, or to start from a clean namespace. The notebook stays the same file; keep using the " +
      "same session_id. rerun=true then runs your code cells again in order, stopping at the " +
      "first error.",
    inputSchema: {
      session_id: sessionId,
      config_path: z.string().min(1).optional().describe(
        "the experiment config (YAML) to warm from, on the machine running this MCP server; " +
          "needed only when the session's record has none (it is recorded for next time)",
      ),
      rerun: z.boolean().default(false).describe("run the notebook's code cells again"),
      timeout_seconds: timeoutSeconds.describe(
        "with rerun: interrupt a re-run cell after this many seconds (default: --timeout)",
      ),
    },
    outputSchema: sessionShape,
    annotations: { destructiveHint: true },
  }, async ({ session_id, config_path, rerun, timeout_seconds }, extra) => {
    const started = performance.now();
    let old: AttachedSession | undefined = ctx.attached(session_id);
    if (!old) old = await ctx.session(session_id).catch(() => undefined);
    let target: RestartTarget;
    if (old) {
      target = {
        id: old.id,
        kernelId: old.kernel.id,
        notebookPath: old.store.path,
        configPath: config_path,
      };
    } else {
      const rec = await findRecord(ctx.client.url, session_id);
      // Neither on the server nor recorded: the lookup's own error says what is there.
      if (!rec) await ctx.session(session_id);
      target = {
        id: rec!.id,
        kernelId: rec!.kernel_id,
        notebookPath: rec!.notebook_path,
        configPath: config_path,
      };
    }
    const info = await ctx.info();
    const doc = old?.doc ??
      (target.notebookPath && info.contents_api
        ? ctx.docFor(new ContentsStore(ctx.client, target.notebookPath))
        : undefined);
    old?.close();
    const report = startProgress(
      extra,
      ctx.settings.progressIntervalMs,
      () =>
        `restarting: ${
          Math.round((performance.now() - started) / 1000)
        } s (loading the models again)`,
    );
    let r;
    try {
      r = await restartSession(await ctx.connection(), target, {
        warmupTimeoutMs: ctx.settings.warmupTimeoutMs,
        kernelStartTimeoutMs: ctx.settings.kernelStartTimeoutMs,
        signal: extra.signal,
        doc,
      });
    } finally {
      report.stop();
    }
    const session = ctx.adopt(r.sessionId, r.kernel, doc ?? new MemoryStore());
    ctx.alias([session_id, target.id, target.kernelId], session);
    const listed = await Promise.race([
      introspect(r.channel).catch((err: Error) => err),
      sleep(15_000).then(() => undefined),
    ]);
    r.channel.close();
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    const lines = [
      r.inPlace
        ? `restarted session ${session.id}: kernel ${r.kernel.id} restarted and warmed again in ${secs} s`
        : `session ${target.id} was gone from the server: new session ${session.id} (kernel ${r.kernel.id}) on the same notebook, warmed in ${secs} s`,
      r.notebookPath
        ? `notebook: ${r.notebookPath} (the same file; its cells are kept, their outputs are from the old kernel)`
        : "no notebook file (a bare kernel): this server keeps the cells in memory",
      session.id !== session_id
        ? `session_id ${session_id} keeps working with this server; the new id is ${session.id}`
        : "",
      `config: ${r.configPath}`,
    ].filter(Boolean);
    if (listed instanceof Error) lines.push(`namespace: ${listed.message}`);
    else if (listed) lines.push("", describeNamespace(listed as Namespace));
    if (!rerun) {
      lines.push(
        "",
        "the kernel's variables from before are gone; rerun=true runs your cells again",
      );
      return {
        ...textResult(ctx, lines.join("\n")),
        structuredContent: sessionStructured(session),
      };
    }
    return await replay(ctx, session, lines, timeout_seconds, extra, false);
  });
}
