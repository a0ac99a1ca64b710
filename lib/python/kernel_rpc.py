"""Calls from interp-exec into a kernel, with their arguments as data.

A call is an execute_request whose code is a fixed line naming a handler
(for example `__import__("interp_exec_mcp").serve()`); the call's name and
arguments travel in the request's *metadata* under "interp_exec_call", as
JSON, and are never part of the code text. The handler reads them with
`current_call()` and answers with `reply(envelope)`: one display_data of
MIME type CALL_MIME. So no argument, whatever it holds, can become code.

Stdlib only; importable outside a kernel (current_call then raises).
"""

from __future__ import annotations

CALL_MIME = "application/vnd.interp-exec.call+json"
METADATA_KEY = "interp_exec_call"


class CallError(Exception):
    """The request carries no call (it did not come from interp-exec)."""


def _parent() -> dict:
    try:
        import IPython
    except ImportError as exc:  # pragma: no cover - always present in a kernel
        raise CallError("not running in an IPython kernel") from exc
    shell = IPython.get_ipython()
    if shell is None:
        raise CallError("not running in an IPython kernel")
    kernel = getattr(shell, "kernel", None)
    parent = None
    if kernel is not None and hasattr(kernel, "get_parent"):
        try:
            parent = kernel.get_parent("shell")
        except TypeError:  # older ipykernel: no channel argument
            parent = kernel.get_parent()
    if not parent:
        parent = getattr(shell, "parent_header", None)
    return parent or {}


def current_call() -> dict:
    """The call of the request being executed: {"name": str, "args": dict}."""
    call = (_parent().get("metadata") or {}).get(METADATA_KEY)
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise CallError(f"the request has no metadata.{METADATA_KEY} (it must come from interp-exec)")
    args = call.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise CallError(f"metadata.{METADATA_KEY}.args must be an object, got {type(args).__name__}")
    return {"name": call["name"], "args": args}


def reply(envelope: dict) -> None:
    """Sends the call's result as one display_data of CALL_MIME."""
    from IPython.display import display

    display({CALL_MIME: envelope}, raw=True)
