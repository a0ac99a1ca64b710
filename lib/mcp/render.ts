/**
 * Turning kernel outputs into what an agent reads: text (streams, the best
 * text form of rich reprs, HTML summarised to text, clean tracebacks) and
 * images as MCP image content, bounded so one result never floods the
 * agent's context: long text is cut in the middle with a note, large images
 * are scaled down, and extra images are only counted.
 */

import { Buffer } from "node:buffer";
import type { Output } from "../kernel/nbformat.ts";
import { applyCarriageReturns } from "../kernel/run.ts";
import { stripAnsi } from "../kernel/nbformat.ts";
import { pngSize, shrinkPng } from "./png.ts";
import {
  type Content,
  LINK_TEXT_CHARS,
  type OutputStore,
  THUMB_BYTES,
  THUMB_PX,
} from "./resources.ts";

/** SVG shown as text up to this many characters; longer ones are described. */
const SVG_TEXT_CHARS = 6000;

/** Limits on one tool result. */
export interface RenderLimits {
  /** Characters of text, in all. */
  maxChars: number;
  /** Longest side of an image, in pixels. */
  maxImagePx: number;
  /** Bytes of one image (after scaling). */
  maxImageBytes: number;
  /** Images in one result. */
  maxImages: number;
  /**
   * Where images and long texts go as resources (a thumbnail or the first
   * and last lines stay inline, with a resource_link); absent, or `inline`,
   * they stay inline, bounded by the limits above.
   */
  outputs?: OutputStore;
}

/** Text and the other content blocks (images, resource links) from a list of outputs. */
export interface Rendered {
  text: string;
  images: Content[];
}

/** The text of a MIME bundle: markdown, then plain text, then HTML summarised. */
export function bestText(data: Record<string, unknown>): string | undefined {
  const get = (mime: string) => {
    const v = data[mime];
    return v === undefined ? undefined : Array.isArray(v) ? v.join("") : String(v);
  };
  const md = get("text/markdown");
  if (md !== undefined) return md;
  const plain = get("text/plain");
  const html = get("text/html");
  // Figures' text/plain is only "<Figure size ...>": the image says more.
  if (plain !== undefined && (html === undefined || !/^<[A-Za-z][^>]*>$/.test(plain.trim()))) {
    return plain;
  }
  if (html !== undefined) return `[HTML shown as text]\n${htmlToText(html)}`;
  if (plain !== undefined) return plain;
  const latex = get("text/latex");
  if (latex !== undefined) return latex;
  const json = data["application/json"];
  if (json !== undefined) return JSON.stringify(json, null, 2);
  return undefined;
}

/** Readable text from HTML: tables as rows of cells, blocks as lines, entities decoded. */
export function htmlToText(html: string): string {
  return decodeEntities(
    html
      .replace(/<(script|style)\b[^>]*>[\s\S]*?<\/\1\s*>/gi, "")
      .replace(/<!--[\s\S]*?-->/g, "")
      .replace(/<\/t[dh]\s*>\s*(?=<t[dh]\b)/gi, " | ")
      .replace(/<br\s*\/?>|<\/(p|div|tr|li|h[1-6]|table|thead|tbody|pre|ul|ol)\s*>/gi, "\n")
      .replace(/<li\b[^>]*>/gi, "- ")
      .replace(/<[^>]+>/g, ""),
  )
    .split("\n")
    .map((l) => l.replace(/[ \t]+/g, " ").trim())
    .filter((l, i, all) => l !== "" || (i > 0 && all[i - 1] !== ""))
    .join("\n")
    .trim();
}

function decodeEntities(text: string): string {
  const named: Record<string, string> = {
    amp: "&",
    lt: "<",
    gt: ">",
    quot: '"',
    apos: "'",
    nbsp: " ",
  };
  return text.replace(/&(#x[0-9a-f]+|#\d+|[a-z]+);/gi, (m, e: string) => {
    if (e[0] === "#") {
      const n = e[1] === "x" || e[1] === "X" ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(n) ? String.fromCodePoint(n) : m;
    }
    return named[e.toLowerCase()] ?? m;
  });
}

/**
 * A traceback as plain text: colours removed, and IPython's rule of dashes
 * dropped (it says nothing and costs tokens).
 */
export function cleanTraceback(traceback: string[]): string {
  return stripAnsi(traceback.join("\n"))
    .split("\n")
    .filter((l) => !/^-{20,}$/.test(l.trim()))
    .join("\n")
    .trim();
}

