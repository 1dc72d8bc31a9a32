"""The package layout keeps its one-way dependencies.

* every module imports only from the layers below its own, as the package docstring lists
  them, imports inside functions included, and no imports run in a circle;
* ``import specconv`` imports none of the optional, heavy dependencies (checked in a fresh
  interpreter, since this test session may have imported them already);
* the core modules never import the edge (io, datasets, cli, signal), checked on their source;
* in the core, only ``specconv/fft.py`` talks to pyFFTW.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "specconv"

OPTIONAL = (
    "mne",
    "h5py",
    "matplotlib",
    "soundfile",
    "dask",
    "distributed",
    "torch",
    "tqdm",
    "edfio",
    "pybv",
    "eeglabio",
    "sklearn",
)
EDGE = ("io", "datasets", "cli", "signal")
CORE = sorted(
    [p for p in PKG.glob("_*.py") if not p.name.startswith("__")]  # not __init__/__main__
    + [PKG / "fft.py", PKG / "conv.py", PKG / "layers.py"]
)


def test_import_specconv_imports_no_optional_dependency():
    code = (
        "import json, sys\n"
        "import specconv\n"
        f"heavy = {OPTIONAL!r}\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & set(heavy))\n"
        "print(json.dumps(loaded))\n"
    )
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def _imported_modules(path):
    """Every module an ``import`` statement in ``path`` names, resolved to absolute names."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = "specconv"
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package if node.level == 1 else None  # core modules sit in specconv/
                assert base, f"{path.name}: relative import above the package"
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            names.append(module)
            # `from . import signal` / `from specconv import io` name submodules
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_does_not_import_the_edge(path):
    edge = {f"specconv.{e}" for e in EDGE}
    bad = [m for m in _imported_modules(path) if any(m == e or m.startswith(e + ".") for e in edge)]
    assert not bad, f"{path.name} imports the edge: {bad}"


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_does_not_import_optional_dependencies(path):
    bad = [m for m in _imported_modules(path) if m.split(".")[0] in OPTIONAL]
    assert not bad, f"{path.name} imports optional dependencies: {bad}"


def test_only_fft_imports_pyfftw_in_the_core():
    users = sorted(
        p.name
        for p in CORE
        if any(m.split(".")[0] == "pyfftw" for m in _imported_modules_any_level(p))
    )
    assert users == ["fft.py"]


def _imported_modules_any_level(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module


def test_the_checks_see_the_core():
    """Guard against a vacuous pass: the parser finds the core's real imports."""
    assert {p.name for p in CORE} >= {
        "_validate.py",
        "_engine.py",
        "_direct.py",
        "_costmodel.py",
        "_correlate.py",
        "fft.py",
        "conv.py",
        "layers.py",
    }
    assert "specconv._engine" in _imported_modules(PKG / "_correlate.py")
    assert "specconv.layers.SpectralConv" in _imported_modules(PKG / "conv.py")


# ---------------------------------------------------------------------------------------------
# the order of the layers, read from the package docstring


def _docstring_layers():
    """The package docstring's layers, top first: a list of sets of module names."""
    doc = ast.get_docstring(ast.parse((PKG / "__init__.py").read_text(encoding="utf-8")))
    block = doc.split("::", 1)[1]
    layers = []
    for line in block.strip("\n").splitlines():
        if line[4:5].strip():  # a line of names (continued descriptions are indented further)
            names = line.strip().split("  ")[0]
            layers.append({n.strip() for n in names.split(",")})
    return layers


def _package_modules():
    """``{top-level module name: [its files]}`` (a subpackage counts as one module)."""
    modules = {}
    for path in PKG.rglob("*.py"):
        parts = path.relative_to(PKG).with_suffix("").parts
        if parts == ("__init__",):
            continue
        modules.setdefault(parts[0], []).append(path)
    return modules


def _module_imports(path):
    """Top-level specconv modules that ``path`` imports, at any level of the code."""
    rel = path.relative_to(PKG).with_suffix("").parts
    package = ["specconv", *rel[:-1]]  # the package the file sits in
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "specconv" and len(parts) > 1:
                found.add(parts[1])
    return found


def _import_graph():
    modules = _package_modules()
    return {
        name: set().union(*(_module_imports(p) for p in files)) & set(modules) - {name}
        for name, files in modules.items()
    }


def test_every_module_has_a_place_in_the_layers():
    listed = set().union(*_docstring_layers())
    assert set(_package_modules()) <= listed, (
        f"modules missing from the package docstring's layers: "
        f"{sorted(set(_package_modules()) - listed)}"
    )
    assert listed <= set(_package_modules()) | {"_simd"}, sorted(listed - set(_package_modules()))


def test_imports_point_down_the_layers():
    layers = _docstring_layers()
    rank = {name: len(layers) - i for i, names in enumerate(layers) for name in names}
    upward = sorted(
        f"{name} imports {dep}"
        for name, deps in _import_graph().items()
        for dep in deps
        if rank.get(dep, 0) > rank.get(name, 0)
    )
    assert not upward, upward


def test_no_import_circle():
    graph = _import_graph()
    state = {}

    def visit(name, path):
        state[name] = "open"
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == "open":
                raise AssertionError("import circle: " + " -> ".join(path + [name, dep]))
            if dep not in state:
                visit(dep, path + [name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_the_layer_checks_see_real_imports():
    """Guard against a vacuous pass: the graph has the engine's real edges."""
    graph = _import_graph()
    assert {"_engine", "_direct", "_costmodel"} <= graph["_correlate"]
    assert "layers" in graph["conv"] and "io" in graph["cli"]
    assert len(_docstring_layers()) >= 10
