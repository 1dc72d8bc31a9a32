"""Applications built on the kernel matrix: EEG, audio and MRI (the edge; import the core only).

Import the submodules directly, e.g. ``from specconv.apps import mri``.
"""
