/**
 * Version constants, in one place. npm package versions are pinned in
 * deno.json; the Python side is pinned in requirements.txt.
 */

/** interp-exec's own version. */
export const VERSION = "0.1.0";

/** Version of the handle JSON contract (bumped on any incompatible change). */
export const HANDLE_SCHEMA_VERSION = 1;

/** MIME type of the summary kernel_setup.py reports from the kernel. */
export const SUMMARY_MIME = "application/vnd.interp-exec.summary+json";

/** Version of the spec object sent to kernel_setup.py. */
export const SETUP_SPEC_VERSION = 1;