/**
 * Renders outputs for the agent: text in output order (images marked where
 * they appeared) and the images as image content, scaled down when large.
 */
export function renderOutputs(
  outputs: Output[],
  limits: RenderLimits,
  opts: {
    executionCount?: number | null;
    /**
     * The URI that serves output `index` where it is kept (a notebook
     * cell's): links point there instead of into the store.
     */
    at?: (index: number) => string;
  } = {},
): Rendered {
  const parts: string[] = [];
  const images: Content[] = [];
  let skipped = 0;
  /** Thumbnails shown (with --inline-outputs off). */
  let shown = 0;
  for (const [index, o] of outputs.entries()) {
    const at = opts.at?.(index);
    switch (o.output_type) {
      case "stream": {
        // Cells written by others (the warm-up) keep a progress bar's every state.
        const text = linkText(applyCarriageReturns(o.text), limits.outputs, o.name, images, at);
        parts.push(o.name === "stderr" ? `[stderr]\n${text}` : text);
        break;
      }
      case "error":
        parts.push(cleanTraceback(o.traceback) || `${o.ename}: ${stripAnsi(o.evalue)}`);
        break;
      case "display_data":
      case "execute_result": {
        const svg = svgOf(o.data);
        if (svg !== undefined && !imageOf(o.data)) {
          const prefix = o.output_type === "execute_result"
            ? `Out[${o.execution_count ?? opts.executionCount ?? " "}]: `
            : "";
          parts.push(prefix + renderSvg(svg));
          break;
        }
        const image = imageOf(o.data);
        let note = "";
        const store = limits.outputs?.inline === false ? limits.outputs : undefined;
        if (image && store) {
          const r = linkImage(store, image.mime, image.base64, shown < limits.maxImages, at);
          if (r.thumbnail) shown++;
          images.push(...r.content);
          note = r.note;
        } else if (image) {
          if (images.length < limits.maxImages) {
            const r = renderImage(image.mime, image.base64, limits);
            if (r.content) images.push(r.content);
            note = r.content
              ? `[image ${images.length}: ${r.note}]`
              : `[image not shown: ${r.note}]`;
          } else {
            skipped++;
            note = "[image not shown: too many in one result]";
          }
        }
        const best = image && isFigureRepr(o.data) ? undefined : bestText(o.data);
        const text = best === undefined ? undefined : linkText(
          best,
          limits.outputs,
          o.output_type === "execute_result" ? "result" : "display",
          images,
          // The URI of an output with an image serves the image.
          image ? undefined : at,
        );
        const prefix = o.output_type === "execute_result"
          ? `Out[${o.execution_count ?? opts.executionCount ?? " "}]: `
          : "";
        const body = [note, text].filter(Boolean).join("\n");
        if (body) parts.push(prefix + body);
        else if (!image) parts.push(`${prefix}[${Object.keys(o.data).join(", ")}: no text form]`);
        break;
      }
    }
  }
  if (skipped) parts.push(`[${skipped} more image(s) not shown; read_notebook lists them]`);
  return { text: parts.map((p) => p.replace(/\n+$/, "")).join("\n"), images };
}

/**
 * A text over {@link LINK_TEXT_CHARS} put in `store` (the link appended to
 * `links`) and replaced by its first and last lines with a note; otherwise,
 * or with no store (or --inline-outputs), the text itself.
 */
export function linkText(
  text: string,
  store: OutputStore | undefined,
  what: string,
  links: Content[],
  at?: string,
): string {
  if (!store || store.inline || text.length <= LINK_TEXT_CHARS) return text;
  const lines = text.split("\n").length;
  const link = store.putText(
    text,
    `${what} output (${lines.toLocaleString("en-US")} lines)`,
    `the whole ${what} output, ${text.length.toLocaleString("en-US")} characters`,
    at,
  );
  links.push(link);
  return `${previewText(text)}\n[${what} output of ${lines.toLocaleString("en-US")} lines, ${
    text.length.toLocaleString("en-US")
  } characters: only its first and last lines are shown; all of it: resources/read ${link.uri}]`;
}

