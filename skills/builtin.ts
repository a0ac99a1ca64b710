/**
 * The built-in skills, embedded in the binary through text imports (one
 * import per file: the module graph is what `deno compile` embeds).
 */

import activations from "./activations.md" with { type: "text" };
import attention from "./attention.md" with { type: "text" };
import cache from "./cache.md" with { type: "text" };
import components from "./components.md" with { type: "text" };
import generation from "./generation.md" with { type: "text" };
import gpuEnvironment from "./gpu-environment.md" with { type: "text" };
import heads from "./heads.md" with { type: "text" };
import inputAttribution from "./input-attribution.md" with { type: "text" };
import logitLens from "./logit-lens.md" with { type: "text" };
import modelInternals from "./model-internals.md" with { type: "text" };
import patching from "./patching.md" with { type: "text" };
import probes from "./probes.md" with { type: "text" };
import researchMethodology from "./research-methodology.md" with { type: "text" };
import sae from "./sae.md" with { type: "text" };
import steering from "./steering.md" with { type: "text" };
import tokenProbs from "./token-probs.md" with { type: "text" };

/** File name (without .md) -> markdown text. */
export const BUILTIN_SKILLS: Readonly<Record<string, string>> = {
  "activations": activations,
  "attention": attention,
  "cache": cache,
  "components": components,
  "generation": generation,
  "gpu-environment": gpuEnvironment,
  "heads": heads,
  "input-attribution": inputAttribution,
  "logit-lens": logitLens,
  "model-internals": modelInternals,
  "patching": patching,
  "probes": probes,
  "research-methodology": researchMethodology,
  "sae": sae,
  "steering": steering,
  "token-probs": tokenProbs,
};
