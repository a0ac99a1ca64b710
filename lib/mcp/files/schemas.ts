/** Input fields the file tools share. */

import { z } from "zod";

/** A path in the workspace. */
export const workspacePath = z.string().min(1).describe(
  "a path relative to the workspace (no '..', no absolute paths)",
);