/** The first and last lines of a long text (each line cut when long), with a note of what is left out. */
export function previewText(text: string, lines = 10, lineChars = 300): string {
  const all = text.split("\n");
  const clip = (l: string) =>
    l.length <= lineChars ? l : `${l.slice(0, lineChars)} [... ${l.length - lineChars} more]`;
  if (all.length <= lines * 2) return all.map(clip).join("\n");
  const head = all.slice(0, lines).map(clip);
  const tail = all.slice(-lines).map(clip);
  return [...head, `[... ${(all.length - lines * 2).toLocaleString("en-US")} lines ...]`, ...tail]
    .join("\n");
}

/**
 * An image put in `store`: a resource_link to the original and, for PNGs
 * (when `thumbnail`), a small thumbnail inline; the note says both.
 */
export function linkImage(
  store: OutputStore,
  mime: string,
  base64: string,
  thumbnail = true,
  at?: string,
): { content: Content[]; note: string; thumbnail: boolean } {
  if (base64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) {
    return {
      content: [],
      note: `[${mime} output left out: its data is not base64]`,
      thumbnail: false,
    };
  }
  const bytes = new Uint8Array(Buffer.from(base64, "base64"));
  if (!looksLike(mime, bytes)) {
    return {
      content: [],
      note: `[${mime} output left out: its data is not a ${mime.slice(6).toUpperCase()}]`,
      thumbnail: false,
    };
  }
  const dims = mime === "image/png"
    ? pngSize(bytes)
    : mime === "image/jpeg"
    ? jpegSize(bytes)
    : undefined;
  const shape = dims ? ` ${dims.width}x${dims.height}` : "";
  const link = store.putBlob(
    base64,
    mime,
    `${mime.slice(6)} image${shape}`,
    `${mime}${shape}, ${kb(bytes.length)}`,
    at,
  );
  let thumb: Content | undefined;
  let thumbNote = "";
  if (thumbnail && mime === "image/png") {
    try {
      const s = shrinkPng(bytes, THUMB_PX, THUMB_BYTES);
      thumb = { type: "image", data: Buffer.from(s.bytes).toString("base64"), mimeType: mime };
      thumbNote = s.from ? `, shown as a ${s.width}x${s.height} thumbnail` : ", shown whole";
    } catch { /* a PNG fast-png cannot decode: the link alone */ }
  }
  return {
    content: thumb ? [thumb, link] : [link],
    note: `[image: ${mime}${shape}, ${
      kb(bytes.length)
    }${thumbNote}; the original: resources/read ${link.uri}]`,
    thumbnail: thumb !== undefined,
  };
}

export function imageOf(
  data: Record<string, unknown>,
): { mime: string; base64: string } | undefined {
  for (const mime of ["image/png", "image/jpeg", "image/gif", "image/webp"]) {
    const v = data[mime];
    if (typeof v === "string" || Array.isArray(v)) {
      return { mime, base64: (Array.isArray(v) ? v.join("") : v).replace(/\s+/g, "") };
    }
  }
  return undefined;
}

function svgOf(data: Record<string, unknown>): string | undefined {
  const v = data["image/svg+xml"];
  return typeof v === "string" ? v : Array.isArray(v) ? v.join("") : undefined;
}

/**
 * An SVG as text for the agent: small ones whole (the markup says what is
 * drawn), larger ones described (size, and the text they contain).
 */
export function renderSvg(svg: string): string {
  const attr = (name: string) => svg.match(new RegExp(`<svg\\b[^>]*\\s${name}="([^"]+)"`))?.[1];
  const size = [attr("width"), attr("height")].every(Boolean)
    ? ` ${attr("width")} x ${attr("height")}`
    : "";
  const body = svg.replace(/^<\?xml[^>]*>\s*/, "").replace(/<!DOCTYPE[^>]*>\s*/, "").trim();
  if (body.length <= SVG_TEXT_CHARS) return `[image/svg+xml${size}, as text]\n${body}`;
  const texts = [...svg.matchAll(/<(text|title|tspan)\b[^>]*>([^<]+)</g)]
    .map((m) => decodeEntities(m[2]).trim())
    .filter(Boolean);
  const words = texts.length
    ? `; its text: ${truncate([...new Set(texts)].join(" | "), 1500)}`
    : "";
  return `[image/svg+xml${size}, ${kb(svg.length)}: too large to show as text${words}; ` +
    "a PNG figure (the inline default) reaches you as an image]";
}

function isFigureRepr(data: Record<string, unknown>): boolean {
  const plain = data["text/plain"];
  const text = Array.isArray(plain) ? plain.join("") : String(plain ?? "");
  return /^<(Figure|matplotlib|PIL\.|IPython\.core\.display\.Image)/.test(text.trim()) ||
    text.trim() === "";
}

