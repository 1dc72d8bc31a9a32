"""Pictures of conv layers as kernel matrices (extra ``plot``: matplotlib, imported lazily).

* :func:`plot_layer` -- the seed's figure: the C_out × C_in matrix of kernels, group blocks
  on the diagonal (the zero kernels off the blocks shaded), beside the input and output
  channel stacks, so ``y_i = sum_j h_ij ⋆ x_j`` can be read off row by row.
* :func:`plot_frequency_response` -- the same matrix at every frequency: magnitude and phase
  of each entry ``H_ij(f)``.
* :func:`plot_signals` -- channel stacks before and after.

Every function returns a :class:`matplotlib.figure.Figure` made with :mod:`matplotlib.pyplot`
(so ``plt.show()`` and notebooks display it); nothing is shown or saved here. One-dimensional
channels are drawn as traces, two-dimensional ones as images (complex data: magnitude), and
higher-dimensional ones by their central 2-D slice.
"""

from __future__ import annotations

import numpy as np

from ._optional import soft_import
from ._validate import as_array

__all__ = ["plot_layer", "plot_frequency_response", "plot_signals"]

_SHADE = "0.85"  # the background of kernels that are zero by the group structure


def _pyplot():
    soft_import("matplotlib", "plot", purpose="specconv.plot")
    return soft_import("matplotlib.pyplot", "plot", purpose="specconv.plot")


def _check_layer(layer):
    """Any layer object (SpectralConv, SpectralConvTranspose) or a weight array."""
    if hasattr(layer, "weight") and hasattr(layer, "groups"):
        return layer
    if isinstance(layer, (np.ndarray, list, tuple)):
        from .layers import SpectralConv

        return SpectralConv(layer)
    raise TypeError(
        f"layer must be a SpectralConv, SpectralConvTranspose or a weight array "
        f"(C_out, C_in, *kernel), got {type(layer).__name__}."
    )


def _kernel_matrix(layer):
    """Dense ``(C_out, C_in, *kernel)`` kernels and the ``(C_out, C_in)`` block mask.

    A transposed layer stores ``(C_in, C_out/groups, *kernel)``; its entry ``(o, c)`` is
    ``weight[c, o mod C_out/groups]`` (the kernel it scatters, not flipped).
    """
    w = np.asarray(layer.weight)
    G, co, ci = layer.groups, layer.out_channels, layer.in_channels
    bo, bi = co // G, ci // G
    dense = np.zeros((co, ci) + w.shape[2:], dtype=w.dtype)
    mask = np.zeros((co, ci), dtype=bool)
    transposed = type(layer).__name__ == "SpectralConvTranspose"
    for g in range(G):
        rows, cols = slice(g * bo, (g + 1) * bo), slice(g * bi, (g + 1) * bi)
        block = w[cols].swapaxes(0, 1) if transposed else w[rows]
        dense[rows, cols] = block
        mask[rows, cols] = True
    return dense, mask


