/**
 * A pooled kernel matches a config by the fingerprint of the config's
 * loading part: the models as kernel_setup.py receives them (names, paths,
 * revisions, dtypes, devices, device maps, adapters, custom load code, load
 * kwargs, trust_remote_code, hidden, variable names), obfuscate, the skills
 * (names and text hashes) and the kernel spec. A `--preimport` pool holds
 * generic kernels that have only imported torch and transformers; any config
 * on the same server (and kernel spec) claims one and runs its warm-up there.
 */

import type { Experiment } from "../../config/experiment.ts";
import { buildSpec } from "../warmup.ts";

/** JSON with object keys sorted at every level (undefined members dropped). */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== "object") return JSON.stringify(value ?? null);
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(",")}}`;
}

export async function sha256(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * What of a config decides what a kernel holds after its warm-up: the
 * models as kernel_setup.py receives them (paths resolved), obfuscate, the
 * skills (name, preload, a hash of the text) and the kernel spec. Not the
 * experiment's name, task, workspace or mode: a bind sets those.
 */
export async function loadingPart(experiment: Experiment): Promise<Record<string, unknown>> {
  const { loaded, skills } = experiment;
  const spec = buildSpec(loaded, [], "");
  return {
    kernel_name: loaded.config.execution.kernel_name,
    obfuscate: spec.obfuscate,
    models: spec.models.map((m) => ({
      name: m.name,
      path: m.path,
      revision: m.revision,
      dtype: m.dtype,
      device: m.device,
      device_map: m.device_map,
      is_peft: m.is_peft,
      base_model: m.base_model,
      base_model_path: m.base_model_path,
      tokenizer: m.tokenizer,
      custom_load_code: m.custom_load_code,
      load_kwargs: m.load_kwargs,
      trust_remote_code: m.trust_remote_code,
      hidden: m.hidden,
      var_name: m.var_name,
      tokenizer_var_name: m.tokenizer_var_name,
    })),
    skills: await Promise.all(
      skills.map(async (s) => ({ name: s.name, preload: s.preload, sha256: await sha256(s.text) })),
    ),
  };
}

/** The fingerprint of a config's loading part (sha256 of its canonical JSON). */
export async function fingerprint(experiment: Experiment): Promise<string> {
  return await sha256(canonicalJson(await loadingPart(experiment)));
}

/** The fingerprint of a preimport pool's kernels. */
export function preimportFingerprint(kernelName: string): string {
  return `preimport:${kernelName}`;
}
