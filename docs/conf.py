"""Sphinx configuration of specconv's documentation.

    pip install -e ".[docs]" && sphinx-build -W -b html docs docs/_build/html

Three things are generated into ``docs/_generated/`` (not in git) before Sphinx reads anything,
so that the pages cannot drift from their sources:

* ``tutorials/``: the notebooks of ``tutorials/`` as sphinx-gallery scripts (their Markdown
  prose turned into reStructuredText by ``md2rst.py``); sphinx-gallery executes them and
  renders their figures and output. The ``.py`` each page offers is the original percent
  script; the ``.ipynb`` is made by sphinx-gallery.
* ``api.rst``: one autosummary table per public module, listing that module's ``__all__``.
* ``results.rst``: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
GENERATED = DOCS / "_generated"
sys.path.insert(0, str(DOCS))
# The source tree's specconv (with `pip install -e .` it is also the installed one).
sys.path.insert(0, str(ROOT))

import md2rst

import specconv

project = "specconv"
author = "specconv developers"
copyright = "specconv developers, BSD-3-Clause"
release = version = specconv.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax served with the pages: formulas render offline too
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]
exclude_patterns = ["_build", "_generated/tutorials", "**.ipynb_checkpoints"]
templates_path = ["_templates"]

# -- the public API, module by module -----------------------------------------------------------

#: Public modules, in the order a reader meets them, and one line on each.
PUBLIC_MODULES = {
    "specconv": "Conv layers and the functions that compute them (PyTorch and scipy.signal "
    "semantics).",
    "specconv.kernels": "The kernel matrix as an object: composition, sums, inverses, "
    "per-frequency SVD, transfer-function estimation.",
    "specconv.signal": "A C-channel signal with its sampling and the source format's metadata.",
    "specconv.stream": "Block-by-block filtering with fixed latency.",
    "specconv.outofcore": "From a file on disk to a file on disk in bounded memory.",
    "specconv.dask": "Lazy dask arrays, and many files on a cluster.",
    "specconv.io": "Reading and writing EEG, audio and MRI formats.",
    "specconv.datasets": "The small synthetic samples shipped with specconv.",
    "specconv.apps.eeg": "EEG: filter banks equal to MNE's, spatial filters.",
    "specconv.apps.audio": "Audio: true-stereo reverb, binaural rendering, crosstalk cancellation.",
    "specconv.apps.mri": "MRI: coil compression and GRAPPA.",
    "specconv.plot": "Figures of the kernel matrix, its frequency response and signals.",
    "specconv.fft": "FFTW planning: threads, wisdom, fast lengths.",
}


def _write_if_changed(path, text):
    """Leave unchanged files alone, so that sphinx-gallery does not execute them again."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def _api_pages():
    """The API index and one page per public module: its docstring, then its names."""
    index = [
        "API reference",
        "=============",
        "",
        (
            "Every public name of specconv, module by module. A name that a module "
            "re-exports from another is documented once, where it is listed first "
            "(``specconv.io.VectorSignal`` is ``specconv.VectorSignal``)."
        ),
        "",
        ".. list-table::",
        "   :widths: 30 70",
        "",
    ]
    pages, seen = {}, {}
    for module_name, summary in PUBLIC_MODULES.items():
        module = importlib.import_module(module_name)
        index += [f"   * - :doc:`{module_name} <{module_name}>`", f"     - {summary}"]
        public = [
            n for n in module.__all__ if not isinstance(getattr(module, n), (str, tuple, dict))
        ]
        names = [n for n in public if id(getattr(module, n)) not in seen]
        again = [
            f":obj:`{n} <{seen[id(getattr(module, n))]}>`"
            for n in public
            if id(getattr(module, n)) in seen
        ]
        title = f"``{module_name}``"
        lines = [
            title,
            "=" * len(title),
            "",
            f".. automodule:: {module_name}",
            "   :no-members:",
            "",
        ]
        if names:
            lines += [
                f".. currentmodule:: {module_name}",
                "",
                ".. rubric:: Contents",
                "",
                ".. autosummary::",
                "   :toctree: api",
                "",
            ]
            lines += [f"   {n}" for n in names]
            lines.append("")
        if again:
            lines += ["Also importable from here: " + ", ".join(again) + ".", ""]
        for n in module.__all__:
            if isinstance(getattr(module, n), (str, tuple, dict)):
                lines += [f"``{module_name}.{n}`` = ``{getattr(module, n)!r}``", ""]
        for n in names:
            seen[id(getattr(module, n))] = f"{module_name}.{n}"
        pages[module_name] = "\n".join(lines) + "\n"
    index += ["", ".. toctree::", "   :hidden:", ""] + [f"   {m}" for m in PUBLIC_MODULES]
    return "\n".join(index) + "\n", pages


