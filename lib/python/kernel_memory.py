"""A kernel's own memory, printed as one JSON line: its resident set (RSS),
the memory torch has reserved on its GPUs, the host's available memory and
each GPU's free memory. Sent by the pool's refill (lib/warm/pool/memory.ts)
as a silent request in a throwaway globals dict, so it leaves nothing in the
kernel; importing it runs nothing unless `_ie_report` is given.
"""

import json as _json
import sys as _sys


def report() -> dict:
    """{"rss", "gpu", "host_free", "gpus"} in bytes; None (or []) where it cannot be known."""
    out = {"rss": None, "gpu": None, "host_free": None, "gpus": []}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss"] = int(line.split()[1]) * 1024
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    out["host_free"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    torch = _sys.modules.get("torch")  # never imported here: a kernel without torch has no GPU memory
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["gpu"] = sum(torch.cuda.memory_reserved(i) for i in range(torch.cuda.device_count()))
        out["gpus"] = [torch.cuda.mem_get_info(i)[0] for i in range(torch.cuda.device_count())]
    return out


if globals().get("_ie_report"):
    print(_json.dumps(report()))
