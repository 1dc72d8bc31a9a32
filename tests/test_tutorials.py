"""The tutorials run: every ``tutorials/NN_*.py`` jupytext script is executed as a notebook
and as a plain script (``python tutorials/NN_*.py``).

Each percent script is converted with jupytext, executed with nbclient on a kernel of this
interpreter (in a temporary working directory, so the WAV/FIF/NPY files a tutorial writes land
there) and must finish within the per-notebook budget of 90 s. Figures are rendered headless
by the inline backend (Agg underneath) so that the test can count them: every tutorial shows at
least one, and prints no warning.
The tutorials' own ``assert`` cells are their claims; a failing one fails the test with the
cell's traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import specconv

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

TUTORIALS = Path(__file__).resolve().parents[1] / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("[0-9][0-9]_*.py"))
BUDGET = 90.0  # seconds per notebook, the CI budget of the tutorials issue
#: notebooks that take more than 20 s here (marked slow; CI runs them too)
SLOW = set()
KERNEL = "specconv-tutorials"


def test_the_tutorials_are_there():
    numbers = [p.name[:2] for p in NOTEBOOKS]
    assert numbers == [f"{i:02d}" for i in range(1, len(NOTEBOOKS) + 1)]
    assert len(NOTEBOOKS) == 8
    readme = (TUTORIALS / "README.md").read_text(encoding="utf-8")
    links = [readme.find(f"]({p.name})") for p in NOTEBOOKS]
    assert -1 not in links, "the README must link every notebook"
    assert links == sorted(links), "the README must list the notebooks in reading order"


@pytest.fixture(scope="module")
def kernel_name(tmp_path_factory):
    """A kernel spec that runs this interpreter and imports the specconv under test."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "specconv tutorials",
                "language": "python",
            }
        )
    )
    package_root = str(Path(specconv.__file__).resolve().parents[1])
    with pytest.MonkeyPatch.context() as mp:  # the kernel inherits this environment
        mp.setenv("JUPYTER_PATH", str(root), prepend=os.pathsep)
        mp.setenv("PYTHONPATH", package_root, prepend=os.pathsep)
        # headless; unlike plain "Agg" it hands the figures to the notebook as PNG outputs
        mp.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
        yield KERNEL


def _marks(path):
    return [pytest.mark.slow] if path.stem in SLOW else []


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=_marks(p)) for p in NOTEBOOKS])
def test_tutorial_runs(path, kernel_name, tmp_path):
    nb = jupytext.read(path)
    nb.metadata["kernelspec"] = {
        "name": kernel_name,
        "display_name": kernel_name,
        "language": "python",
    }
    start = time.monotonic()

    def remaining(cell):
        # one budget for the whole notebook, not per cell
        return max(1, int(BUDGET - (time.monotonic() - start)))

    client = nbclient.NotebookClient(
        nb,
        kernel_name=kernel_name,
        timeout_func=remaining,
        allow_errors=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    elapsed = time.monotonic() - start
    print(f"{path.name}: {elapsed:.1f} s")
    stderr = [
        out.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stderr"
    ]
    warnings = [s for s in stderr if "Warning" in s]
    assert not warnings, f"{path.name} printed warnings:\n" + "\n".join(warnings)
    n_figures = sum(
        1
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if "image/png" in out.get("data", {})
    )
    assert n_figures >= 1, f"{path.name} shows no figure"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=_marks(p)) for p in NOTEBOOKS])
def test_tutorial_runs_as_a_plain_script(path, tmp_path):
    """``python tutorials/NN_*.py`` from another folder, as if IPython were not installed."""
    # no extra installs IPython: a stand-in package that fails to import, as a missing one does
    blocker = tmp_path / "no-ipython" / "IPython"
    blocker.mkdir(parents=True)
    blocker.joinpath("__init__.py").write_text(
        'raise ImportError("IPython is hidden: the tutorials must run as plain scripts")\n'
    )
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ)
    package_root = str(Path(specconv.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(blocker.parent), package_root, env.get("PYTHONPATH")])
    )
    env["MPLBACKEND"] = "Agg"  # headless: plt.show() returns at once
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, str(path)],
        check=False,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUDGET,
    )
    print(f"{path.name} as a script: {time.monotonic() - start:.1f} s")
    assert proc.returncode == 0, f"{path.name} failed as a script:\n{proc.stderr[-3000:]}"
    assert "Warning" not in proc.stderr, f"{path.name} printed warnings:\n{proc.stderr}"
