/**
 * The kernel's variables for list_variables and inspect_variable: names,
 * types, shapes, dtypes, devices, sizes and a bounded repr, from
 * lib/python/namespace.py. Like the namespace listing (introspect.ts) the
 * code runs as a silent request in a
 * throwaway globals dict: no names, no history, no execution count left
 * behind, and nothing recorded in the notebook. A variable is named, never
 * evaluated: `inspect_variable("x.weight")` follows attributes, so no code
 * of the agent's runs.
 */

import type { KernelChannel } from "../../kernel/jupyter.ts";
import { UsageError } from "../../cli/errors.ts";
import { askNamespace } from "./introspect.ts";

/** A variable as list_variables reports it. */
export interface VariableSummary {
  name: string;
  type: string;
  kind: string;
  shape: number[] | null;
  dtype: string | null;
  device: string | null;
  length: number | null;
  size_bytes: number | null;
  n_params?: number;
  summary: string | null;
}

/** A variable as inspect_variable reports it. */
export type VariableDetail = Omit<VariableSummary, "summary"> & {
  repr: string;
  repr_truncated: boolean;
  requires_grad?: boolean;
  stats?: { min: number; max: number; mean: number; std: number };
};

/** How long a tool waits for a busy kernel before saying so. */
const BUSY_WAIT_MS = 15_000;

function ask(channel: KernelChannel, req: Record<string, unknown>): Promise<unknown> {
  return askNamespace(channel, req, "read the kernel's variables", BUSY_WAIT_MS);
}

/** The kernel's variables (modules only when asked), at most `limit`, and how many there are. */
export async function listVariables(
  channel: KernelChannel,
  opts: { limit: number; modules: boolean },
): Promise<{ variables: VariableSummary[]; total: number }> {
  return await ask(channel, { op: "list", ...opts }) as {
    variables: VariableSummary[];
    total: number;
  };
}

/** One variable (a name, or a name followed by attributes: `model.lm_head.weight`). */
export async function inspectVariable(
  channel: KernelChannel,
  name: string,
  maxChars: number,
): Promise<VariableDetail> {
  if (!/^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$/.test(name)) {
    throw new UsageError(
      `inspect_variable: ${JSON.stringify(name.slice(0, 100))} is not a variable name`,
      "pass a name, or a name and attributes (model.lm_head.weight); run_scratch evaluates expressions",
    );
  }
  const r = await ask(channel, { op: "inspect", name, max_chars: maxChars }) as
    | VariableDetail
    | { missing: string; why?: string };
  if ("missing" in r) {
    throw new UsageError(
      r.why
        ? `inspect_variable: ${r.missing}: ${r.why}`
        : `inspect_variable: no variable '${r.missing}' in the kernel`,
      "list_variables shows the names",
    );
  }
  return r;
}
