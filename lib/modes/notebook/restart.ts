/**
 * Recovery in place: a notebook session's kernel replaced by a new warm one
 * (the models loaded again through the same warm-up as `interp-exec
 * notebook`), the notebook kept. A kernel the server still has is restarted
 * in place (the session and kernel ids stay); one that is gone (the server
 * restarted, the kernel was culled or shut down) gets a new Jupyter session
 * on the same notebook path. The warm-up cell's outputs are replaced, the
 * session record updated. Used by the restart_session tool and by
 * `interp-exec restart`.
 */

import { executionFor } from "../../config/config.ts";
import type { Connection } from "../../server/connect.ts";
import { JupyterError, UsageError } from "../../cli/errors.ts";
import { configPathArg, loadExperiment } from "../../config/experiment.ts";
import type { KernelChannel, KernelModel } from "../../kernel/jupyter.ts";
import { progress } from "../../cli/log.ts";
import { cellId } from "../../kernel/nbformat.ts";
import { defaultWorkspace, provisionKernel } from "../../warm/provision.ts";
import { redactor, redactOutputs } from "../../kernel/redact.ts";
import { skillSpec } from "../../config/skills.ts";
import {
  forgetSessions,
  recordedSessions,
  recordSession,
  type SessionRecord,
  sessionRecord,
} from "../../server/state.ts";
import { buildSpec, SETUP_CELL_SOURCE, warmUp, type WarmupResult } from "../../warm/warmup.ts";
import type { NotebookDoc } from "../../document/document.ts";
import { isSetupCell, setupCellMetadata } from "../../document/store.ts";

/** What is known about the session to restart. */
export interface RestartTarget {
  /** The id the agent knows it by. */
  id: string;
  kernelId?: string;
  notebookPath: string | null;
  /** The experiment config; else the record's. */
  configPath?: string;
}

/** How a restart went. */
export interface Restarted {
  sessionId: string;
  kernel: KernelModel;
  notebookPath: string | null;
  /** True when the old kernel was restarted (ids kept); false: a new session. */
  inPlace: boolean;
  warm: WarmupResult;
  configPath: string;
  /** The warm kernel's open channel; the caller closes it. */
  channel: KernelChannel;
  record: SessionRecord;
}

/** The session's record, by its id or its kernel's, on this server. */
export async function findRecord(
  serverUrl: string,
  id: string,
): Promise<SessionRecord | undefined> {
  const norm = (u: string) => u.endsWith("/") ? u : u + "/";
  return (await recordedSessions()).find((r) =>
    norm(r.server_url) === norm(serverUrl) && (r.id === id || r.kernel_id === id)
  );
}

/**
 * Gives the session's notebook a new warm kernel. `doc` (when the caller
 * holds the notebook) gets the new warm-up outputs; else the file is left to
 * the caller.
 */
export async function restartSession(
  conn: Connection,
  target: RestartTarget,
  opts: {
    warmupTimeoutMs: number;
    kernelStartTimeoutMs: number;
    signal: AbortSignal;
    doc?: NotebookDoc;
  },
): Promise<Restarted> {
  const { client, info } = conn;
  const record = await findRecord(client.url, target.id);
  // An agent's path must name a YAML file; the recorded one came from the user.
  const configPath = target.configPath
    ? configPathArg(target.configPath, "restart_session")
    : record?.config_path;
  if (!configPath) {
    throw new UsageError(
      `no experiment config is recorded for session ${target.id}`,
      "pass config_path (the experiment YAML it was warmed from) once; it is recorded for next time",
    );
  }
  const { loaded, skills } = await loadExperiment({ config: configPath }, "restart_session");
  const notebookPath = target.notebookPath ?? record?.notebook_path ?? null;
  const hidden = executionFor(loaded.config, "notebook").hide_setup;
  const redact = redactor(client.target.token);
  const kernelId = target.kernelId ?? record?.kernel_id ?? target.id;
  const abortReason = () => "SIGINT" as const;

  let sessionId = target.id;
  let kernel: KernelModel | undefined = await client.getKernel(kernelId).catch(() => undefined);
  let inPlace = false;
  let channel: KernelChannel;
  let warm: WarmupResult;
  if (kernel) {
    // The server still has the kernel: restart it in place, ids kept.
    progress(`restarting kernel ${kernel.id}`);
    const res = await client.api(`api/kernels/${encodeURIComponent(kernel.id)}/restart`, {
      method: "POST",
      timeoutMs: opts.kernelStartTimeoutMs,
    });
    kernel = await res.json() as KernelModel;
    inPlace = true;
    channel = await client.connectKernel(kernel, { startTimeoutMs: opts.kernelStartTimeoutMs });
    try {
      const spec = buildSpec(loaded, skills.map(skillSpec), defaultWorkspace(conn, loaded));
      progress(`warming up: ${spec.models.length} model(s), ${spec.skills.length} skill(s)`);
      warm = await warmUp(channel, spec, {
        hidden,
        redact,
        timeoutMs: opts.warmupTimeoutMs,
        signal: opts.signal,
        abortReason,
      });
    } catch (err) {
      channel.close();
      throw err;
    }
  } else {
    // Gone (the server restarted, or the kernel was culled or shut down): a
    // new session on the same notebook.
    if (!notebookPath || !info.sessions_api || !info.contents_api) {
      throw new JupyterError(
        "kernel_died",
        `session ${target.id} is gone and has no notebook on this server to bind a new kernel to`,
        "start_new_session(config_path=...) starts a fresh one",
      );
    }
    const stale = (await client.listSessions()).find((s) => s.path === notebookPath);
    if (stale) await client.shutdownSession(stale.id).catch(() => {});
    const wk = await provisionKernel(conn, {
      loaded,
      skills,
      timeoutMs: opts.warmupTimeoutMs,
      kernelStartTimeoutMs: opts.kernelStartTimeoutMs,
      keepOnError: false,
      signal: opts.signal,
      abortReason,
      // The session being restarted is recorded already; its record is updated after.
      record: false,
      hiddenSetup: hidden,
      session: async (env) => {
        const s = await client.startSession({
          path: notebookPath,
          name: loaded.config.name,
          kernelName: loaded.config.execution.kernel_name,
          env,
        });
        return { sessionId: s.id, kernel: s.kernel, notebookPath };
      },
    });
    sessionId = wk.started.sessionId ?? wk.started.kernel.id;
    kernel = wk.started.kernel;
    channel = wk.channel;
    warm = wk.warm;
  }

  if (opts.doc && notebookPath && !hidden) {
    const nb = await opts.doc.current({ fresh: true });
    const setup = nb.cells.find(isSetupCell);
    const outputs = redactOutputs(warm.outputs, redact);
    opts.doc.apply({
      op: "upsert",
      id: setup?.id ?? cellId(),
      source: setup?.source ?? SETUP_CELL_SOURCE,
      outputs,
      execution_count: warm.execution_count,
      metadata: setupCellMetadata(),
      before: setup ? undefined : nb.cells[0]?.id ?? null,
    });
  }

  const rec = sessionRecord({
    id: sessionId,
    kernelId: kernel.id,
    serverUrl: client.url,
    mode: "notebook",
    notebookPath,
    loaded,
    createdAt: record?.created_at,
    idleTimeout: record?.idle_timeout,
  });
  if (record && record.id !== sessionId) await forgetSessions([record.id], client.url);
  await recordSession(rec);
  return {
    sessionId,
    kernel,
    notebookPath,
    inPlace,
    warm,
    configPath: loaded.path,
    channel,
    record: rec,
  };
}
