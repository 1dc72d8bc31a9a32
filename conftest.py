"""Collection of the package's doctests: modules of optional extras need them installed."""

from __future__ import annotations

import importlib.util

# specconv/torch.py is the `torch` extra: without torch there is nothing of it to test
collect_ignore = [] if importlib.util.find_spec("torch") else ["specconv/torch.py"]
