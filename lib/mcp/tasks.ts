/**
 * Runs as MCP tasks (spec revision 2025-11-25, the SDK's experimental
 * tasks): a client that asks for a task (tools/call with `params.task`) on
 * a run tool gets a CreateTaskResult at once; the run goes on as the tool's
 * background run would, tasks/get and tasks/result follow it (the SDK
 * serves them from the store), tasks/list lists them, and tasks/cancel
 * interrupts the run. A call without `params.task` runs as it always did.
 */

import { InMemoryTaskStore } from "@modelcontextprotocol/sdk/experimental/tasks";
import type { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import type { Extra } from "./progress.ts";
import { followRun, type Run, type RunRegistry } from "./runs.ts";
import { redactJson, type ResultContext, type ToolResult } from "./tool.ts";

/** The server capability to declare. */
export const TASKS_CAPABILITY = {
  list: {},
  cancel: {},
  requests: { tools: { call: {} } },
};

/** How long an ended task's result is kept for tasks/result. */
const TASK_TTL_MS = 6 * 3600_000;

/** The SDK's in-memory task store, where cancelling a task interrupts its run. */
export class RunTaskStore extends InMemoryTaskStore {
  private readonly byTask = new Map<string, Run>();

  /** Ties a task to the run it reports. */
  attach(taskId: string, run: Run): void {
    this.byTask.set(taskId, run);
    run.done.then(() => this.byTask.delete(taskId));
  }

  override async updateTaskStatus(
    taskId: string,
    status: Parameters<InMemoryTaskStore["updateTaskStatus"]>[1],
    statusMessage?: string,
    sessionId?: string,
  ): Promise<void> {
    await super.updateTaskStatus(taskId, status, statusMessage, sessionId);
    if (status === "cancelled") this.byTask.get(taskId)?.interrupt();
  }
}

/** What a task needs from the server. */
export interface TaskHost extends ResultContext {
  readonly runs: RunRegistry;
  /** The server's task store (passed to its Server as `taskStore`). */
  readonly tasks: RunTaskStore;
  readonly settings: { progressIntervalMs: number };
}

type TaskExtra = Extra & {
  taskStore: {
    createTask(o: { ttl?: number | null; pollInterval?: number }): Promise<{ taskId: string }>;
    storeTaskResult(id: string, status: "completed" | "failed", r: unknown): Promise<void>;
    getTask(id: string): Promise<unknown>;
    getTaskResult(id: string): Promise<unknown>;
  };
  taskId?: string;
};

/**
 * Creates a task for one call: `start` makes the call return at once (the
 * tool with background=true); the task ends with the run's result.
 */
export async function createRunTask(
  host: TaskHost,
  extra: Extra,
  start: () => Promise<ToolResult>,
): Promise<{ task: unknown }> {
  const store = (extra as TaskExtra).taskStore;
  const task = await store.createTask({ ttl: TASK_TTL_MS, pollInterval: 1000 });
  const finish = (r: ToolResult) =>
    store.storeTaskResult(task.taskId, r.isError ? "failed" : "completed", redactJson(host, r))
      .catch(() => {/* cancelled meanwhile: the task is terminal already */});
  const first = await start();
  const runId = first.structuredContent?.run_id;
  let run: Run | undefined;
  try {
    run = typeof runId === "string" ? host.runs.get(runId) : undefined;
  } catch {
    run = undefined;
  }
  if (!run) {
    // Nothing runs (an error, insert_cell without run): the task is its result.
    await finish(first);
  } else {
    host.tasks.attach(task.taskId, run);
    // Progress on the request's token goes on while the task runs.
    if (extra._meta?.progressToken !== undefined) {
      followRun(run, Infinity, extra, host.settings.progressIntervalMs, false).catch(() => {});
    }
    run.done.then(finish);
  }
  return { task: await store.getTask(task.taskId) };
}

/**
 * Makes the named tools of an McpServer run as tasks when a client asks
 * (execution.taskSupport "optional"). A call without a task keeps the plain
 * path: the SDK would otherwise make every call a task and poll it.
 */
export function offerTasks(server: McpServer, host: TaskHost, names: string[]): void {
  type Handler = (args: Record<string, unknown>, extra: Extra) => Promise<ToolResult>;
  type Registered = { handler: Handler; execution?: unknown };
  const internal = server as unknown as {
    _registeredTools: Record<string, Registered>;
    handleAutomaticTaskPolling: unknown;
    validateToolInput(t: Registered, a: unknown, n: string): Promise<Record<string, unknown>>;
    validateToolOutput(t: Registered, r: unknown, n: string): Promise<void>;
  };
  for (const name of names) {
    const tool = internal._registeredTools[name];
    if (!tool) continue;
    const plain = tool.handler;
    tool.execution = { taskSupport: "optional" };
    tool.handler = Object.assign(
      (args: Record<string, unknown>, extra: Extra) => plain(args, extra),
      {
        createTask: (args: Record<string, unknown>, extra: Extra) =>
          createRunTask(host, extra, () => plain({ ...args, background: true }, extra)),
        getTask: (_: unknown, extra: TaskExtra) => extra.taskStore.getTask(extra.taskId!),
        getTaskResult: (_: unknown, extra: TaskExtra) =>
          extra.taskStore.getTaskResult(extra.taskId!),
      },
    );
  }
  internal.handleAutomaticTaskPolling = async (
    tool: Registered,
    request: { params: { name: string; arguments?: unknown } },
    extra: Extra,
  ) => {
    const args = await internal.validateToolInput(
      tool,
      request.params.arguments,
      request.params.name,
    );
    const result = await tool.handler(args, extra);
    await internal.validateToolOutput(tool, result, request.params.name);
    return result;
  };
}
