/**
 * Keeping secrets out of what interp-exec records and of the processes it
 * starts: one redaction function for every place kernel output is written
 * (exec's notebook cells and terminal output, MCP results and notebooks),
 * and the environment children get (none of interp-exec's own variables).
 */

const MARK = "[redacted]";
// A very short secret would match ordinary text; such a token protects little anyway.
const MIN_SECRET = 8;

/** The forms a secret may take in output: plain, URL-encoded, base64 (any alignment, URL-safe too). */
export function secretForms(secret: string): string[] {
  if (secret.length < MIN_SECRET) return [];
  const forms = new Set<string>([secret, encodeURIComponent(secret)]);
  const bytes = new TextEncoder().encode(secret);
  // The secret starts at byte offset k of whatever was encoded: keep the
  // base64 characters whose 6 bits all come from the secret.
  for (let k = 0; k < 3; k++) {
    const padded = new Uint8Array(k + bytes.length);
    padded.set(bytes, k);
    const b64 = btoa(String.fromCharCode(...padded));
    const first = Math.ceil((8 * k) / 6);
    const last = Math.floor((8 * (k + bytes.length)) / 6); // exclusive
    const core = b64.slice(first, last);
    if (core.length >= MIN_SECRET) {
      forms.add(core);
      forms.add(core.replaceAll("+", "-").replaceAll("/", "_"));
    }
  }
  // Longest first, so a form containing another is replaced whole.
  return [...forms].sort((a, b) => b.length - a.length);
}

/** `token=VALUE` in a URL query string (or a form body), whatever the value. */
const TOKEN_PARAM = /([?&;]token=)[^&\s"'<>#;]+/gi;

/**
 * Replaces every form of the secrets in `text` (see {@link secretForms}) and
 * the value of any `token=` query parameter with `[redacted]`.
 */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) {
    for (const form of secretForms(s)) {
      if (out.includes(form)) out = out.replaceAll(form, MARK);
    }
  }
  return out.replace(TOKEN_PARAM, `$1${MARK}`);
}

/** A redactor bound to some secrets (empty ones are ignored). */
export function redactor(...secrets: (string | undefined)[]): (text: string) => string {
  const list = secrets.filter((s): s is string => typeof s === "string" && s.length > 0);
  return (text) => redact(text, list);
}

/** nbformat-like outputs, with every string field redacted. */
export function redactOutputs<T extends { output_type: string }>(
  outputs: T[],
  r: (text: string) => string,
): T[] {
  return outputs.map((o) => redactValue(o, r) as T);
}

function redactValue(v: unknown, r: (text: string) => string): unknown {
  if (typeof v === "string") return r(v);
  if (Array.isArray(v)) return v.map((x) => redactValue(x, r));
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactValue(x, r)]));
  }
  return v;
}

/** Whether an environment variable is interp-exec's own (kept from every child). */
export function isOwnVariable(name: string): boolean {
  return name.startsWith("INTERP_EXEC_") || name === "JUPYTER_TOKEN";
}

/**
 * The environment for a process interp-exec starts: its own, without
 * interp-exec's variables (INTERP_EXEC_*, JUPYTER_TOKEN), plus `extra`.
 * Pass it with `clearEnv: true`, or Deno adds the parent's back.
 */
export function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(Deno.env.toObject())) if (!isOwnVariable(k)) env[k] = v;
  return { ...env, ...extra };
}

/**
 * Redacts a stream of text given in chunks (a kernel's stdout, flushed in
 * pieces): a secret split across two chunks is still replaced whole. Each
 * `push` returns what can be shown now; a tail that may be the start of a
 * secret (or of a `token=` value) is held back until the next chunk shows
 * whether it is, or until `flush`.
 */
export function streamRedactor(
  ...secrets: (string | undefined)[]
): { push: (text: string) => string; flush: () => string } {
  const list = secrets.filter((s): s is string => typeof s === "string" && s.length > 0);
  const forms = list.flatMap(secretForms);
  const r = (text: string) => redact(text, list);
  let pending = "";
  const held = (text: string): number => {
    let hold = 0;
    for (const f of forms) {
      for (let k = Math.min(f.length - 1, text.length); k > hold; k--) {
        if (text.endsWith(f.slice(0, k))) {
          hold = k;
          break;
        }
      }
    }
    // A `token=` value may go on in the next chunk (bounded: 4096 characters).
    const param = text.match(/[?&;](?:t(?:o(?:k(?:e(?:n(?:=[^&\s"'<>#;]{0,4096})?)?)?)?)?)?$/i);
    if (param) hold = Math.max(hold, param[0].length);
    return hold;
  };
  return {
    push(text: string): string {
      const out = r(pending + text);
      const k = held(out);
      pending = out.slice(out.length - k);
      return out.slice(0, out.length - k);
    },
    flush(): string {
      const out = r(pending);
      pending = "";
      return out;
    },
  };
}
