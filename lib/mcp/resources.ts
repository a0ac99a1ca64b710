/**
 * Big outputs as MCP resources. An image, or a text over
 * {@link LINK_TEXT_CHARS} characters, reaches the agent as a small preview
 * (a thumbnail; the first and last lines) and a `resource_link` whose
 * `interp-exec://outputs/{id}` URI `resources/read` serves from a bounded
 * in-memory store of the server process ({@link OutputStore}). The agent's
 * context then holds a link and a preview instead of a whole plot or log;
 * it reads the original only when it needs it. A server started with
 * --inline-outputs keeps the old behaviour (images and text inline, bounded).
 */

import type { Server } from "@modelcontextprotocol/sdk/server/index.js";
import {
  ListResourcesRequestSchema,
  ListResourceTemplatesRequestSchema,
  McpError,
  ReadResourceRequestSchema,
} from "@modelcontextprotocol/sdk/types.js";

/** The URI scheme of every resource interp-exec serves. */
export const URI_PREFIX = "interp-exec://outputs/";

/** The resource template clients list. */
export const OUTPUT_TEMPLATE = `${URI_PREFIX}{id}`;

/** A text output longer than this many characters is linked, with its first and last lines inline. */
export const LINK_TEXT_CHARS = 8000;

/** The longest side of an image's inline thumbnail, in pixels. */
export const THUMB_PX = 256;

/** Bytes of an inline thumbnail, at most. */
export const THUMB_BYTES = 24 * 1024;

/** One block of a tool result (tool.ts re-exports it). */
export type Content =
  | { type: "text"; text: string }
  | { type: "image"; data: string; mimeType: string }
  | ResourceLink;

/** A `resource_link` content block (the MCP ResourceLink shape). */
export interface ResourceLink {
  type: "resource_link";
  uri: string;
  name: string;
  mimeType: string;
  description?: string;
  /** Bytes of the resource. */
  size: number;
}

interface Entry {
  uri: string;
  name: string;
  mimeType: string;
  description?: string;
  /** The text, or the bytes as base64. */
  text?: string;
  blob?: string;
  size: number;
}

/**
 * A bounded store of outputs, oldest dropped first: at most `maxEntries`
 * entries and `maxBytes` bytes in all. An evicted URI reads as "not found"
 * with a hint (the notebook keeps notebook outputs).
 */
export class OutputStore {
  private readonly entries = new Map<string, Entry>();
  private bytes = 0;

  constructor(
    /** True: outputs stay inline (--inline-outputs); nothing is stored. */
    readonly inline = false,
    readonly maxEntries = 256,
    readonly maxBytes = 256 * 1024 * 1024,
    /**
     * Applied to every text stored (the server's redaction: the Jupyter
     * token, hidden model names), as tool results' text is.
     */
    private readonly redact: (text: string) => string = (t) => t,
  ) {}

  /**
   * Stores a text (redacted) and returns its link; with `at`, a URI that
   * serves it already (a notebook's output), only the link.
   */
  putText(raw: string, name: string, description?: string, at?: string): ResourceLink {
    const text = this.redact(raw);
    const size = new TextEncoder().encode(text).length;
    const e = { name, mimeType: "text/plain", text, size, description };
    return at ? linkTo(at, e) : this.put(e);
  }

  /** Stores binary data (base64) and returns its link; with `at`, only the link. */
  putBlob(
    base64: string,
    mimeType: string,
    name: string,
    description?: string,
    at?: string,
  ): ResourceLink {
    const size = Math.floor((base64.length * 3) / 4) - (base64.match(/=*$/)?.[0].length ?? 0);
    const e = { name, mimeType, blob: base64, size, description };
    return at ? linkTo(at, e) : this.put(e);
  }

  private put(e: Omit<Entry, "uri">): ResourceLink {
    const uri = `${URI_PREFIX}${crypto.randomUUID().replaceAll("-", "").slice(0, 16)}`;
    this.entries.set(uri, { ...e, uri });
    this.bytes += e.size;
    while (
      (this.entries.size > this.maxEntries || this.bytes > this.maxBytes) && this.entries.size > 1
    ) {
      const [oldest, entry] = this.entries.entries().next().value!;
      this.entries.delete(oldest);
      this.bytes -= entry.size;
    }
    return linkTo(uri, e);
  }

  /** The entries held, newest last. */
  list(): Entry[] {
    return [...this.entries.values()];
  }

  /** The entry of `uri`, or undefined (never stored, or dropped to stay in bounds). */
  get(uri: string): Entry | undefined {
    return this.entries.get(uri);
  }
}

function linkTo(uri: string, e: Omit<Entry, "uri">): ResourceLink {
  return {
    type: "resource_link",
    uri,
    name: e.name,
    mimeType: e.mimeType,
    ...(e.description ? { description: e.description } : {}),
    size: e.size,
  };
}

/** What resources/read returns for one URI. */
export type ResourceContents = { uri: string; mimeType: string; text: string } | {
  uri: string;
  mimeType: string;
  blob: string;
};

/** More resources a server serves beside the store (notebook-mcp: its notebooks' outputs). */
export interface MoreResources {
  template: { uriTemplate: string; name: string; title: string; description: string };
  /** The contents of `uri`, or undefined when it is not one of these. */
  read(uri: string): Promise<ResourceContents | undefined>;
}

/**
 * Serves `store` on a server: resources/list (what it holds),
 * resources/templates/list ({@link OUTPUT_TEMPLATE}) and resources/read.
 * Call before the server connects. An unknown URI is JSON-RPC error -32002
 * (the spec's "resource not found"), with the URI in `data`.
 */
export function serveOutputs(server: Server, store: OutputStore, more?: MoreResources): void {
  server.registerCapabilities({ resources: {} });
  server.setRequestHandler(ListResourcesRequestSchema, () => ({
    resources: store.list().map((e) => ({
      uri: e.uri,
      name: e.name,
      mimeType: e.mimeType,
      ...(e.description ? { description: e.description } : {}),
      size: e.size,
    })),
  }));
  server.setRequestHandler(ListResourceTemplatesRequestSchema, () => ({
    resourceTemplates: [{
      uriTemplate: OUTPUT_TEMPLATE,
      name: "output",
      title: "A tool's output in full",
      description: "An image or long text a tool result linked to (resource_link) instead of " +
        `carrying it inline. Bounded: the oldest of ${store.maxEntries} are dropped first.`,
    }, ...(more ? [more.template] : [])],
  }));
  server.setRequestHandler(
    ReadResourceRequestSchema,
    async (req: { params: { uri: string } }) => {
      const e = store.get(req.params.uri);
      const other = e ? undefined : await more?.read(req.params.uri);
      if (other) return { contents: [other] };
      if (!e) {
        throw new McpError(
          -32002,
          `resource not found: ${req.params.uri}` +
            (req.params.uri.startsWith(URI_PREFIX)
              ? " (outputs are kept in memory, the oldest dropped first; a notebook's cells keep theirs: read_notebook)"
              : ""),
          { uri: req.params.uri },
        );
      }
      return {
        contents: [
          e.text !== undefined
            ? { uri: e.uri, mimeType: e.mimeType, text: e.text }
            : { uri: e.uri, mimeType: e.mimeType, blob: e.blob! },
        ],
      };
    },
  );
}
