"""Dependencies say what the code imports: every third-party module the package imports is declared
in pyproject.toml (core or an extra), and no declared agent dependency is unused."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("tools", "finetune", "agent", "ui", "evals", "speclm")
#: distribution name -> the module it provides, where they differ
MODULE_OF = {"pyyaml": "yaml", "lm-eval": "lm_eval", "langchain-core": "langchain_core",
             "langgraph-checkpoint-sqlite": "langgraph", "hf-gradio": "gradio"}
ALLOWED_UNDECLARED = {"pydantic",  # comes with langchain-core, whose tool schemas we use
                      "peft", "transformers", "torch", "accelerate", "safetensors", "gguf",  # core, listed
                      "capfit", "plotbin"}  # ppxf's own modules


def _declared() -> set[str]:
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"]) + [r for v in meta["optional-dependencies"].values() for r in v]
    names = {re.split(r"[<>=\[;! ]", r, maxsplit=1)[0].strip().lower() for r in reqs if not r.startswith("speclm")}
    return {MODULE_OF.get(n, n.replace("-", "_")) for n in names}


def _imported() -> dict[str, str]:
    out = {}
    for layer in LAYERS:
        for f in (ROOT / layer).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                mods = []
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                for m in mods:
                    top = m.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "speclm":
                        out.setdefault(top, str(f.relative_to(ROOT)))
    return out


def test_every_import_is_declared():
    declared = _declared()
    missing = {m: f for m, f in _imported().items() if m not in declared | ALLOWED_UNDECLARED}
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_declared_agent_dependencies_are_used():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    agent = {re.split(r"[<>=\[;! ]", r, maxsplit=1)[0].lower() for r in meta["optional-dependencies"]["agent"]}
    used = set(_imported())
    unused = {d for d in agent if MODULE_OF.get(d, d.replace("-", "_")) not in used}
    assert not unused, f"declared for the agent but never imported: {unused}"