# -- tutorials as a sphinx-gallery ----------------------------------------------------------------

TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
GALLERY_LABEL = "sphx_glr_tutorials_{stem}.py"


def _tutorial_link(url):
    """Links between notebooks go to their gallery pages; other relative links keep the text."""
    if url.startswith(("http://", "https://", "mailto:")):
        return url
    name = Path(url.split("#")[0]).name
    for path in TUTORIALS:
        if name == path.name:
            return ":ref:`{text} <" + GALLERY_LABEL.format(stem=path.stem) + ">`"
    if name == "README.md" and "tutorials" in url or url == "README.md":
        return ":doc:`{text} <index>`"
    return None


def _generate():
    gallery_src = GENERATED / "tutorials"
    for path in TUTORIALS:
        text = md2rst.tutorial_to_gallery(path.read_text(encoding="utf-8"), _tutorial_link)
        _write_if_changed(gallery_src / path.name, text)
    _write_if_changed(
        gallery_src / "README.rst",
        (
            "Tutorials\n=========\n\n"
            "The notebooks, in reading order: the first three teach the idea (a conv layer is a "
            "matrix of kernels, and an ordinary complex matrix at every frequency), the others "
            "apply it to EEG, audio, MRI, long recordings and more. Each page below was executed when "
            "this site was built, on the samples bundled with specconv; download it as a script "
            "(``.py``, a jupytext percent script that Jupyter opens as a notebook) or as a "
            "notebook (``.ipynb``) at the bottom of the page.\n"
        ),
    )
    index, pages = _api_pages()
    _write_if_changed(GENERATED / "api.rst", index)
    for module_name, text in pages.items():
        _write_if_changed(GENERATED / f"{module_name}.rst", text)
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    _write_if_changed(
        GENERATED / "results.rst",
        md2rst.convert(
            results, lambda url: url if url.startswith(("http://", "https://")) else None
        ),
    )


_generate()

sphinx_gallery_conf = {
    "examples_dirs": str(GENERATED / "tutorials"),
    "gallery_dirs": "tutorials",
    "filename_pattern": r"/\d\d_",  # execute every tutorial
    "within_subsection_order": "FileNameSortKey",
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "show_memory": False,
    "plot_gallery": "True",
    "abort_on_example_error": True,
    "reference_url": {"specconv": None},
}

# -- API pages ----------------------------------------------------------------------------------

autosummary_generate = True
autodoc_default_options = {"members": False}
# the numpydoc docstrings say what each parameter takes; the annotations (specconv/_typing.py)
# are for type checkers, and shown too they would repeat the docstrings in longer signatures
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- HTML ---------------------------------------------------------------------------------------

html_theme = "pydata_sphinx_theme"
html_title = f"specconv {version}"
html_theme_options = {
    "navbar_align": "left",
    "show_toc_level": 2,
    "navigation_with_keys": False,
    # the tutorials' code and output lines are up to 95 characters: give them the width
    "secondary_sidebar_items": {"tutorials/*": []},
}
html_static_path = ["_static"]
html_css_files = ["specconv.css"]
# pages without siblings: no empty "Section Navigation" column, more width for the tables
html_sidebars = {"index": [], "design": [], "benchmarks": []}
html_show_sourcelink = False


def _original_scripts(app, exception):
    """Offer each tutorial's own percent script as the page's ``.py`` download."""
    if exception is not None or app.builder.name != "html":
        return
    downloads = Path(app.outdir) / "_downloads"
    for path in TUTORIALS:
        for target in downloads.glob(f"*/{path.name}"):
            shutil.copyfile(path, target)


def _shape_stars(app, what, name, obj, options, lines):
    """``[shape=(C, *spatial)]`` in a numpydoc type line: the star is a literal, not emphasis."""
    for k, line in enumerate(lines):
        if "shape=" in line:
            parts = re.split(r"(``.*?``)", line)  # leave inline literals alone
            lines[k] = "".join(
                p if p.startswith("``") else re.sub(r"(?<!\\)\*", r"\\*", p) for p in parts
            )


def setup(app):
    app.connect("autodoc-process-docstring", _shape_stars, priority=100)  # before numpydoc
    app.connect("build-finished", _original_scripts)
    os.environ.setdefault("MPLBACKEND", "agg")
