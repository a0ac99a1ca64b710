/** Input fields several tools share. */

import { z } from "zod";

/** The session a tool acts on. */
export const sessionId = z.string().min(1).describe(
  "the session to use: session_id from the handle or from start_new_session (a kernel id also works)",
);

/** A per-call bound on execution time. */
export const timeoutSeconds = z.number().positive().max(86_400).optional().describe(
  "interrupt the code after this many seconds (default: the server's --timeout, 600 unless set)",
);
