"""Python references and floors for bench/bench.ts. Each subcommand prints one
JSON line on stdout (progress, if any, on stderr).

  zmq-rtt CONNECTION_FILE
      The execute round-trip floor: jupyter_client straight over ZMQ on a
      kernel a server started. Reads a count per stdin line, runs that many
      trivial executes (shell reply and iopub idle, as interp-exec waits for)
      and prints their times in ms.
  client URL TOKEN CODE_FILE
      The seed project's steps from Python: create a session over REST, open
      the kernel WebSocket (websocket-client, JSON protocol), wait for a
      kernel_info_reply, execute the setup code, wait for its reply and idle.
      REST and WebSocket because that is all a remote server (the seed's Modal
      sandbox) exposes: kernel ZMQ ports are not reachable from the client.
  floor CODE_FILE
      Kernel start (jupyter_client KernelManager until kernel_info answers)
      plus the setup code timed inside the kernel: what a warm-up cannot
      avoid, with no server, no WebSocket and no client start-up.
  boot COUNT
      COUNT kernel starts with jupyter_client, each timed until the kernel
      answers kernel_info (the floor of a kernel start); prints the times.
  cuda
      Whether torch sees CUDA, and the device name.
  gpu-build DIR SIZE DEVICE TOKENIZER_DIR
      A Llama model with random weights (seed 0) in bfloat16, saved with
      safetensors in 1 GB shards, with the tiny tokenizer's files.
  gpu-load DIR DEVICE
      Reads DIR's safetensors files straight to DEVICE with
      safetensors.torch.load_file, timed from a cold CUDA context.
  load-bare DIR [ROOT]
      What a researcher's own script does: import torch and transformers, then
      AutoModelForCausalLM.from_pretrained(DIR, dtype="auto") and the
      tokenizer, each timed (and their CPU time together); then one read of every weight page (touch), as
      the first forward pass would do when the weights are lazy mmaps. Then,
      in the same (now warm) interpreter, from_pretrained again and, given
      interp-exec's ROOT, kernel_setup.fast_load: the loads without the
      first call's imports.
  load-floor DIR
      The floor of a load: safetensors.torch.load_file of each of DIR's
      safetensors files (page cache) plus the same touch of every page, timed
      after `import torch, safetensors`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid


def _out(obj) -> None:
    print(json.dumps(obj), flush=True)


def zmq_rtt(connection_file: str) -> None:
    import zmq
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=connection_file)
    kc.load_connection_file()
    kc.start_channels(shell=True, iopub=True, stdin=False, hb=False, control=False)
    kc.wait_for_ready(timeout=60)
    shell, iopub, session = kc.shell_channel.socket, kc.iopub_channel.socket, kc.session
    poller = zmq.Poller()
    poller.register(shell, zmq.POLLIN)
    poller.register(iopub, zmq.POLLIN)

    def one() -> float:
        started = time.perf_counter()
        msg_id = kc.execute("pass")
        reply = idle = False
        while not (reply and idle):
            events = poller.poll(30_000)
            if not events:
                raise TimeoutError("no reply over ZMQ in 30 s")
            for sock, _ in events:
                _, msg = session.recv(sock, mode=0)
                if msg is None or msg["parent_header"].get("msg_id") != msg_id:
                    continue
                if sock is shell:
                    reply = True
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    idle = True
        return (time.perf_counter() - started) * 1000

    _out({"ready": True})
    for line in sys.stdin:
        n = int(line)
        _out([one() for _ in range(n)])
    kc.stop_channels()


def client(url: str, token: str, code_file: str) -> None:
    started = time.perf_counter()
    import urllib.request

    import websocket

    code = open(code_file).read()
    if not url.endswith("/"):
        url += "/"
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    body = {
        "path": f"bench-reference-{uuid.uuid4().hex[:8]}.ipynb",
        "name": "bench-reference",
        "type": "notebook",
        "kernel": {"name": "python3"},
    }
    req = urllib.request.Request(url + "api/sessions", json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(req, timeout=120) as res:
        session = json.load(res)
    kernel_id = session["kernel"]["id"]
    client_session = uuid.uuid4().hex
    ws_url = url.replace("http", "ws", 1) + f"api/kernels/{kernel_id}/channels?session_id={client_session}"

    def message(msg_type: str, content: dict) -> dict:
        return {
            "header": {
                "msg_id": uuid.uuid4().hex,
                "msg_type": msg_type,
                "username": "bench",
                "session": client_session,
                "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": "shell",
            "buffers": [],
        }

    # A request right after the handshake can go unanswered (ipykernel 7 behind
    # Jupyter Server 2): like any careful client, retry on a fresh connection.
    ws = None
    for _ in range(10):
        ws = websocket.create_connection(ws_url, header=[f"Authorization: token {token}"], timeout=60)
        info = message("kernel_info_request", {})
        ws.send(json.dumps(info))
        ws.settimeout(2)
        try:
            while True:
                msg = json.loads(ws.recv())
                if msg["parent_header"].get("msg_id") == info["header"]["msg_id"] and msg[
                    "msg_type"
                ] == "kernel_info_reply":
                    break
            break
        except websocket.WebSocketTimeoutException:
            ws.close()
            ws = None
    if ws is None:
        raise SystemExit("the kernel never answered kernel_info_request")
    ws.settimeout(600)
    request = message(
        "execute_request",
        {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    )
    ws.send(json.dumps(request))
    reply = idle = None
    status = None
    while not (reply and idle):
        msg = json.loads(ws.recv())
        if msg["parent_header"].get("msg_id") != request["header"]["msg_id"]:
            continue
        if msg["msg_type"] == "execute_reply":
            reply = True
            status = msg["content"]["status"]
        elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
            idle = True
    ws.close()
    _out(
        {
            "session_id": session["id"],
            "kernel_id": kernel_id,
            "notebook_path": body["path"],
            "status": status,
            "elapsed_ms": (time.perf_counter() - started) * 1000,
        }
    )


def floor(code_file: str) -> None:
    from jupyter_client import KernelManager

    code = open(code_file).read()
    km = KernelManager(kernel_name="python3")
    # Ready when the kernel answers kernel_info (the request waits in ZMQ until
    # the kernel binds). Not wait_for_ready(): it idles 0.2 s flushing IOPub,
    # which would flatter every client measured against it.
    kernel_start, kc = _start_ready(km)
    try:
        wrapped = (
            "import time as _bench_time\n_bench_t0 = _bench_time.perf_counter()\n"
            + code
            + "\nprint(f'__BENCH__ {_bench_time.perf_counter() - _bench_t0}', flush=True)\n"
        )
        msg_id = kc.execute(wrapped)
        text = ""
        error = None
        while True:
            msg = kc.get_iopub_msg(timeout=600)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                # Output can arrive in pieces: parse it whole at the end.
                text += content["text"]
            elif kind == "error":
                error = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                break
        if "__BENCH__" not in text:
            raise SystemExit(f"the setup code failed in the floor kernel: {error}; output: {text[-2000:]!r}")
        inside = float(text.split("__BENCH__")[1].split()[0])
        _out(
            {
                "kernel_start_ms": kernel_start * 1000,
                "setup_in_kernel_ms": inside * 1000,
                "floor_ms": (kernel_start + inside) * 1000,
            }
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _start_ready(km):
    """Starts km's kernel; seconds until it answers kernel_info (no IOPub
    flush), and the connected client (one client: a second one would number
    its messages from 0 again under the same session id)."""
    started = time.perf_counter()
    km.start_kernel()
    kc = km.client()
    kc.start_channels(hb=False)
    # A request that reaches ipykernel 7 while it is still starting can go
    # unanswered: ask again every 0.2 s (wait_for_ready() asks every second).
    sent = [kc.kernel_info()]
    resend = started + 0.2
    deadline = started + 120
    while True:
        try:
            reply = kc.get_shell_msg(timeout=0.001)
        except Exception:
            now = time.perf_counter()
            if now > deadline:
                kc.stop_channels()
                km.shutdown_kernel(now=True)
                raise SystemExit("the kernel did not answer kernel_info in 120 s")
            if now > resend:
                sent.append(kc.kernel_info())
                resend = now + 0.2
            continue
        if reply["parent_header"].get("msg_id") in sent:
            return time.perf_counter() - started, kc


def boot(count: str) -> None:
    from jupyter_client import KernelManager

    times = []
    for _ in range(int(count)):
        km = KernelManager(kernel_name="python3")
        try:
            seconds, kc = _start_ready(km)
            kc.stop_channels()
            times.append(seconds * 1000)
        finally:
            km.shutdown_kernel(now=True)
    _out(times)


def cuda() -> None:
    import torch

    ok = torch.cuda.is_available()
    _out({"cuda": ok, "name": torch.cuda.get_device_name(0) if ok else None})


# Llama shapes: SIZE "3b" is ~3.0B parameters (~6 GB in bfloat16); "tiny" tests the plumbing.
SIZES = {
    "3b": dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=26, num_attention_heads=24),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=16),
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4),
}


def gpu_build(out_dir: str, size: str, device: str, tokenizer_dir: str) -> None:
    import shutil

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    done = os.path.join(out_dir, "DONE")
    if os.path.exists(done):
        _out({"built": False, "dir": out_dir})
        return
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        **SIZES[size],
    )
    torch.manual_seed(0)
    started = time.perf_counter()
    # Built on the target device in bfloat16: fast, and no fp32 copy in host memory.
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True, max_shard_size="1GB")
    for name in os.listdir(tokenizer_dir):
        if name.startswith("tokenizer") or name == "special_tokens_map.json":
            shutil.copy(os.path.join(tokenizer_dir, name), out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    open(done, "w").write("ok\n")
    _out({"built": True, "dir": out_dir, "n_params": n_params, "seconds": time.perf_counter() - started})


def gpu_load(model_dir: str, device: str) -> None:
    import torch
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    size = sum(os.path.getsize(os.path.join(model_dir, f)) for f in files)
    started = time.perf_counter()
    if device.startswith("cuda"):
        torch.cuda.init()
        torch.zeros(1, device=device)
        torch.cuda.synchronize()
    context = time.perf_counter() - started
    tensors = {}
    for f in files:
        tensors.update(load_file(os.path.join(model_dir, f), device=device))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    _out({"bytes": size, "seconds": seconds, "context_seconds": context, "tensors": len(tensors)})


def _touch(tensors) -> float:
    """Read one byte of every 4 KiB page of each tensor; returns the seconds taken."""
    import torch

    started = time.perf_counter()
    total = 0
    for t in tensors:
        flat = t.detach().reshape(-1).view(torch.uint8)
        total += int(flat[::4096].sum())
    return time.perf_counter() - started


def load_bare(model_dir: str, root: str | None = None) -> None:
    started = time.perf_counter()
    import torch  # noqa: F401
    import transformers

    imported, cpu_imported = time.perf_counter(), time.process_time()
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    loaded = time.perf_counter()
    transformers.AutoTokenizer.from_pretrained(model_dir)
    tokenized, cpu_tokenized = time.perf_counter(), time.process_time()
    touch = _touch(list(model.parameters()))
    n_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    del model
    again = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto")
    warm = time.perf_counter() - again
    del model
    fast = None
    if root:
        sys.path.insert(0, root)
        import kernel_setup

        again = time.perf_counter()
        model = kernel_setup.fast_load({}, model_dir, "auto")
        fast = time.perf_counter() - again
        if model is None:
            raise SystemExit(f"fast_load does not cover {model_dir}")
    _out({
        "import_s": imported - started,
        "from_pretrained_s": loaded - imported,
        "tokenizer_s": tokenized - loaded,
        "load_cpu_s": cpu_tokenized - cpu_imported,
        "touch_s": touch,
        "from_pretrained_warm_s": warm,
        "fast_load_warm_s": fast,
        "n_bytes": n_bytes,
    })


def load_floor(model_dir: str) -> None:
    import torch  # noqa: F401
    from safetensors.torch import load_file

    files = sorted(f for f in os.listdir(model_dir) if f.endswith(".safetensors"))
    started = time.perf_counter()
    tensors = []
    for name in files:
        tensors += load_file(os.path.join(model_dir, name)).values()
    read = time.perf_counter()
    touch = _touch(tensors)
    _out({"load_file_s": read - started, "touch_s": touch, "floor_s": read - started + touch})


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    command, args = argv[0], argv[1:]
    commands = {
        "zmq-rtt": zmq_rtt,
        "client": client,
        "floor": floor,
        "boot": boot,
        "cuda": cuda,
        "gpu-build": gpu_build,
        "gpu-load": gpu_load,
        "load-bare": load_bare,
        "load-floor": load_floor,
    }
    if command not in commands:
        raise SystemExit(f"unknown command {command!r}\n{__doc__}")
    commands[command](*args)


if __name__ == "__main__":
    main(sys.argv[1:])
