"""Writes the bad-input corpus (configs/, handles/, env/, skill_sets/, good/) and cases.json.

Run it after adding a case: python3 tests/bad_inputs/generate.py. Each case names
the CLI args ({dir}: this folder, {url}: the test's tripwire listener, {tmp}: a
fresh folder), the file the error must name, and substrings the error line must
contain. tests/e2e/bad_inputs_test.ts runs them all.
"""

import copy
import json
import os

D = os.path.dirname(os.path.abspath(__file__))
os.makedirs(D, exist_ok=True)
for sub in ("configs", "handles", "env", "skill_sets"):
    os.makedirs(f"{D}/{sub}", exist_ok=True)
IGN = "# deno-fmt-ignore-file\n"
cases = []

def cfg(fname, text, expect, cmd="notebook", extra=None, desc=None):
    with open(f"{D}/configs/{fname}", "w") as f:
        f.write(IGN + text)
    args = [cmd, "--config", "{dir}/configs/" + fname]
    if cmd in ("notebook", "run"):
        args += ["--jupyter-url", "{url}"]
    args += extra or []
    cases.append({"id": "config/" + fname.rsplit(".", 1)[0], "args": args, "file": "configs/" + fname, "expect": expect})

M = "name: bad-input\nenvironment:\n  models:\n    - name: tiny\n"
# unknown keys at every level
cfg("unknown_top.yaml", "name: x\ndescripton: typo\n", ["(top level)", "unknown key 'descripton'", "did you mean 'description'"])
cfg("unknown_top_name.yaml", "nmae: x\n", ["unknown key 'nmae'", "did you mean 'name'"])
cfg("unknown_environment.yaml", "name: x\nenvironment:\n  modles: []\n", ["environment: unknown key 'modles'", "did you mean 'models'"])
cfg("unknown_model.yaml", M + "      dtpye: float16\n", ["environment.models[0]: unknown key 'dtpye'", "did you mean 'dtype'"])
cfg("unknown_model_second.yaml", M + "    - name: other\n      devcie: cpu\n", ["environment.models[1]: unknown key 'devcie'", "did you mean 'device'"])
cfg("unknown_execution.yaml", "name: x\nexecution:\n  skill: [steering]\n", ["execution: unknown key 'skill'", "did you mean 'skills'"])
cfg("unknown_execution_far.yaml", "name: x\nexecution:\n  gpu_count: 2\n", ["execution: unknown key 'gpu_count'", "allowed:"])
# name
cfg("name_missing.yaml", "environment: {}\n", ["name: required (string) but missing"])
cfg("name_number.yaml", "name: 42\n", ["name: expected string, got 42"])
cfg("name_too_long.yaml", "name: " + "a" * 300 + "\n", ["name: at most 100 characters", "got 300 characters"])
cfg("name_spaces.yaml", "name: my experiment\n", ["name: 1 to 100 letters", "\"my experiment\""])
cfg("name_empty.yaml", "name: \"\"\n", ["name:", "letters, digits"])
cfg("name_leading_dot.yaml", "name: .hidden\n", ["name:", "starting with a letter or digit"])
# enums and types in models
cfg("dtype_bf16.yaml", M + "      dtype: bf16\n", ["environment.models[0].dtype: got \"bf16\"", "bfloat16"])
cfg("dtype_number.yaml", M + "      dtype: 16\n", ["environment.models[0].dtype", "float16"])
cfg("device_gpu.yaml", M + "      device: gpu\n", ["environment.models[0].device", "one of auto, cpu, cuda, cuda:N, mps", "\"gpu\""])
cfg("device_cuda_x.yaml", M + "      device: cuda:x\n", ["environment.models[0].device", "\"cuda:x\""])
cfg("models_mapping.yaml", "name: x\nenvironment:\n  models:\n    name: tiny\n", ["environment.models: expected array"])
cfg("model_string.yaml", "name: x\nenvironment:\n  models: [tiny-llama]\n", ["environment.models[0]: expected object", "\"tiny-llama\""])
cfg("model_name_missing.yaml", "name: x\nenvironment:\n  models:\n    - path: /weights\n", ["environment.models[0].name: required"])
cfg("model_name_empty.yaml", "name: x\nenvironment:\n  models:\n    - name: \"\"\n", ["environment.models[0].name"])
cfg("peft_without_base.yaml", M + "      is_peft: true\n", ["environment.models[0].base_model", "is_peft: true needs base_model"])
cfg("trust_remote_code_string.yaml", M + "      trust_remote_code: \"yes\"\n", ["environment.models[0].trust_remote_code: expected boolean", "\"yes\""])
cfg("is_peft_number.yaml", M + "      is_peft: 1\n", ["environment.models[0].is_peft: expected boolean"])
cfg("load_kwargs_list.yaml", M + "      load_kwargs: [eager]\n", ["environment.models[0].load_kwargs: expected record"])
cfg("var_name_digit.yaml", M + "      var_name: 1model\n", ["environment.models[0].var_name", "a Python identifier", "\"1model\""])
cfg("tokenizer_var_name_dash.yaml", M + "      tokenizer_var_name: my-tok\n", ["environment.models[0].tokenizer_var_name", "a Python identifier"])
cfg("var_name_duplicate.yaml", "name: x\nenvironment:\n  models:\n    - {name: a, var_name: m}\n    - {name: b, var_name: m}\n", ["environment.models[1].var_name: 'm' is already used by environment.models[0].var_name"])
cfg("var_name_reserved.yaml", M + "      var_name: workspace\n", ["environment.models[0].var_name: 'workspace' is reserved"])
cfg("device_map_number.yaml", M + "      device_map: 0\n", ["environment.models[0].device_map"])
cfg("revision_number.yaml", M + "      revision: 3\n", ["environment.models[0].revision: expected string, got 3"])
cfg("tokenizer_missing_folder.yaml", M + "      tokenizer: ./no-such-tokenizer\n", ["environment.models[0].tokenizer: tokenizer folder not found", "no-such-tokenizer"])
cfg("tokenizer_empty.yaml", M + "      tokenizer: \"\"\n", ["environment.models[0].tokenizer"])
# environment / execution
cfg("environment_list.yaml", "name: x\nenvironment: [gpu]\n", ["environment: expected object"])
cfg("github_repos_string.yaml", "name: x\nenvironment:\n  github_repos: owner/repo\n", ["environment.github_repos: expected array"])
cfg("execution_type.yaml", "name: x\nexecution:\n  type: notebok\n", ["execution.type: got \"notebok\"", "notebook, filesystem, mcp"])
cfg("execution_type_run.yaml", "name: x\nexecution:\n  type: jupyter\n", ["execution.type: got \"jupyter\""], cmd="run")
cfg("skills_string.yaml", "name: x\nexecution:\n  skills: steering\n", ["execution.skills: expected array"])
cfg("skills_unknown.yaml", "name: x\nexecution:\n  skills: [steerin]\n", ["skills_unknown.yaml:4:", "execution.skills[0]: unknown skill 'steerin'", "did you mean 'steering'"])
cfg("skills_empty_name.yaml", "name: x\nexecution:\n  skills: [\"\"]\n", ["execution.skills[0]"])
cfg("idle_timeout_negative.yaml", "name: x\nexecution:\n  idle_timeout: -5\n", ["execution.idle_timeout", "-5"])
cfg("idle_timeout_string.yaml", "name: x\nexecution:\n  idle_timeout: 10m\n", ["execution.idle_timeout: expected number", "\"10m\""])
cfg("idle_timeout_fraction.yaml", "name: x\nexecution:\n  idle_timeout: 1.5\n", ["execution.idle_timeout: expected int", "1.5"])
cfg("obfuscate_string.yaml", "name: x\nexecution:\n  obfuscate: \"true\"\n", ["execution.obfuscate: expected boolean"])
cfg("hide_setup_number.yaml", "name: x\nexecution:\n  hide_setup: 1\n", ["execution.hide_setup: expected boolean"])
cfg("kernel_name_empty.yaml", "name: x\nexecution:\n  kernel_name: \"\"\n", ["execution.kernel_name"])
cfg("notebook_dir_parent.yaml", "name: x\nexecution:\n  notebook_dir: ../..\n", ["execution.notebook_dir", "no '..' segments", "\"../..\""])
cfg("notebook_dir_absolute.yaml", "name: x\nexecution:\n  notebook_dir: /etc\n", ["execution.notebook_dir", "relative to the server's root", "\"/etc\""])
cfg("notebook_dir_inner_parent.yaml", "name: x\nexecution:\n  notebook_dir: runs/../../escape\n", ["execution.notebook_dir", "\"runs/../../escape\""])
cfg("notebook_dir_number.yaml", "name: x\nexecution:\n  notebook_dir: 7\n", ["execution.notebook_dir: expected string"])
cfg("skills_dirs_missing.yaml", "name: x\nexecution:\n  skills_dirs: [no-such-skills]\n", ["execution.skills_dirs[0]: skill folder not found", "no-such-skills"])
cfg("skills_dirs_missing_second.yaml", "name: x\nexecution:\n  skills_dirs: [../skill_sets/clash, no-such-skills]\n", ["execution.skills_dirs[1]: skill folder not found"])
cfg("skills_dirs_file.yaml", "name: x\nexecution:\n  skills_dirs: [name_missing.yaml]\n", ["execution.skills_dirs[0]: skill folder not found", "name_missing.yaml"])
cfg("harness_list.yaml", "name: x\nharness: [a, b]\n", ["harness: expected record"])
# task
cfg("task_missing_file.yaml", "name: x\ntask: no-such-task.md\n", ["task: file not found", "no-such-task.md"])
cfg("task_number.yaml", "name: x\ntask: 5\n", ["task: expected string, got 5"])
# documents
cfg("alias_bomb.yaml", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nname: x\n", ["invalid YAML", "alias"])
cfg("alias_bomb_validate.yaml", "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nname: x\n", ["invalid YAML", "alias"], cmd="validate")
cfg("yaml_syntax.yaml", "name: x\n  bad: [\n", ["invalid YAML"])
cfg("yaml_duplicate_key.yaml", "name: x\nname: y\n", ["invalid YAML", "unique"])
cfg("yaml_tab_indent.yaml", "name: x\nenvironment:\n\tmodels: []\n", ["invalid YAML"])
cfg("document_list.yaml", "- name: x\n", ["expected a YAML mapping", "a list"])
cfg("document_empty.yaml", "", ["expected a YAML mapping", "an empty document"])
cfg("document_scalar.yaml", "just some text\n", ["expected a YAML mapping", "a string"])
# validate and skills with configs
cfg("validate_unknown_model_key.yaml", M + "      quantize: 4bit\n", ["environment.models[0]: unknown key 'quantize'"], cmd="validate")
cfg("skills_list_bad_config.yaml", "name: x\nexecution:\n  skills_dirs: [no-such-skills]\n", ["execution.skills_dirs[0]"], cmd="skills")
# fix skills cmd args: skills list --config
cases[-1]["args"] = ["skills", "list", "--config", "{dir}/configs/skills_list_bad_config.yaml"]

# skill sets (folders of skill files) checked by validate
def skillset(name, files):
    os.makedirs(f"{D}/skill_sets/{name}", exist_ok=True)
    for fn, text in files.items():
        with open(f"{D}/skill_sets/{name}/{fn}", "w") as f:
            f.write(text)

def skcase(cid, setname, skills, expect, file, models=""):
    fname = f"uses_{cid}.yaml"
    with open(f"{D}/configs/{fname}", "w") as f:
        f.write(IGN + f"name: x\n{models}execution:\n  skills: [{', '.join(skills)}]\n")
    cases.append({"id": "skill/" + cid, "args": ["validate", "--config", "{dir}/configs/" + fname, "--skills-dir", "{dir}/skill_sets/" + setname], "file": file, "expect": expect})

skillset("typo", {"probe.md": "---\nname: probe\ndescripton: Probes.\n---\n\nText.\n"})
skcase("front_matter_typo", "typo", ["probe"], ["probe.md:3:", "unknown key 'descripton'", "did you mean 'description'"], "skill_sets/typo/probe.md")
skillset("no_front_matter", {"probe.md": "# Probe\n\nNo front matter.\n"})
skcase("no_front_matter", "no_front_matter", ["probe"], ["probe.md:1:", "must begin with YAML front matter"], "skill_sets/no_front_matter/probe.md")
skillset("name_mismatch", {"probe.md": "---\nname: probes\ndescription: Probes.\n---\n"})
skcase("name_mismatch", "name_mismatch", ["probe"], ["probe.md", "'probes' differs from the file name"], "skill_sets/name_mismatch/probe.md")
skillset("no_description", {"probe.md": "---\nname: probe\n---\n"})
skcase("no_description", "no_description", ["probe"], ["probe.md", "front matter description"], "skill_sets/no_description/probe.md")
skillset("preload_string", {"probe.md": "---\nname: probe\ndescription: d\npreload: \"yes\"\n---\n"})
skcase("preload_string", "preload_string", ["probe"], ["probe.md", "front matter preload"], "skill_sets/preload_string/probe.md")
skillset("bad_front_yaml", {"probe.md": "---\nname: probe\ndescription: [unclosed\n---\n"})
skcase("bad_front_yaml", "bad_front_yaml", ["probe"], ["probe.md", "invalid front matter"], "skill_sets/bad_front_yaml/probe.md")
skillset("syntax", {"probe.md": "---\nname: probe\ndescription: d\n---\n\nUse it.\n\n```python\ndef fit_probe(x:\n    return x\n```\n"})
skcase("python_syntax", "syntax", ["probe"], ["probe.md:9:", "skill 'probe': SyntaxError"], "skill_sets/syntax/probe.md")
skillset("clash", {
    "probe.md": "---\nname: probe\ndescription: d\n---\n\n```python\ndef fit(x):\n    return x\n```\n",
    "probe2.md": "---\nname: probe2\ndescription: d\n---\n\nAnother.\n\n```python\nimport os\n\n\ndef fit(y):\n    return y\n```\n",
})
skcase("function_clash", "clash", ["probe", "probe2"], ["probe2.md:12:", "skill 'probe2' defines 'fit'", "skill 'probe'", "probe.md:7"], "skill_sets/clash/probe2.md")
skillset("replaces_model", {"probe.md": "---\nname: probe\ndescription: d\n---\n\n```python\nmodel = None\n```\n"})
skcase("replaces_model", "replaces_model", ["probe"], ["probe.md:7:", "would replace the kernel variable 'model'"], "skill_sets/replaces_model/probe.md", models="environment:\n  models:\n    - name: tiny\n")
skillset("requires_unknown", {"probe.md": "---\nname: probe\ndescription: d\nrequires: [ghost]\n---\n"})
skcase("requires_unknown", "requires_unknown", ["probe"], ["probe.md: requires", "unknown skill 'ghost'"], "skill_sets/requires_unknown/probe.md")
skillset("cycle", {"a.md": "---\nname: a\ndescription: d\nrequires: [b]\n---\n", "b.md": "---\nname: b\ndescription: d\nrequires: [a]\n---\n"})
skcase("requires_cycle", "cycle", ["a"], ["cycle: a -> b -> a"], None)
skcase("broken_symlink", "PLACEHOLDER", ["probe"], ["probe.md", "symlink to a missing target", "does-not-exist.md"], None)
cases[-1]["args"][-1] = "{tmp}"
cases[-1]["links"] = {"probe.md": "does-not-exist.md"}

# flags
def flags(cid, args, expect, stdin=None, file=None):
    c = {"id": "flags/" + cid, "args": args, "expect": expect}
    if stdin is not None: c["stdin"] = stdin
    if file: c["file"] = file
    cases.append(c)
OK = "{dir}/configs/name_missing.yaml"  # never read: the flag error comes first
GOOD = "{dir}/good/experiment.yaml"
flags("unknown_command", ["notebok"], ["unknown command 'notebok'"])
flags("unknown_flag", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--bogus"], ["Unknown option '--bogus'"])
flags("missing_value", ["notebook", "--jupyter-url", "{url}", "--config"], ["--config", "argument missing"])
flags("no_config", ["notebook", "--jupyter-url", "{url}"], ["--config FILE is required"])
flags("config_not_found", ["notebook", "--config", "{dir}/configs/no-such-config.yaml", "--jupyter-url", "{url}"], ["config file not found", "no-such-config.yaml"])
flags("config_is_folder", ["validate", "--config", "{dir}/configs"], ["cannot read config", "configs"])
flags("sessions_zero", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--sessions", "0"], ["--sessions: expected an integer >= 1, got '0'"])
flags("sessions_word", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--sessions", "two"], ["--sessions", "'two'"])
flags("sessions_empty", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--sessions", ""], ["--sessions", "''"])
flags("sessions_fraction", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--sessions", "1.5"], ["--sessions", "'1.5'"])
flags("sessions_exponent", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--sessions", "1e1"], ["--sessions", "'1e1'"])
flags("timeout_empty", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--timeout", ""], ["--timeout: expected a number of seconds", "got ''"])
flags("timeout_word", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--timeout", "soon"], ["--timeout", "'soon'"])
flags("timeout_negative", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--timeout=-5"], ["--timeout", "'-5'"])
flags("timeout_units", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--timeout", "30s"], ["--timeout", "'30s'"])
flags("timeout_hex", ["run", "--config", GOOD, "--jupyter-url", "{url}", "--timeout", "0x10"], ["--timeout", "'0x10'"])
flags("timeout_spaces", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--timeout", "  "], ["--timeout", "got '  '"])
flags("kernel_start_timeout_zero", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--kernel-start-timeout", "0"], ["--kernel-start-timeout: expected a number of seconds above 0", "'0'"])
flags("kernel_start_timeout_empty", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--kernel-start-timeout", ""], ["--kernel-start-timeout", "''"])
flags("kernel_start_timeout_infinity", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--kernel-start-timeout", "Infinity"], ["--kernel-start-timeout", "'Infinity'"])
flags("skills_dir_missing", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--skills-dir", "{dir}/no-such-skills"], ["--skills-dir", "no-such-skills", "skill folder not found"])
flags("skills_dir_file", ["validate", "--config", GOOD, "--skills-dir", "{dir}/cases.json"], ["--skills-dir", "cases.json", "not a folder"])
flags("skills_dir_missing_list", ["skills", "list", "--skills-dir", "{dir}/no-such-skills"], ["--skills-dir", "no-such-skills"])
flags("skills_show_ghost", ["skills", "show", "ghost"], ["skills show: no skill named 'ghost'"])
flags("skills_show_near", ["skills", "show", "steerin"], ["skills show: no skill named 'steerin'", "did you mean 'steering'"])
flags("skills_bad_action", ["skills", "frobnicate"], ["skills: expected 'list' or 'show NAME'", "frobnicate"])
flags("validate_positional", ["validate", "--config", GOOD, "extra"], ["validate:", "'extra'"])
flags("exec_timeout_empty", ["exec", "--session", "abc", "--jupyter-url", "{url}", "--code", "1", "--timeout", ""], ["--timeout", "''"])
flags("exec_code_and_file", ["exec", "--session", "abc", "--jupyter-url", "{url}", "--code", "1", "--file", "x.py"], ["--code or --file, not both"])
flags("exec_two_stdin", ["exec", "--handle", "-", "--jupyter-url", "{url}"], ["only one thing can come from stdin"], stdin="")
flags("shutdown_no_selector", ["shutdown", "--jupyter-url", "{url}"], ["shutdown: which sessions?"])
flags("shutdown_two_selectors", ["shutdown", "--all", "--idle", "--jupyter-url", "{url}"], ["shutdown: pass one of --all, --idle"])
flags("notebook_mcp_timeout_empty", ["notebook-mcp", "--jupyter-url", "{url}", "--timeout", ""], ["--timeout", "''"])
flags("notebook_mcp_max_images_negative", ["notebook-mcp", "--jupyter-url", "{url}", "--max-images=-1"], ["--max-images", "'-1'"])
flags("notebook_mcp_http_word", ["notebook-mcp", "--jupyter-url", "{url}", "--http", "port"], ["--http", "'port'"])
flags("token_file_missing", ["notebook", "--config", GOOD, "--jupyter-url", "{url}", "--token-file", "{dir}/no-such-token"], ["--token-file", "no-such-token"])

# handles
VALID = {
    "mode": "notebook", "schema_version": 1, "interp_exec_version": "0.1.0", "status": "ready",
    "experiment_name": "bad-input", "created_at": "2025-01-01T00:00:00.000Z",
    "jupyter_url": "http://127.0.0.1:9/", "kernel_id": "k-1",
    "server": {"kind": "jupyter_server", "version": "2.0.0", "embedded": False, "sessions_api": True, "contents_api": True},
    "workspace": "/tmp/ws",
    "namespace": {"models": [], "skills": [], "variables": [],
                  "environment": {"python": "3.11", "torch": "2", "transformers": "4", "cuda_available": False, "device_name": "cpu"},
                  "load_seconds": 0.1},
    "timings": {"total_ms": 1, "connect_ms": 1, "session_ms": 1, "kernel_ready_ms": 1, "warmup_ms": 1, "kernel_load_s": 0.1},
    "agent_prompt": "", "session_id": "s-1", "notebook_path": None,
    "mcp_config": {"mcpServers": {}},
}
def handle(fname, data, expect, cmd="exec", raw=None):
    with open(f"{D}/handles/{fname}", "w") as f:
        f.write(raw if raw is not None else json.dumps(data, indent=2) + "\n")
    args = [cmd, "--handle", "{dir}/handles/" + fname, "--jupyter-url", "{url}"]
    if cmd == "exec": args += ["--code", "1"]
    cases.append({"id": f"handle/{cmd}/" + fname.rsplit(".", 1)[0], "args": args, "file": "handles/" + fname, "expect": ["--handle"] + expect})
def without(key):
    h = copy.deepcopy(VALID); del h[key]; return h
def with_(**kw):
    h = copy.deepcopy(VALID); h.update(kw); return h
with open(f"{D}/handles/valid.json", "w") as f:
    f.write(json.dumps(VALID, indent=2) + "\n")
handle("not_json.txt", None, ["not JSON"], raw="session_id: s-1\n")
handle("truncated.txt", None, ["not JSON"], raw=json.dumps(VALID)[:80])
handle("empty.txt", None, ["not JSON"], raw="")
handle("empty_array.json", [], ["an empty array holds no handle"])
handle("empty_array_shutdown.json", [], ["an empty array holds no handle"], cmd="shutdown")
handle("string.json", "s-1", ["expected a handle (a JSON object)", "string"])
handle("number.json", 42, ["expected a handle (a JSON object)", "42"])
handle("null.json", None, ["expected a handle (a JSON object)", "null"], raw="null\n")
handle("null_shutdown.json", None, ["expected a handle (a JSON object)", "null"], cmd="shutdown", raw="null\n")
handle("nested_array.json", [[VALID]], ["[0]: expected a handle (a JSON object)", "an array"])
handle("empty_object.json", {}, ["schema_version: missing"])
handle("schema_version_2.json", with_(schema_version=2), ["schema_version: got 2", "reads handle schema_version 1"])
handle("schema_version_string.json", with_(schema_version="1"), ["schema_version: got \"1\""], cmd="shutdown")
handle("mode_unknown.json", with_(mode="shell"), ["mode: got \"shell\"", "expected one of notebook, mcp, filesystem"])
handle("mode_missing.json", without("mode"), ["mode: missing"])
handle("session_id_missing.json", without("session_id"), ["session_id: required (string) but missing"])
handle("session_id_missing_shutdown.json", without("session_id"), ["session_id: required (string) but missing"], cmd="shutdown")
handle("kernel_id_number.json", with_(kernel_id=7), ["kernel_id", "number 7"])
handle("server_missing.json", without("server"), ["server: required (object) but missing"])
handle("second_bad.json", [VALID, {"schema_version": 1, "mode": "notebook"}], ["[1]: not an interp-exec handle"])
cases.append({"id": "handle/exec/not_found", "args": ["exec", "--handle", "{dir}/handles/no-such-handle.json", "--jupyter-url", "{url}", "--code", "1"], "expect": ["--handle", "no-such-handle.json"]})
cases.append({"id": "handle/exec/folder", "args": ["exec", "--handle", "{dir}/handles", "--jupyter-url", "{url}", "--code", "1"], "expect": ["--handle", "handles"]})
cases.append({"id": "handle/shutdown/stdin_empty_array", "args": ["shutdown", "--handle", "-", "--jupyter-url", "{url}"], "stdin": "[]", "expect": ["--handle stdin", "an empty array holds no handle"]})

# env handles
def env(fname, raw, expect, cmd="notebook"):
    with open(f"{D}/env/{fname}", "w") as f:
        f.write(raw)
    args = [cmd, "--config", GOOD, "--env", "{dir}/env/" + fname] if cmd == "notebook" else [cmd, "--all", "--env", "{dir}/env/" + fname]
    cases.append({"id": f"env/{cmd}/" + fname.rsplit(".", 1)[0], "args": args, "file": "env/" + fname, "expect": ["--env"] + expect})
env("not_json.txt", "jupyter_url=http://127.0.0.1:9/\n", ["not JSON"])
env("array.json", "[]\n", ["(top level)"])
env("url_missing.json", json.dumps({"jupyter_token": "t", "sandbox_id": "sb"}, indent=2) + "\n", ["jupyter_url"])
env("url_number.json", json.dumps({"jupyter_url": 8888}, indent=2) + "\n", ["jupyter_url"])
env("url_empty.json", json.dumps({"jupyter_url": ""}, indent=2) + "\n", ["jupyter_url"])
env("token_number.json", json.dumps({"jupyter_url": "{url}", "jupyter_token": 123}, indent=2) + "\n", ["jupyter_token"])
env("url_missing_shutdown.json", json.dumps({"sandbox_id": "sb"}, indent=2) + "\n", ["jupyter_url"], cmd="shutdown")
cases.append({"id": "env/notebook/not_found", "args": ["notebook", "--config", GOOD, "--env", "{dir}/env/no-such-env.json"], "expect": ["--env", "no-such-env.json"]})

# issue 23: inputs that passed validation and failed later, and flags checked too late
cfg("var_name_keyword.yaml", M + "      var_name: class\n", ["environment.models[0].var_name", "'class' is a Python keyword"])
cfg("model_path_is_file.yaml", M + "      path: ./model_path_is_file.yaml\n", ["environment.models[0].path", "not a folder", "model_path_is_file.yaml"])
cfg("base_model_path_missing.yaml", M + "      path: ./\n      is_peft: true\n      base_model_path: ./no-such-base-model\n", ["environment.models[0].base_model_path", "folder not found", "no-such-base-model"])
cfg("idle_timeout_inf.yaml", "name: x\nexecution:\n  idle_timeout: .inf\n", ["execution.idle_timeout", "expected a finite number, got .inf"])
MCP = "name: bad-input\nexecution:\n  type: mcp\n  skills: [token-probs]\n"
cfg("functions_unknown.yaml", MCP + "  functions: ['*', next_token_prob]\n", ["execution.functions[1]", "no skill defines a function named 'next_token_prob'", "did you mean 'next_token_probs'"], cmd="mcp", extra=["--jupyter-url", "{url}"])
cfg("functions_unknown_removed.yaml", MCP + "  functions: ['*', '!next_token_prob']\n", ["execution.functions[1]", "'!next_token_prob'", "did you mean 'next_token_probs'"], cmd="mcp", extra=["--jupyter-url", "{url}"])
cfg("functions_skill_not_loaded.yaml", MCP + "  functions: [steering.*]\n", ["execution.functions[0]", "no skill named 'steering' is loaded"], cmd="validate")
flags("exec_session_dot", ["exec", "--session", ".", "--jupyter-url", "{url}", "--code", "1"], ["--session", "\".\" is not a session id"])
flags("shutdown_session_dotdot", ["shutdown", "--session", "..", "--jupyter-url", "{url}"], ["--session", "\"..\" is not a session id"])
flags("mcp_serve_session_dot", ["mcp-serve", "--session", ".", "--jupyter-url", "{url}"], ["--session", "\".\" is not a session id"])
flags("filesystem_mcp_session_dot", ["filesystem-mcp", "--session", ".", "--workspace", "{tmp}", "--jupyter-url", "{url}"], ["--session", "\".\" is not a session id"])
flags("filesystem_mcp_session_slash", ["filesystem-mcp", "--session", "a/../b", "--workspace", "{tmp}", "--jupyter-url", "{url}"], ["--session", "is not a session id"])
flags("exec_timeout_over_timer", ["exec", "--session", "abc", "--timeout", "2147484", "--jupyter-url", "{url}", "--code", "1"], ["--timeout", "at most 2147483 seconds", "2147484"])
flags("notebook_mcp_timeout_over_timer", ["notebook-mcp", "--timeout", "99999999999", "--jupyter-url", "{url}"], ["--timeout", "at most 2147483 seconds"])
flags("pool_start_wait_timeout_word", ["pool", "start", "--preimport", "--wait", "--wait-timeout", "soon", "--jupyter-url", "{url}"], ["--wait-timeout", "'soon'"])
flags("pool_status_unknown_pool", ["pool", "status", "--pool", "nope"], ["pool status", "no pool nope"])

os.makedirs(f"{D}/good", exist_ok=True)
with open(f"{D}/good/experiment.yaml", "w") as f:
    f.write("# A valid config: the flag cases fail on their flags, never on this file.\nname: bad-inputs-good\n")
with open(f"{D}/cases.json", "w") as f:
    json.dump({"cases": cases}, f, indent=2)
    f.write("\n")
print(len(cases))
