"""The one bounded output capture of interp-exec's kernel modules.

mcp_functions.py captures a function call's prints and fs_worker.py a
script run's stdout and stderr with it (both import it as
`interp_exec_capture`, the module interp-exec defines in every kernel it
calls into). It keeps the first and last limit/2 characters of what is
written and counts the rest. Only the run's own output is kept: the thread
that runs it and the threads it starts. A thread already running when the
run began (left by an earlier run) writes past it, to `outside` (the stream
it would have written to without the run), and is counted in `strays`, so
its late output never lands in this run's result, which may be another
client's. With `live` (the kernel's own stream), what is written also goes
there at once, up to `live_limit` characters, so a client can follow a long
run; the result is still the captured text.
"""

from __future__ import annotations

import contextlib
import io
import threading


class Capture(io.TextIOBase):
    """A bounded text stream: head and tail kept, the middle counted (see the module)."""

    def __init__(self, limit: int, outside=None, live=None, live_limit: int = 0, what: str = "run"):
        super().__init__()
        me = threading.current_thread()
        self._others = {t for t in threading.enumerate() if t is not me}
        self._outside = outside
        self._what = what
        self.strays = 0
        self._half = max(1, limit // 2)
        self._limit = limit
        self._head: list[str] = []
        self._head_n = 0
        self._tail = ""
        self.total = 0
        self._live = live
        self._live_left = live_limit

    def _forward(self, text: str) -> None:
        if self._live is None or self._live_left <= 0 or not text:
            return
        part = text[: self._live_left]
        self._live_left -= len(part)
        try:
            self._live.write(part)
            if self._live_left <= 0:
                self._live.write(f"\n[interp-exec] live output stops here; the {self._what}'s result keeps its head and tail\n")
        except Exception:
            self._live = None  # the kernel's stream is gone: the capture goes on

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            text = str(text)
        if self._others and threading.current_thread() in self._others:
            self.strays += len(text)
            if self._outside is not None:
                with contextlib.suppress(Exception):
                    self._outside.write(text)
            return len(text)
        n = len(text)
        self.total += n
        self._forward(text)
        room = self._half - self._head_n
        if room > 0:
            self._head.append(text[:room])
            self._head_n += len(text[:room])
            text = text[room:]
        if text:
            self._tail = (self._tail + text)[-self._half :]
        return n

    def flush(self):
        if self._live is not None and self._live_left > 0:
            with contextlib.suppress(Exception):
                self._live.flush()

    def isatty(self):
        return False

    @property
    def encoding(self):
        return "utf-8"

    def getvalue(self) -> str:
        """What was kept: all of it within the limit, else head, a note of what was cut, and tail."""
        head = "".join(self._head)
        note = (
            f"\n[interp-exec] {self.strays} characters printed meanwhile by threads an earlier "
            f"{self._what} left running were left out\n"
            if self.strays
            else ""
        )
        if self.total <= self._limit:
            tail_len = self.total - len(head)
            return head + (self._tail[-tail_len:] if tail_len > 0 else "") + note
        omitted = self.total - len(head) - len(self._tail)
        return f"{head}\n[... {omitted} characters omitted ...]\n{self._tail}{note}"

    value = getvalue
