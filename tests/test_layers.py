"""The package's layers, read from the code: which layer of `streams/` may import which, `models/`
below all of them, the process harness (`streams/testing`) used by the tests and the demo only, and
`iu --help` and `iu config` starting without torch, transformers, Faust or pymilvus."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

BASE = {"streams.errors", "streams.settings"}
# layer -> the layers it may import (besides itself, BASE and models)
MAY_IMPORT = {
    "core": set(),
    "kafka": {"core"},
    "monitoring": {"core", "kafka"},  # the monitor labels records by their topic's scenario
    "vectors": {"core", "monitoring"},
    "worker": {"core", "kafka", "monitoring", "vectors"},
    "testing": {"core", "kafka", "monitoring", "vectors", "worker"},  # above the product, beside the CLI
    "cli": {"core", "kafka", "monitoring", "vectors", "worker", "testing"},
}
HEAVY = ("torch", "transformers", "faust", "pymilvus")


def layer(module: str) -> str:
    """`streams.kafka.broker` -> `kafka`; `streams.errors` -> `base`; `models.x` -> `models`."""
    parts = module.split(".")
    if parts[0] == "models":
        return "models"
    return "base" if module in BASE else parts[1]


def imports(path: Path) -> set[str]:
    """The `streams` and `models` modules a file imports, at any depth (deferred imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names
                                      if Path(*f"{node.module}.{a.name}".split(".")).is_dir()
                                      or Path(*f"{node.module}.{a.name}".split(".")).with_suffix(".py").is_file()}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m.split(".")[0] in ("streams", "models") and m != "streams"}


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for path in sorted(Path("streams").rglob("*.py")):
        here = layer(".".join(path.with_suffix("").parts))
        if here == "base" or path.parent == Path("streams"):
            allowed = {"base"}
        else:
            allowed = {here, "base", "models", *MAY_IMPORT[here]}
        wrong += [f"{path} imports {m}" for m in sorted(imports(path)) if layer(m) not in allowed]
    for path in sorted(Path("models").rglob("*.py")):
        wrong += [f"{path} imports {m}" for m in sorted(imports(path)) if layer(m) != "models"]
    assert not wrong, "imports across the layers:\n" + "\n".join(wrong)


def test_the_layer_rule_catches_an_import_upwards(tmp_path, monkeypatch):
    """The check reads real import statements: a core module importing the worker is caught."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "streams" / "core").mkdir(parents=True)
    (tmp_path / "streams" / "worker").mkdir()
    (tmp_path / "streams" / "worker" / "app.py").write_text("")
    (tmp_path / "streams" / "core" / "state.py").write_text("def f():\n    from streams.worker import app\n")
    with pytest.raises(AssertionError, match=re.escape("streams/core/state.py imports streams.worker.app")):
        test_each_layer_imports_only_the_layers_below_it()


@pytest.mark.parametrize("argv", [["--help"], ["config"]])
def test_help_and_config_import_no_heavy_library(argv):
    code = ("import contextlib, io, sys\nfrom streams.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(sys.argv[1:])\n    except SystemExit:\n        pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]", f"iu {' '.join(argv)} imported {r.stdout.strip()}"
