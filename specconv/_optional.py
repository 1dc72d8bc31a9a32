"""Lazy imports of optional dependencies.

``import specconv`` must not import mne, h5py, soundfile, matplotlib, dask or tqdm: the edge
modules import them inside functions through :func:`soft_import`, so that a missing package
surfaces only when the feature needing it is used, with the install command in the error.
"""

from __future__ import annotations

import importlib

__all__ = ["soft_import", "has_module"]


def soft_import(name, extra, *, purpose=None):
    """Import and return the module ``name``, or explain how to install it.

    Parameters
    ----------
    name : str
        Module to import, e.g. ``"mne"`` or ``"mne.export"``.
    extra : str
        The specconv extra that provides it (``"eeg"``, ``"audio"``, ``"mri"``, ...); it is
        named in the error so the fix is one copy-paste away.
    purpose : str, optional
        What the module is needed for, added to the error message.

    Returns
    -------
    module : module
        The imported module.

    Raises
    ------
    ImportError
        If the module (or one of its own dependencies) cannot be imported. The message
        contains ``pip install "specconv[<extra>]"``.

    Examples
    --------
    >>> from specconv._optional import soft_import
    >>> soft_import("json", "core").__name__
    'json'
    >>> soft_import("no_such_module_xyz", "eeg")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ImportError: ... pip install "specconv[eeg]" ...
    """
    try:
        return importlib.import_module(name)
    except ImportError as err:
        why = f" for {purpose}" if purpose else ""
        raise ImportError(
            f"The optional dependency {name!r} is needed{why} but could not be imported "
            f'({err}). Install it with: pip install "specconv[{extra}]"'
        ) from err


def has_module(name):
    """Return True if ``name`` can be imported (importing it as a side effect).

    Examples
    --------
    >>> from specconv._optional import has_module
    >>> has_module("json"), has_module("no_such_module_xyz")
    (True, False)
    """
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True