/** Whether `bytes` start as a file of `mime` does. */
function looksLike(mime: string, b: Uint8Array): boolean {
  const starts = (...sig: number[]) => sig.every((x, i) => b[i] === x);
  switch (mime) {
    case "image/png":
      return starts(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a);
    case "image/jpeg":
      return starts(0xff, 0xd8, 0xff);
    case "image/gif":
      return starts(0x47, 0x49, 0x46, 0x38);
    case "image/webp":
      return starts(0x52, 0x49, 0x46, 0x46) && b[8] === 0x57 && b[9] === 0x45 && b[10] === 0x42 &&
        b[11] === 0x50;
    default:
      return true;
  }
}

function renderImage(
  mime: string,
  base64: string,
  limits: RenderLimits,
): { content?: Content; note: string } {
  // Code can display anything under an image MIME type; data that is not
  // base64 of that format must not reach the result (the SDK would refuse
  // the whole result with -32602, and the agent would never see its cell).
  if (base64.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(base64)) {
    return { note: `${mime} output left out: its data is not base64` };
  }
  const bytes = new Uint8Array(Buffer.from(base64, "base64"));
  if (!looksLike(mime, bytes)) {
    return { note: `${mime} output left out: its data is not a ${mime.slice(6).toUpperCase()}` };
  }
  if (mime === "image/png") {
    try {
      const s = shrinkPng(bytes, limits.maxImagePx, limits.maxImageBytes);
      const note = s.from
        ? `${mime} ${s.width}x${s.height}, scaled down from ${s.from.width}x${s.from.height} (${
          kb(s.from.bytes)
        }); the notebook keeps the original`
        : `${mime} ${s.width}x${s.height}`;
      return {
        content: { type: "image", data: Buffer.from(s.bytes).toString("base64"), mimeType: mime },
        note,
      };
    } catch (err) {
      if (bytes.length > limits.maxImageBytes) {
        return { note: `${mime} of ${kb(bytes.length)} not shown: ${(err as Error).message}` };
      }
    }
  }
  const dims = mime === "image/jpeg" ? jpegSize(bytes) : undefined;
  const shape = dims ? ` ${dims.width}x${dims.height}` : "";
  if (dims && Math.max(dims.width, dims.height) > limits.maxImagePx * 2) {
    return {
      note: `${mime}${shape} is larger than ${
        limits.maxImagePx * 2
      } px (display it smaller, or as a PNG, which is scaled down for you)`,
    };
  }
  if (bytes.length > limits.maxImageBytes) {
    return {
      note: `${mime}${shape} of ${
        kb(bytes.length)
      } is too large (save a smaller figure, or a PNG, which is scaled down for you)`,
    };
  }
  return { content: { type: "image", data: base64, mimeType: mime }, note: `${mime}${shape}` };
}

/** Width and height from a JPEG's frame header (SOFn), or undefined. */
export function jpegSize(bytes: Uint8Array): { width: number; height: number } | undefined {
  if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return undefined;
  let i = 2;
  while (i + 9 < bytes.length) {
    if (bytes[i] !== 0xff) return undefined;
    const marker = bytes[i + 1];
    if (marker === 0xff) {
      i++;
      continue;
    }
    const len = (bytes[i + 2] << 8) | bytes[i + 3];
    const sof = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (sof) {
      return {
        height: (bytes[i + 5] << 8) | bytes[i + 6],
        width: (bytes[i + 7] << 8) | bytes[i + 8],
      };
    }
    i += 2 + len;
  }
  return undefined;
}

function kb(n: number): string {
  return n >= 1024 * 1024 ? `${(n / 1024 / 1024).toFixed(1)} MB` : `${Math.ceil(n / 1024)} KB`;
}

/**
 * Cuts text longer than `max` characters in the middle (the start and the
 * end say the most: what ran, and how it ended) with a note of how much
 * was cut.
 */
export function truncate(text: string, max: number, where = ""): string {
  if (text.length <= max) return text;
  const head = Math.floor(max * 0.6);
  const tail = max - head;
  const cut = text.length - head - tail;
  return `${text.slice(0, head)}\n\n[... ${cut.toLocaleString("en-US")} of ${
    text.length.toLocaleString("en-US")
  } characters cut${where} ...]\n\n${text.slice(text.length - tail)}`;
}
