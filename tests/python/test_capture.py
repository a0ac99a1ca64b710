"""lib/python/capture.py, the one output capture mcp_functions.py and fs_worker.py use."""

from __future__ import annotations

import io
import threading

from interp_exec_capture import Capture


def test_keeps_head_and_tail_within_the_limit():
    cap = Capture(10)
    cap.write("abcde")
    assert cap.getvalue() == "abcde"
    cap.write("0123456789XYZ")
    assert cap.total == 18
    assert cap.getvalue() == "abcde\n[... 8 characters omitted ...]\n89XYZ"


def test_a_thread_already_running_writes_past_the_capture():
    outside = io.StringIO()
    started = threading.Event()
    go = threading.Event()
    done = threading.Event()

    def earlier():
        started.set()
        go.wait(5)
        cap.write("LATE")
        done.set()

    t = threading.Thread(target=earlier)
    t.start()
    started.wait(5)
    cap = Capture(100, outside, what="call")
    cap.write("mine")
    go.set()
    done.wait(5)
    t.join(5)
    assert outside.getvalue() == "LATE"
    assert cap.strays == 4
    assert cap.getvalue().startswith("mine")
    assert "4 characters printed meanwhile by threads an earlier call left running were left out" in cap.getvalue()


def test_live_output_is_forwarded_within_its_bound():
    live = io.StringIO()
    cap = Capture(100, live=live, live_limit=6)
    cap.write("abc")
    cap.write("defgh")
    assert cap.getvalue() == "abcdefgh"
    assert live.getvalue().startswith("abcdef") and "live output stops here" in live.getvalue()
