"""scikit-learn: a conv layer as a transformer, for decoding pipelines (extra ``sklearn``).

:class:`LayerTransformer` applies a 1-D :class:`~specconv.SpectralConv` (a filter bank, a
spatial filter, their composition) to epoched data ``(n_epochs, n_channels, n_times)``, as the
first step of a :class:`sklearn.pipeline.Pipeline` before MNE's decoding classes
(:class:`mne.decoding.CSP`, :class:`mne.decoding.Vectorizer`, ...). Each epoch is filtered
separately with MNE's edge extension (``pad``, "edge" as ``epochs.filter``), so the numbers
equal ``epochs.filter`` for the same FIR.

Importing this module imports scikit-learn (``pip install "specconv[sklearn]"``);
``import specconv`` does not.
"""

from __future__ import annotations

import numpy as np

from ._optional import soft_import
from .apps.eeg import mne_pad, output_names
from .kernels import side_pads, without_padding
from .layers import SpectralConv

_sklearn_base = soft_import("sklearn.base", "sklearn", purpose="scikit-learn transformers")
_validation = soft_import("sklearn.utils.validation", "sklearn")

__all__ = ["LayerTransformer"]


class LayerTransformer(_sklearn_base.TransformerMixin, _sklearn_base.BaseEstimator):
    """A 1-D conv layer as a scikit-learn transformer of epochs.

    PyTorch conv semantics for the layer. ``transform`` maps ``(n_epochs, C_in, n_times)`` to
    ``(n_epochs, C_out, n_times')``, each epoch extended at its edges by ``pad`` as
    :func:`mne.filter.filter_data` extends it (``pad=None``: the layer's own padding). A 2-D
    ``X`` ``(n_samples, n_times)`` is one channel per sample (for a layer with one input
    channel); the output is then 2-D too when the layer has one output channel.

    ``fit`` learns nothing (the layer is given, not estimated): it checks ``X`` against the
    layer and records ``n_features_in_`` (``X.shape[1]``: the channels of 3-D ``X``, the
    samples of 2-D ``X``). ``transform`` works without ``fit``.

    Parameters
    ----------
    layer : SpectralConv
        One spatial (time) dimension.
    pad : str or None
        MNE's edge extension per epoch: "edge" (default, as ``epochs.filter``),
        "reflect_limited", "reflect", "constant", "wrap" or another :func:`numpy.pad` mode;
        None applies the layer with its own padding.
    ch_names : sequence of str, optional
        Input channel names, for :meth:`get_feature_names_out` (default ``x0, x1, ...``).
    bands : sequence of (l_freq, h_freq) or str, optional
        A filter bank's bands: output names ``"<channel>-<band>"``.
    names : sequence of str, optional
        Output channel names (see :func:`specconv.apps.eeg.output_names`).

    Attributes
    ----------
    n_features_in_ : int
        ``X.shape[1]`` seen by ``fit``.
    feature_names_in_ : ndarray of str
        Column names of a 2-D DataFrame seen by ``fit``.

    See Also
    --------
    specconv.apps.eeg.apply_to_mne : the same on MNE objects.

    Notes
    -----
    ``get_feature_names_out`` names axis 1 of the output: the output channels (3-D), or,
    for a 2-D single-channel input, the samples (the input's feature names: a
    length-keeping filter maps sample ``t`` to sample ``t``). ``set_output`` applies to 2-D
    outputs only: a 3-D output has no table form, and pandas refuses it.

    Examples
    --------
    >>> import numpy as np
    >>> from specconv.apps.eeg import filter_bank
    >>> from specconv.sklearn import LayerTransformer
    >>> bands = [(8, 13), (13, 30)]
    >>> bank = LayerTransformer(filter_bank(250.0, bands, 2), ch_names=["C3", "C4"],
    ...                         bands=bands)
    >>> X = np.random.default_rng(0).standard_normal((10, 2, 500))
    >>> bank.fit_transform(X).shape
    (10, 4, 500)
    >>> bank.get_feature_names_out().tolist()
    ['C3-8-13Hz', 'C3-13-30Hz', 'C4-8-13Hz', 'C4-13-30Hz']
    """

    def __init__(self, layer, *, pad="edge", ch_names=None, bands=None, names=None):
        self.layer = layer
        self.pad = pad
        self.ch_names = ch_names
        self.bands = bands
        self.names = names

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        tags.input_tags.three_d_array = True
        weight = getattr(self.layer, "weight", None)
        single = weight is not None and weight.dtype == np.float32
        tags.transformer_tags.preserves_dtype = ["float64", "float32"] if single else ["float64"]
        return tags

    def _check_layer(self):
        if not isinstance(self.layer, SpectralConv):
            raise TypeError(f"layer must be a SpectralConv, got {type(self.layer).__name__}.")
        if self.layer.ndim != 1:
            raise ValueError(f"layer must be 1-D (time), got {self.layer.ndim}-D.")
        if self.pad is not None and not isinstance(self.pad, str):
            raise TypeError(f"pad must be a str or None, got {self.pad!r}.")
        return self.layer

    def _check_X(self, X, reset):
        layer = self._check_layer()
        X = _validation.validate_data(
            self, X, reset=reset, allow_nd=True, dtype=[np.float64, np.float32]
        )
        if X.ndim == 2 and layer.in_channels != 1:
            raise ValueError(
                f"X is 2-D {X.shape}, i.e. one channel per sample, but the layer takes "
                f"{layer.in_channels} channels: pass X of shape (n_epochs, "
                f"{layer.in_channels}, n_times)."
            )
        if X.ndim == 3 and X.shape[1] != layer.in_channels:
            raise ValueError(
                f"X has {X.shape[1]} channels (shape {X.shape}) but the layer takes "
                f"{layer.in_channels}."
            )
        if X.ndim > 3:
            raise ValueError(
                f"X must be (n_epochs, n_channels, n_times) or (n_samples, n_times), got "
                f"shape {X.shape}."
            )
        return X

    def fit(self, X, y=None):
        """Check ``X`` against the layer; nothing is estimated.

        Parameters
        ----------
        X : array_like [shape=(n_epochs, C_in, n_times) or (n_samples, n_times)]
        y : ignored

        Returns
        -------
        self

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.kernels import fir_layer
        >>> from specconv.sklearn import LayerTransformer
        >>> t = LayerTransformer(fir_layer(np.ones((2, 1, 3)) / 3, mode="same", delay=1,
        ...                                groups=2))
        >>> t.fit(np.zeros((5, 2, 100))).n_features_in_
        2
        """
        self._check_X(X, reset=True)
        return self

    def transform(self, X):
        """Filter every epoch.

        Parameters
        ----------
        X : array_like [shape=(n_epochs, C_in, n_times) or (n_samples, n_times)]

        Returns
        -------
        Xt : ndarray [shape=(n_epochs, C_out, n_times') or (n_samples, n_times')]

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.kernels import fir_layer
        >>> from specconv.sklearn import LayerTransformer
        >>> ramp = np.arange(6.0)[np.newaxis]                      # one sample, one channel
        >>> LayerTransformer(fir_layer(np.ones((1, 1, 3)) / 3, mode="same", delay=1),
        ...                  pad="reflect").transform(ramp)       # odd reflection: a ramp stays
        array([[0., 1., 2., 3., 4., 5.]])
        """
        X = self._check_X(X, reset=False)
        x = X[:, np.newaxis, :] if X.ndim == 2 else X
        if self.pad is None:
            y = self.layer(x)
        else:
            ((lo, hi),) = side_pads(self.layer)
            y = without_padding(self.layer)(mne_pad(x, lo, hi, self.pad))
        return y[:, 0, :] if X.ndim == 2 and y.shape[1] == 1 else y

    def get_feature_names_out(self, input_features=None):
        """Names of the output's axis 1: output channels (3-D) or samples (2-D).

        Parameters
        ----------
        input_features : sequence of str, optional
            Input channel names (3-D) or sample names (2-D); default ``ch_names``, the
            DataFrame's columns seen by ``fit``, else ``x0, x1, ...``.

        Returns
        -------
        ndarray of str

        Examples
        --------
        >>> import numpy as np
        >>> from specconv.kernels import pointwise
        >>> from specconv.sklearn import LayerTransformer
        >>> t = LayerTransformer(pointwise([[0.5, 0.5]]), names=["mean"]).fit(np.ones((4, 2, 8)))
        >>> t.get_feature_names_out().tolist()
        ['mean']
        """
        _validation.check_is_fitted(self, "n_features_in_")
        names_in = input_features
        if names_in is None:
            names_in = (
                self.ch_names
                if self.ch_names is not None
                else getattr(self, "feature_names_in_", None)
            )
        if names_in is None:
            names_in = [f"x{i}" for i in range(self.n_features_in_)]
        names_in = [str(n) for n in names_in]
        if len(names_in) != self.n_features_in_:
            raise ValueError(
                f"input_features has {len(names_in)} names, expected {self.n_features_in_}."
            )
        layer = self._check_layer()
        if (
            layer.in_channels == 1
            and layer.out_channels == 1
            and self.names is None
            and self.bands is None
        ):
            return np.asarray(names_in, dtype=object)  # 2-D samples or one channel: as in
        mixes = layer.groups != layer.in_channels and layer.out_channels != layer.in_channels
        if mixes and self.names is None:
            prefix = type(self).__name__.lower()
            return np.asarray([f"{prefix}{i}" for i in range(layer.out_channels)], dtype=object)
        out = output_names(layer, names_in, bands=self.bands, names=self.names)
        return np.asarray(out, dtype=object)
