import { parseFlags } from "../cli/args.ts";
import { handleJsonSchema } from "../config/handle.ts";
import { printJson, printText } from "../cli/log.ts";

export const help = `interp-exec schema: print the handle's JSON Schema

Usage: interp-exec schema

The handle is versioned (schema_version); this prints the JSON Schema of the
current version, for programs that read handles.

Options:
  -h, --help   this help`;

/** `interp-exec schema` */
export function schemaCommand(args: string[]): void {
  const { values } = parseFlags("schema", args, {});
  if (values.help) return printText(help);
  printJson(handleJsonSchema());
}