def _as_2d_view(a):
    """A 1-D or 2-D view of one channel: central slices of any leading spatial axes."""
    while a.ndim > 2:
        a = a[a.shape[0] // 2]
    return a


def _draw_channel(ax, data, *, vlim=None, xaxis=None, complex_parts=False):
    data = _as_2d_view(np.asarray(data))
    if data.ndim == 1:
        t = np.arange(data.size) if xaxis is None else xaxis
        if np.iscomplexobj(data) and complex_parts:
            ax.plot(t, data.real, lw=1.0, color="C0")
            ax.plot(t, data.imag, lw=1.0, color="C1", ls="--")
        else:
            ax.plot(t, np.abs(data) if np.iscomplexobj(data) else data, lw=1.0, color="C0")
        if vlim is not None:
            ax.set_ylim(-vlim * 1.05, vlim * 1.05)
    else:
        if np.iscomplexobj(data):
            image, cmap, lo = np.abs(data), "gray", 0.0
        else:
            image, cmap = data, "RdBu_r"
            lo = -vlim if vlim is not None else None
        ax.imshow(image, cmap=cmap, vmin=lo, vmax=vlim, interpolation="nearest")


def _bare(ax):
    # tick_params, not set_xticks([]): the latter would also clear the axes it shares x with
    ax.tick_params(bottom=False, left=False, labelbottom=False, labelleft=False)


def _shade(ax):
    _bare(ax)
    ax.set_facecolor(_SHADE)
    for spine in ax.spines.values():
        spine.set_visible(False)


def _channels(name, value):
    """``(data, names, sfreq)`` of an unbatched array or VectorSignal."""
    names, sfreq = None, None
    if hasattr(value, "data") and hasattr(value, "ch_names"):
        if getattr(value, "batched", False):
            raise ValueError(f"{name} must be unbatched, got a batched signal.")
        names, sfreq = tuple(value.ch_names), value.sfreq
        value = value.data
    data = as_array(name, value)
    if data.ndim < 2:
        raise ValueError(f"{name} must have shape (C, *spatial), got shape {data.shape}.")
    return data, names, sfreq


def plot_layer(layer, x=None, y=None, *, max_channels=16, title=None):
    """The seed's figure: a conv layer drawn as its C_out × C_in matrix of kernels.

    Cell ``(i, j)`` shows kernel ``h_ij`` (1-D: taps, real solid and imaginary dashed;
    2-D: an image, complex as magnitude), all on one scale. Groups appear as blocks on the
    diagonal: the kernels that are zero by construction are shaded. With ``x``, the input
    channels are drawn above the matrix (channel ``j`` over column ``j``) and the output
    channels beside it (channel ``i`` level with row ``i``): each output row is the sum of
    its row's kernels applied to the inputs above.

    Parameters
    ----------
    layer : SpectralConv, SpectralConvTranspose or array_like
        A layer, or a weight ``(C_out, C_in, *kernel)`` (read as ``SpectralConv(weight)``).
    x : array_like or VectorSignal [shape=(C_in, *spatial)], optional
        An input to draw beside the matrix (a signal's channel names label it).
    y : array_like or VectorSignal [shape=(C_out, *spatial)], optional
        The output to draw; default ``layer(x)`` when ``x`` is given.
    max_channels : int
        Larger matrices are drawn as one image of the kernel norms ``||h_ij||`` instead
        (and without the channel stacks).
    title : str, optional
        Figure title; default describes the layer.

    Returns
    -------
    matplotlib.figure.Figure
        Axes: ``C_out·C_in`` kernel cells, then ``C_in`` input and ``C_out`` output panels.

    See Also
    --------
    plot_frequency_response : The same matrix per frequency.
    plot_signals : Only the channel stacks.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from specconv import SpectralConv
    >>> from specconv.plot import plot_layer
    >>> rng = np.random.default_rng(0)
    >>> layer = SpectralConv(rng.standard_normal((4, 2, 9)), groups=2, padding="same")
    >>> fig = plot_layer(layer, rng.standard_normal((4, 200)))
    >>> len(fig.axes)                  # 4 x 4 kernel cells, 4 inputs, 4 outputs
    24
    >>> fig.get_suptitle()
    'SpectralConv: 4 × 4 kernels of size (9,), groups=2'
    >>> plt.close(fig)
    """
    plt = _pyplot()
    layer = _check_layer(layer)
    kernels, mask = _kernel_matrix(layer)
    n_out, n_in = mask.shape
    if title is None:
        title = (
            f"{type(layer).__name__}: {n_out} × {n_in} kernels of size "
            f"{tuple(layer.kernel_size)}, groups={layer.groups}"
        )
    x_names = y_names = None
    if x is not None:
        x, x_names, _ = _channels("x", x)
        if x.ndim != layer.ndim + 1:
            raise ValueError(
                f"x must be one unbatched signal (C_in, *spatial) with "
                f"{layer.ndim} spatial dimension(s), got shape {x.shape}."
            )
        if x.shape[0] != n_in:
            raise ValueError(f"x must have C_in = {n_in} channels on axis 0, got shape {x.shape}.")
        if y is None:
            y = layer(x)
    if y is not None:
        y, y_names, _ = _channels("y", y)
        if y.shape[0] != n_out:
            raise ValueError(
                f"y must have C_out = {n_out} channels on axis 0, got shape {y.shape}."
            )
    if max(n_out, n_in) > max_channels:
        return _plot_kernel_norms(plt, kernels, mask, title)

    has_x, has_y = x is not None, y is not None
    rows, cols = n_out + has_x, n_in + has_y
    fig = plt.figure(figsize=(1.4 * cols + 1.0, 1.1 * rows + 0.8), layout="constrained")
    grid = fig.add_gridspec(
        rows,
        cols,
        height_ratios=[1.3] * has_x + [1.0] * n_out,
        width_ratios=[1.0] * n_in + [2.2] * has_y,
    )
    scale = float(np.abs(kernels).max()) or 1.0
    for i in range(n_out):
        for j in range(n_in):
            ax = fig.add_subplot(grid[i + has_x, j])
            if mask[i, j]:
                _draw_channel(ax, kernels[i, j], vlim=scale, complex_parts=True)
                _bare(ax)
            else:
                _shade(ax)
            if j == 0:
                ax.set_ylabel(f"out {i}", fontsize="small")
            if i == n_out - 1:
                ax.set_xlabel(f"in {j}", fontsize="small")
    if has_x:
        for j in range(n_in):
            ax = fig.add_subplot(grid[0, j])
            _draw_channel(ax, x[j])
            _bare(ax)
            ax.set_title(x_names[j] if x_names else f"x{j}", fontsize="small")
    if has_y:
        for i in range(n_out):
            ax = fig.add_subplot(grid[i + has_x, n_in])
            _draw_channel(ax, y[i])
            _bare(ax)
            ax.set_ylabel(
                y_names[i] if y_names else f"y{i}", fontsize="small", rotation=0, labelpad=12
            )
            ax.yaxis.set_label_position("right")
    fig.suptitle(title)
    return fig


def _plot_kernel_norms(plt, kernels, mask, title):
    norms = np.sqrt(np.sum(np.abs(kernels.reshape(mask.shape + (-1,))) ** 2, axis=-1))
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    ax.set_facecolor(_SHADE)
    image = ax.imshow(np.ma.masked_where(~mask, norms), cmap="viridis", interpolation="nearest")
    ax.set_xlabel("input channel j")
    ax.set_ylabel("output channel i")
    fig.colorbar(image, ax=ax, label="||h_ij||")
    fig.suptitle(title)
    return fig


def plot_frequency_response(layer, n, *, sfreq=None, db=True, max_channels=8):
    """Magnitude and phase of the layer's C_out × C_in matrix at every frequency.

    Two grids side by side, one cell per entry ``H_ij(f)`` of
    :meth:`SpectralConv.frequency_response`: magnitude (dB by default) and phase (unwrapped
    along frequency for 1-D layers). 2-D layers are drawn as images over ``(f_y, f_x)``
    with DC in the centre. Entries that are zero by the group structure are shaded.

    Parameters
    ----------
    layer : SpectralConv, SpectralConvTranspose or array_like
        A layer, or a weight ``(C_out, C_in, *kernel)``.
    n : int or tuple of int
        DFT length per spatial axis (at least the kernel span).
    sfreq : float, optional
        Sampling frequency: 1-D frequency axes in Hz instead of cycles per sample.
    db : bool
        Magnitude in dB (``20 log10 |H|``, floored 120 dB below the peak) or linear.
    max_channels : int
        Refuse larger matrices (``2·C_out·C_in`` panels would be unreadable); plot a
        sub-layer instead.

    Returns
    -------
    matplotlib.figure.Figure
        Two subfigures titled "magnitude" and "phase", each with ``C_out·C_in`` axes.

    See Also
    --------
    plot_layer : The kernels themselves.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from specconv.plot import plot_frequency_response
    >>> w = np.array([[[1.0, 1.0]], [[1.0, -1.0]]])          # sum and difference
    >>> fig = plot_frequency_response(w, 64, sfreq=1000.0)
    >>> [sub.get_suptitle() for sub in fig.subfigs]
    ['magnitude (dB)', 'phase (rad)']
    >>> len(fig.axes)
    4
    >>> plt.close(fig)
    """
    plt = _pyplot()
    layer = _check_layer(layer)
    _, mask = _kernel_matrix(layer)
    n_out, n_in = mask.shape
    if max(n_out, n_in) > max_channels:
        raise ValueError(
            f"layer has {n_out} × {n_in} kernels; plot_frequency_response draws at most "
            f"max_channels={max_channels} per side. Plot a sub-layer or raise max_channels."
        )
    is_complex = np.iscomplexobj(layer.weight)
    one_d = layer.ndim == 1
    whole = is_complex or not one_d
    H = layer.frequency_response(n, whole=whole)
    spatial = tuple(range(H.ndim - 2))
    if whole:
        H = np.fft.fftshift(H, axes=spatial)
    d = 1.0 / sfreq if sfreq is not None else 1.0
    if one_d:
        length: int = n if np.isscalar(n) else n[0]  # type: ignore[assignment]  # an int here
        f = np.fft.fftshift(np.fft.fftfreq(length, d)) if whole else np.fft.rfftfreq(length, d)
    mag = np.abs(H)
    if db:
        floor = max(mag.max(), np.finfo(float).tiny) * 1e-6
        mag = 20 * np.log10(np.maximum(mag, floor))
    phase = np.angle(H)
    if one_d:
        phase = np.unwrap(phase, axis=0)

    fig = plt.figure(figsize=(2.6 * 2 * n_in + 0.5, 1.7 * n_out + 1.0), layout="constrained")
    subs = fig.subfigures(1, 2)
    panels = (
        (subs[0], mag, "magnitude (dB)" if db else "magnitude"),
        (subs[1], phase, "phase (rad)"),
    )
    for sub, values, label in panels:
        axes = sub.subplots(n_out, n_in, squeeze=False, sharex=True)
        finite = values[..., mask]
        lo, hi = float(finite.min()), float(finite.max())
        for i in range(n_out):
            for j in range(n_in):
                ax = axes[i, j]
                if not mask[i, j]:
                    _shade(ax)
                    continue
                if one_d:
                    ax.plot(f, values[:, i, j], lw=1.0)
                    ax.set_ylim(lo - 0.05 * (hi - lo + 1e-12), hi + 0.05 * (hi - lo + 1e-12))
                else:
                    view = values[(Ellipsis, i, j)]
                    while view.ndim > 2:
                        view = view[view.shape[0] // 2]
                    ax.imshow(
                        view,
                        cmap="twilight" if values is phase else "viridis",
                        vmin=lo,
                        vmax=hi,
                        interpolation="nearest",
                    )
                    _bare(ax)
                ax.set_title(f"H{i}{j}", fontsize="small")
        if one_d:  # frequency ticks under the lowest drawn cell of each column
            for j in range(n_in):
                ax = axes[np.flatnonzero(mask[:, j])[-1], j]
                ax.tick_params(labelbottom=True)
                ax.set_xlabel("Hz" if sfreq is not None else "cycles/sample", fontsize="small")
        sub.suptitle(label)
    return fig


def plot_signals(before, after=None, *, sfreq=None, labels=("before", "after"), max_channels=16):
    """Channel stacks side by side: a signal before and after a layer.

    Parameters
    ----------
    before, after : array_like or VectorSignal [shape=(C, *spatial)]
        Unbatched signals; the channel counts may differ (``after`` is optional). 1-D
        channels are drawn as traces (complex: magnitude), 2-D ones as images.
    sfreq : float, optional
        Sampling frequency for a time axis in seconds (taken from a VectorSignal when not
        given).
    labels : tuple of 2 str
        Column titles.
    max_channels : int
        Draw at most this many channels per column (the first ones; the title says so).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per drawn channel, ``before`` column first.

    See Also
    --------
    plot_layer : The same stacks beside the layer's kernels.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import matplotlib.pyplot as plt
    >>> import numpy as np
    >>> from specconv.plot import plot_signals
    >>> x = np.random.default_rng(0).standard_normal((3, 500))
    >>> fig = plot_signals(x, x[:2] ** 2, sfreq=250.0)
    >>> len(fig.axes), fig.axes[0].get_title(), fig.axes[3].get_title()
    (5, 'before', 'after')
    >>> plt.close(fig)
    """
    plt = _pyplot()
    signals = [_channels("before", before)]
    if after is not None:
        signals.append(_channels("after", after))
    if not isinstance(labels, (tuple, list)) or len(labels) < len(signals):
        raise ValueError(f"labels must be a tuple of {len(signals)} str, got {labels!r}.")
    shown = [min(data.shape[0], max_channels) for data, _, _ in signals]
    fig = plt.figure(figsize=(5.0 * len(signals), 0.9 * max(shown) + 1.2), layout="constrained")
    grid = fig.add_gridspec(1, len(signals))
    for col, ((data, names, own_sfreq), count, label) in enumerate(zip(signals, shown, labels)):
        rate = sfreq if sfreq is not None else own_sfreq
        cells = grid[0, col].subgridspec(count, 1)
        first = None
        for c in range(count):
            ax = fig.add_subplot(cells[c, 0], sharex=first)
            first = first or ax
            channel = data[c]
            xaxis = None
            if channel.ndim == 1 and rate is not None:
                xaxis = np.arange(channel.size) / rate
            _draw_channel(ax, channel, xaxis=xaxis)
            name = names[c] if names is not None else f"ch{c}"
            ax.set_ylabel(name, fontsize="small", rotation=0, ha="right", va="center")
            if _as_2d_view(channel).ndim == 2:
                _bare(ax)
            elif c < count - 1:
                ax.tick_params(labelbottom=False)
            else:
                ax.set_xlabel("time (s)" if rate is not None else "sample")
            if c == 0:
                more = f" (first {count} of {data.shape[0]})" if count < data.shape[0] else ""
                ax.set_title(f"{label}{more}")
    return fig
