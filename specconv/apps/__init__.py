"""Applications built on the kernel matrix (the edge: they import the core, never the reverse).

=========  ==========================================================================
eeg        filter banks equal to MNE's FIR filtering, re-referencing / Laplacian / CSD
           matrices, a spatial and a temporal filter composed into one layer; any layer
           on MNE Raw/Epochs/Evoked as ``raw.filter`` applies a filter (apply_to_mne)
audio      true-stereo reverb, binaural (BRIR) plants, crosstalk cancellation by
           regularized inversion and its channel separation; peak and BS.1770 loudness
           normalisation
mri        coil compression and GRAPPA as k-space convolution and image-domain unmixing
=========  ==========================================================================

Import the submodules directly, e.g. ``from specconv.apps import eeg``; optional
dependencies (mne for ``eeg``) are imported only when a function needs them.
"""
