"""What a warm run may change in the filesystem worker's process, saved before
the run and put back after it: the modules it imported from the workspace,
sys.path, the working folder, environment, the models' hooks, submodules,
parameters and buffers (their contents, in place), torch's global hooks and
settings, logging and warnings, so that each run starts as clean as a fresh
process while the models stay loaded.

Part of filesystem mode's kernel side: fs_worker.py (interp_exec_fs) imports
it as interp_exec_process_state, the name interp-exec defines it by in the
kernel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import types

# torch is imported inside the methods: the worker loads it with the models, on first use.

# The workspace's runtime module (lib/python/workspace_runtime.py, written as interp_exec.py).
RUNTIME_MODULE = "interp_exec"


def _inside(real: str, root: str) -> bool:
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


# A module's dict-valued attributes whose *contents* a script may change:
# hooks, and the submodules/parameters/buffers it may swap for its own.
_MODULE_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
    "_modules",
    "_parameters",
    "_buffers",
)
_HOOK_DICTS = {a for a in _MODULE_DICTS if "hooks" in a}
_GLOBAL_HOOKS = (
    "_global_forward_hooks",
    "_global_forward_hooks_with_kwargs",
    "_global_forward_hooks_always_called",
    "_global_forward_pre_hooks",
    "_global_backward_hooks",
    "_global_backward_pre_hooks",
    "_global_module_registration_hooks",
    "_global_parameter_registration_hooks",
    "_global_buffer_registration_hooks",
)


class _ProcessState:
    """What a warm run may change in this process, saved before it and put back after it."""

    def __init__(self, root: str):
        import torch

        self.root = root
        self.argv = list(sys.argv)
        self.cwd = os.getcwd()
        self.path = list(sys.path)
        self.modules = set(sys.modules)
        self.environ = dict(os.environ)
        self.grad = torch.is_grad_enabled()
        self.default_dtype = torch.get_default_dtype()
        self.std = (sys.stdout, sys.stderr, sys.stdin)
        self.excepthook = sys.excepthook
        root_logger = logging.getLogger()
        self.root_logging = (list(root_logger.handlers), root_logger.level)
        self.handler_streams = {}
        self.models: list = []  # (module, copy of its __dict__, {dict attribute: copy of its contents})
        self.objects: list = []  # (dict, copy): the warm namespace, tokenizers' __dict__
        self.params: list = []  # (parameter, requires_grad, grad)
        self.seen_models: set = set()
        self.attrs = []  # (module or class, copy of its __dict__)
        targets = [torch, torch.nn.functional, torch.nn.Module, torch.Tensor]
        transformers = sys.modules.get("transformers")
        if transformers is not None:
            targets.append(transformers)
        for target in targets:
            self.attrs.append((target, dict(vars(target))))
        hooks_mod = sys.modules.get("torch.nn.modules.module")
        self.global_hooks = [
            (d, dict(d)) for d in (getattr(hooks_mod, n, None) for n in _GLOBAL_HOOKS) if isinstance(d, dict)
        ]

    def snapshot_models(self, namespace: dict) -> None:
        """Save the warm objects' state: modules' attributes and hooks, parameters' grad, tokenizers' attributes."""
        import torch

        if id(namespace) not in self.seen_models:
            self.seen_models.add(id(namespace))
            self.objects.append((namespace, dict(namespace)))
        transformers = sys.modules.get("transformers")
        tokenizer_base = getattr(transformers, "PreTrainedTokenizerBase", None) if transformers else None
        for value in list(namespace.values()):
            if id(value) in self.seen_models:
                continue
            if isinstance(value, torch.nn.Module):
                self.seen_models.add(id(value))
                for module in value.modules():
                    attrs = vars(module)
                    saved = {a: dict(attrs[a]) for a in _MODULE_DICTS if isinstance(attrs.get(a), dict)}
                    self.models.append((module, dict(attrs), saved))
                for p in value.parameters():
                    self.params.append((p, p.requires_grad, p.grad))
            elif isinstance(tokenizer_base, type) and isinstance(value, tokenizer_base):
                self.seen_models.add(id(value))
                self.objects.append((vars(value), dict(vars(value))))

    def restore(self) -> list[str]:
        """Put everything back; returns notes on what had to be undone (for the report)."""
        import torch

        notes = []
        sys.stdout, sys.stderr, sys.stdin = self.std
        sys.excepthook = self.excepthook
        sys.argv[:] = self.argv
        with contextlib.suppress(OSError):
            os.chdir(self.cwd)
        sys.path[:] = self.path
        for name in set(sys.modules) - self.modules:
            mod = sys.modules.get(name)
            if name == RUNTIME_MODULE and _module_file(mod) == os.path.join(self.root, "interp_exec.py"):
                continue
            if _from_workspace(mod, self.root):
                sys.modules.pop(name, None)
        if os.environ != self.environ:
            for key in set(os.environ) - set(self.environ):
                os.environ.pop(key, None)
            for key, value in self.environ.items():
                if os.environ.get(key) != value:
                    os.environ[key] = value
        torch.set_grad_enabled(self.grad)
        torch.set_default_dtype(self.default_dtype)
        root_logger = logging.getLogger()
        root_logger.handlers[:] = self.root_logging[0]
        root_logger.setLevel(self.root_logging[1])
        for handler, stream in self.handler_streams.items():
            with contextlib.suppress(Exception):
                handler.setStream(stream)
        hooks, swapped = 0, 0
        for module, attrs, saved in self.models:
            current = vars(module)
            # Hooks transformers installs once and keeps (output_hidden_states,
            # output_attentions) are the library's, not the script's: kept.
            kept = _library_hooks(current, saved)
            flags = {a: current[a] for a in _LIBRARY_ATTRS if a in current and a not in attrs}
            _restore_dict(current, attrs)
            current.update(flags)
            for attr, items in saved.items():
                d = current[attr]
                ours = {k: d[k] for k in kept if k in d and k not in items}
                extra = len(d) - len(items) - len(ours)
                if _restore_dict(d, {**items, **ours}):
                    if attr in _HOOK_DICTS:
                        hooks += max(extra, 1)
                    else:
                        swapped += 1
        for d, items in self.objects:
            _restore_dict(d, items)
        for d, items in self.global_hooks:
            if d.keys() != items.keys():
                hooks += 1
                d.clear()
                d.update(items)
        if hooks:
            notes.append(f"removed {hooks} hook(s) the script left on the model(s)")
        if swapped:
            notes.append(f"put back {swapped} submodule/parameter/buffer slot(s) the script replaced")
        for p, requires_grad, grad in self.params:
            if p.requires_grad != requires_grad:
                p.requires_grad_(requires_grad)
            if p.grad is not grad:
                p.grad = grad
        patched = []
        for target, saved in self.attrs:
            current = vars(target)
            for key, value in saved.items():
                if current.get(key, _MISSING) is not value:
                    with contextlib.suppress(Exception):
                        setattr(target, key, value)
                        patched.append(f"{getattr(target, '__name__', target)}.{key}")
            # Added names go too, but not submodules imported during the run
            # (`import torch.distributions` sets torch.distributions); a lazy
            # module (transformers) resolves a removed name again on next use.
            for key in [k for k in current if k not in saved]:
                if not isinstance(current[key], types.ModuleType):
                    with contextlib.suppress(Exception):
                        delattr(target, key)
        if patched:
            notes.append(f"restored {', '.join(sorted(patched)[:10])}")
        return notes


_MISSING = object()


# Attributes transformers sets beside the hooks it keeps.
_LIBRARY_ATTRS = ("_output_capturing_hooks_installed",)


def _library_hooks(current: dict, saved: dict) -> set:
    """Handle ids of hooks added since the snapshot whose function is transformers' own."""
    ids = set()
    for attr in _HOOK_DICTS:
        d, before = current.get(attr), saved.get(attr)
        if not isinstance(d, dict) or before is None:
            continue
        for k, v in d.items():
            if k not in before and str(getattr(v, "__module__", "")).startswith("transformers."):
                ids.add(k)
    return ids


def _restore_dict(current: dict, saved: dict) -> bool:
    """Make current hold exactly saved's items (the same objects, in order), in place; True if it differed."""
    if list(current) == list(saved) and all(current[k] is v for k, v in saved.items()):
        return False
    current.clear()
    current.update(saved)
    return True


def _module_file(mod) -> str | None:
    f = getattr(mod, "__file__", None)
    return os.path.realpath(f) if isinstance(f, str) else None


def _from_workspace(mod, root: str) -> bool:
    f = _module_file(mod)
    if f is not None:
        return _inside(f, root)
    paths = getattr(mod, "__path__", None)  # namespace packages have no __file__
    try:
        return any(_inside(os.path.realpath(p), root) for p in list(paths or []))
    except TypeError:
        return False
