"""Which method, and which overlap-save tiles: a cost model in seconds.

The model counts the work of each method and multiplies by per-operation times
(:class:`~specconv._calibration.Constants`), one set per precision and thread count. They are measured on the machine
at hand the first time a call needs them -- about 0.4-0.7 s per precision on a 2-core machine,
once: the result is stored as JSON in specconv's cache directory (``SPECCONV_CACHE_DIR``) and
read by every later process (see :mod:`specconv._calibration`). ``SPECCONV_CALIBRATE=0`` keeps
the shipped ones, measured on the development machine (2 cores, OpenBLAS, FFTW 3.3);
``specconv calibrate`` measures again and prints both. Only the *relative* cost matters: the
choice is an argmin. The streaming partitioner (``stream.plan_levels``) and the out-of-core
chunk planner price their options with the same constants.

direct
    Stride 1 (slabs of flat padded images, ``P_grid`` outputs on the padded row length):
    ``P_grid · (C_out · C_in/G · K · t_mac + (kw · C_in + K/kw · C_out) · t_sample)
    + calls · t_call`` -- the GEMMs, the buffer copies and accumulations, numpy's calls --
    ``+ C_out · C_in/G · K · t_copy``, laying the weight out for the GEMMs. The units of slabs
    run in rounds on the worker threads (an idle worker counts); ``P_grid`` includes the rows
    between the slabs a unit lays end to end.
    Depthwise (C_in/G = 1), compiled loops (real data): ``B · C_out · P · (K · t_tap' +
    t_sample')``, the taps on registers and the image read and written once. The numpy loops
    (complex data, or no C compiler at install): one pass per tap over each output channel's
    flat stride-1 grid (the padded row length), ``K · B · C_out · P_grid · t_tap``, plus
    copying every input and output sample once.
    A 1 × 1 kernel: one GEMM, ``B · P · (C_in · t_copy + C_out · C_in/G · t_mac)``.
    Strided: the sum of its stride-1 phases, plus reading their inputs out of the padded
    input (``B · C_in · P_padded · t_copy``) and adding them up; or, with channels to mix,
    where cheaper, GEMMs on every output's window gathered into columns, ``B · P · C_in · K ·
    (C_out/G · t_mac + t_sample)`` and the calls; a depthwise one (compiled loops) is one
    stride-1 layer over its input split into phases, plus that split. Each call
    adds its own overhead ``t_direct_call`` (validation, threads).
    The constants are per real number of the precision: complex data counts twice (four times
    for multiply-adds).
fft (overlap-save with tile shape L, T tiles, F frequencies per tile)
    ``T · B · (C_in · t(L) + C_out · t(L / stride))``                transforms and tile copies,
    ``t(L) = t_fft · n (log2 n + s · k) + t_copy · n`` for the ``n`` points of ``L``, where ``k``
    counts the axes but the last whose length FFTW has no single codelet for (a stride folds
    the inverse transform), ``+ prod(L[:-1]) · t_row`` for its rows (runs along the last
    axis): a row's own overhead in the transforms and strided copies, which small tiles pay
    many times
    ``+ T · B · G · (C_out/G) · (C_in/G) · F · t_cmac``              per-frequency product
    (``t_cmac``: BLAS matmul, the compiled product, or elementwise products, which add up the
    input channels in a pass of their own: ``2 · C_in/G − 1`` passes per output channel)
    ``+ T · B · C_out · F · passes · t_fold``                       folding for a stride
    ``+ G · (C_out/G) · (C_in/G) · n · t_spectra``                   kernel spectra (once)
    ``+ runs · spectra bytes · t_spectra_pass``                     each run of tiles' product
    streaming the kernel spectra (it bounds the product where the runs hold few tiles)
    ``+ chunks · t_chunk + t_fft_call``                             per-chunk and per-call overhead
    (the work scaled up where fewer chunks than workers leave some idle)
    ``+ max(0, spectra of all tiles · t_spectra_pass − product)``  where the workers' chunks
    exceed half the last-level cache, a matrix product waiting for memory (such chunks are
    cut until they fit, where that costs less: :func:`chunking`)
    subject to the kernel spectra fitting in ``SPECTRA_BUDGET`` bytes. A layer applied to many
    signals of one shape (the out-of-core chunks) computes its spectra once: it plans with
    ``spectra_cached=True`` and its own spectra budget, and so picks longer tiles. Layers
    and functions price the spectra on a weight's first call and switch to the FFT method on
    a later one where it wins with them cached (``layers._Layer._choice``).

Candidate tile lengths per axis are the 2·3·5·7-smooth lengths from just above the kernel span
to the whole padded signal, so the whole-signal FFT is simply the one-tile candidate.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass

import numpy as np

from . import _calibration, _compiled, _direct, fft
from ._calibration import SHIPPED
from ._engine import Tiling, compiled_product, spectral_shape, uses_matmul


def precision(itemsize, is_complex):
    """``"single"`` or ``"double"`` for results of ``itemsize`` bytes (complex or real)."""
    return "single" if itemsize <= (8 if is_complex else 4) else "double"


def dtype_of(itemsize, is_complex):
    """The compute dtype of results of ``itemsize`` bytes."""
    if is_complex:
        return np.dtype(np.complex64 if itemsize <= 8 else np.complex128)
    return np.dtype(np.float32 if itemsize <= 4 else np.float64)


def machine(prec, workers):
    """The constants of precision ``prec`` at ``workers`` threads: measured on this machine
    (see :mod:`specconv._calibration`), or the shipped ones where measuring is off."""
    measured = _calibration.constants(prec, workers)
    return _merged(prec, tuple(sorted(measured.items()))) if measured else SHIPPED[prec]


@functools.lru_cache(maxsize=16)
def _merged(prec, measured):  # once per set of constants, not on every call
    return dataclasses.replace(SHIPPED[prec], **dict(measured))


SPECTRA_BUDGET = 512 * 2**20  # bytes of cached kernel spectra per layer and tile shape
CHUNK_BUDGET = 64 * 2**20  # bytes of tile buffers per chunk (matmul product)
ELEMENTWISE_CHUNK_BUDGET = 8 * 2**20  # the same for elementwise products: stays in cache
MIN_COLUMNS = 16  # matmul columns (signals × tiles) worth a larger chunk
TEAM_COLUMNS = 32  # below this many, workers share chunks (see chunking)
CHUNK_WORK = 16  # a chunk split for the threads keeps this many times its overhead of work
MIN_TILE = 8  # points per axis: shorter transforms cost more per point than the model counts
CANDIDATES_PER_AXIS = {1: 40, 2: 16, 3: 9}  # by number of spatial axes; 6 beyond


@dataclass(frozen=True)
class Choice:
    method: str  # "direct" or "fft"
    seconds: float  # the model's estimate
    tiling: Tiling | None = None
    columns: bool = False  # direct, strided: windows gathered into columns (``_direct._columns``)


def _constants(geom, itemsize, workers, constants):
    if constants is not None:
        return constants
    return machine(precision(itemsize, geom.is_complex), workers or fft.get_num_threads())


def direct_cost(geom, itemsize=8, workers=2, constants=None):
    """Model seconds of the direct method (result ``itemsize``, ``workers`` threads;
    ``constants``: a :class:`~specconv._calibration.Constants`, default this machine's for that precision)."""
    return direct_plan(geom, itemsize, workers, constants)[0]


def direct_plan(geom, itemsize=8, workers=2, constants=None):
    """``(seconds, columns)``: :func:`direct_cost`, and whether a strided layer with channels
    to mix gathers its windows into columns (``_direct._columns``) rather than summing its
    phases, whichever the model prices cheaper."""
    c = _constants(geom, itemsize, workers, constants)
    seconds = _direct_seconds(geom, itemsize, workers, c)
    strided = math.prod(geom.kernel) > 1 and any(s > 1 for s in geom.stride)
    if not strided or _direct.strided_depthwise(geom, dtype_of(itemsize, geom.is_complex)):
        return seconds, False
    columns = columns_cost(geom, itemsize, workers, c) + c.T_DIRECT_CALL
    return min(seconds, columns), columns < seconds


def _direct_seconds(geom, itemsize, workers, c):
    P = math.prod(geom.out_shape)
    ci = geom.in_channels // geom.groups
    taps = math.prod(geom.kernel)
    cx = 2 if geom.is_complex else 1  # the constants are per real number
    if taps > 1 and _direct.strided_depthwise(geom, dtype_of(itemsize, geom.is_complex)):
        # a stride-1 layer of the same taps over the input split into its phases
        ones = (1,) * geom.ndim
        padded = tuple(n + k - 1 for n, k in zip(geom.out_shape, geom.kernel))
        stride_1 = dataclasses.replace(geom, dilation=ones, stride=ones, padded=padded)
        split = geom.batch * geom.in_channels * math.prod(geom.padded) * c.T_COPY
        return compiled_depthwise_cost(stride_1, workers, c) + split + c.T_DIRECT_CALL
    if taps > 1 and any(s > 1 for s in geom.stride):  # its phases, and their sum
        parts = _direct.phases(geom)
        adds = (len(parts) - 1) * geom.batch * geom.out_channels * P * c.T_COPY
        # each phase reads its every s-th input sample: whole cache lines for a part of them
        split = geom.batch * geom.in_channels * math.prod(geom.padded) * c.T_COPY
        return adds + split + sum(direct_cost(part, itemsize, workers, c) for *_, part in parts)
    if ci == 1 and _direct.compiled_depthwise(geom, dtype_of(itemsize, geom.is_complex)):
        seconds = compiled_depthwise_cost(geom, workers, c)
    elif ci == 1:
        seconds = numpy_depthwise_cost(geom, c)
    elif _direct.uses_slabs(geom):
        seconds = slab_cost(geom, itemsize, workers, c)
    else:  # one GEMM
        seconds = (
            geom.batch
            * P
            * (geom.in_channels * c.T_COPY + geom.out_channels * ci * c.T_MAC_DIRECT * cx * cx)
        )
    return seconds + c.T_DIRECT_CALL


def columns_cost(geom, itemsize, workers, c):
    """Model seconds of a strided layer's windows gathered into columns for GEMMs (units shared
    by the workers, as the slabs'), after the input is padded on one thread."""
    images, rows = _direct.column_units(geom, itemsize)
    units = geom.groups * -(-geom.batch // images) * -(-geom.out_shape[0] // rows)
    cx = 2 if geom.is_complex else 1
    gathered = geom.batch * geom.in_channels * math.prod(geom.kernel) * math.prod(geom.out_shape)
    macs = gathered * geom.out_channels // geom.groups
    moved = geom.batch * geom.out_channels * math.prod(geom.out_shape) if images > 1 else 0
    seconds = (
        macs * cx * cx * c.T_MAC_SLAB
        + gathered * cx * c.T_SLAB_SAMPLE
        + moved * cx * c.T_COPY
        + 3 * units * c.T_CALL
    )
    padded = geom.batch * geom.in_channels * math.prod(geom.padded) * cx * c.T_COPY
    return seconds * 2 * -(-units // workers) / units + padded


def compiled_depthwise_cost(geom, workers, c):
    """Model seconds of a depthwise layer in the compiled loops."""
    images = geom.batch * geom.groups  # shared by the workers; the constants are for two
    per_sample = math.prod(geom.kernel) * c.T_COMPILED_TAP + c.T_COMPILED_SAMPLE
    return (
        geom.batch
        * geom.out_channels
        * math.prod(geom.out_shape)
        * per_sample
        * 2
        * -(-images // workers)
        / images
    )


def interleaved_cost(phase, phases, union, out_length, itemsize, workers, constants=None):
    """Model seconds of a depthwise transposed 1-D layer's ``phases`` output phases (each of
    geometry ``phase``) in one pass of the compiled loop (``_direct.transposed_depthwise``):
    ``phases`` times the output channels, each of ``union`` taps."""
    c = _constants(phase, itemsize, workers, constants)
    length = -(-out_length // phases)  # samples of the longest phase
    line = dataclasses.replace(
        phase,
        out_channels=phase.out_channels * phases,
        kernel=(union,),
        dilation=(1,),
        padded=(length + union - 1,),
    )
    return compiled_depthwise_cost(line, workers, c) + c.T_DIRECT_CALL


def numpy_depthwise_cost(geom, c):
    """Model seconds of a depthwise layer in the numpy loops (one pass per tap)."""
    cx = 2 if geom.is_complex else 1
    grid = ((geom.out_shape[0] - 1) * geom.stride[0] + 1) * math.prod(geom.padded[1:])
    copies = geom.in_channels * math.prod(geom.padded) + geom.out_channels * math.prod(
        geom.out_shape
    )
    return geom.batch * (
        math.prod(geom.kernel) * geom.out_channels * grid * c.T_DEPTHWISE_TAP * cx
        + copies * c.T_COPY
    )


def slab_work(geom, itemsize, workers):
    """``(multiply-adds, samples copied or accumulated, numpy calls, units)`` of the direct
    method's slabs (multiply-adds in the result dtype: complex ones count once)."""
    rows, per_unit, columns = _direct.slab_plan(geom, itemsize, workers)
    row = math.prod(geom.padded[1:])
    kw = geom.kernel[-1]
    outer = math.prod(geom.kernel[:-1])
    slabs = geom.batch * -(-geom.out_shape[0] // rows)
    per_group = -(-slabs // per_unit)
    units = geom.groups * per_group
    # outputs computed, on the padded row length: a unit's slabs lie end to end, so the rows
    # between them are computed too (a third of the work on 8-row slabs of a 7 x 7 kernel)
    grid = slabs * (rows + geom.span[0]) * row - per_group * geom.span[0] * row
    runs = -(-per_unit * (rows + geom.span[0]) * row // columns)
    macs = grid * geom.out_channels * geom.in_channels // geom.groups * kw * outer
    samples = grid * (kw * geom.in_channels + outer * geom.out_channels)
    return macs, samples, units * (2 * per_unit + runs * (kw + 2 * outer)), units


def slab_cost(geom, itemsize, workers, c):
    """Model seconds of the direct method's slabs (stride 1, channels to mix)."""
    macs, samples, calls, units = slab_work(geom, itemsize, workers)
    cx = 2 if geom.is_complex else 1
    seconds = macs * cx * cx * c.T_MAC_SLAB + samples * cx * c.T_SLAB_SAMPLE + calls * c.T_CALL
    # the constants are for units shared by two workers; rounds of units on ``workers``:
    shared = seconds * 2 * -(-units // workers) / units
    # and before them, one thread lays the weight out for the GEMMs
    weight = geom.out_channels * geom.in_channels // geom.groups * math.prod(geom.kernel)
    return shared + weight * cx * c.T_COPY


def is_tile_length(n):
    """Tile lengths are a power of two times 1, 3, 5, 7 or 9: FFTW's fastest sizes.

    Measured: small transforms with several odd factors (27³, 25 × 135) ran 2-4x slower per
    point than the FFT constant says, and picking them made 3-D layers 2x slower.
    """
    while n % 2 == 0:
        n //= 2
    return n in (1, 3, 5, 7, 9)


def one_codelet(n):
    """Whether FFTW transforms length ``n`` in one codelet, without a twiddle pass over the data
    (FFTW 3.3's SIMD codelets)."""
    return n <= 16 or n in (20, 25, 32, 64, 128)


def _axis_candidates(span, stride, padded, ndim):
    lo = max(span + stride - 1, MIN_TILE)
    lengths = [n for n in fft.fast_lengths(lo, 2 * max(padded, lo)) if is_tile_length(n)]
    # multiples of the stride let the engine fold the spectrum (a smaller inverse transform)
    lengths = [n for n in lengths if n % stride == 0] or lengths
    whole = next((n for n in lengths if n >= padded), None)
    if whole is None:  # the public functions refuse such lengths first (_validate.MAX_LENGTH)
        raise ValueError(
            f"No FFT length specconv plans covers an axis of {padded} samples "
            f"(kernel span {span}, stride {stride})."
        )
    lengths = [n for n in lengths if n <= whole]
    count = CANDIDATES_PER_AXIS.get(ndim, 6)
    if len(lengths) > count:  # thin out geometrically, keep both ends
        keep = np.unique(np.geomspace(1, len(lengths), count).astype(int) - 1)
        lengths = [lengths[i] for i in keep] + [lengths[-1]]
    return sorted(set(lengths))


def _divisor_below(n, limit):
    """The largest divisor of ``n`` not above ``limit`` (at least 1)."""
    return max(d for d in range(1, max(1, limit) + 1) if n % d == 0)


def _spectrum_bytes(geom, fft_shape, itemsize):
    """Bytes of one channel's spectrum of an ``fft_shape`` tile (result ``itemsize``)."""
    csize = itemsize if geom.is_complex else 2 * itemsize
    return math.prod(spectral_shape(fft_shape, geom.is_complex)) * csize


def tile_bytes(geom, fft_shape, itemsize):
    """Bytes of a chunk's buffers per (signal, group, tile): real tile and its spectrum, in
    and out channels."""
    channels = (geom.in_channels + geom.out_channels) // geom.groups
    tile = math.prod(fft_shape) * itemsize
    return channels * (tile + _spectrum_bytes(geom, fft_shape, itemsize))


def chunking(geom, fft_shape, tiles, itemsize, workers, seconds=None, constants=None):
    """``(tiles, signals, groups, team)`` per chunk: work for every worker, bounded memory.

    Starting from everything in one chunk, halve the groups, then the batch, then the run of
    tiles, until the chunk fits its budget and there are two chunks per worker -- but keep at
    least ``MIN_COLUMNS`` matmul columns (signals × tiles) unless twice the budget or an idle
    worker forces a split. Groups go first because they share nothing. Measured on CNN
    layers (8 × 64 × 128²): one whole-batch chunk ran 1.7-2x slower than this, since the
    chunks are also what the worker threads share out, and small elementwise chunks stay in
    cache through all five steps. A matmul product's run of tiles is then halved further
    until the workers' chunks fit half the last-level cache, where :func:`chunk_overheads`
    prices that lower (a product of few outputs per input waits for memory otherwise).

    A matmul product left with fewer than ``TEAM_COLUMNS`` columns per chunk (memory-bound
    long kernels) is shared instead: the workers take ``workers`` such chunks as one, as a
    team (each transforms its run of tiles, then computes the product at its share of the
    frequencies for all of them). The memory is the same; each BLAS call gets ``workers``
    times the columns (a per-frequency call costs microseconds beyond its flops) and the
    kernel spectra are read once per chunk, not once per worker. The compiled product makes
    no call per frequency: there a member's share of the product reads every other member's
    tiles' spectra instead of a copy of the kernel spectra, so a team is chosen only where
    the kernel matrix (C_out × C_in per group) has more entries than the spectra of a chunk's
    columns (columns × (C_in + C_out)); otherwise the solo chunks run faster (W3b, a 1 x 1
    layer). A team is chosen unless its last chunk idles members longer than the solo chunks
    idle workers (measurements: ``benchmarks/RESULTS.md``, "Measurements behind the code's constants").

    Chunks are split, or shared by a team, for the threads only while each keeps at least
    ``CHUNK_WORK`` times a chunk's own overhead (``T_CHUNK``) of work on one thread, given the
    layer's model ``seconds`` of work on ``workers`` threads: a small layer runs as one chunk,
    its transforms threaded inside FFTW where they are long enough (measurements: the same
    section).
    """
    G = geom.groups
    other = math.prod(tiles[1:])
    # bytes per (signal, group, tile along the first axis)
    unit = other * tile_bytes(geom, fft_shape, itemsize)
    matmul = uses_matmul(geom)
    budget = CHUNK_BUDGET if matmul else ELEMENTWISE_CHUNK_BUDGET
    min_chunks = 2 * workers if workers > 1 else 1
    blocks = (tiles[0], geom.batch, G)  # tiles, signals, groups per chunk

    def n_chunks(b):
        return -(-tiles[0] // b[0]) * (geom.batch // b[1]) * (G // b[2])

    c = _constants(geom, itemsize, workers, constants)
    least = None if seconds is None else CHUNK_WORK * c.T_CHUNK

    def worth_threads(chunks):  # each of ``chunks`` carries far more work than overhead
        return least is None or seconds * workers / chunks >= least

    while True:
        size = math.prod(blocks) * unit
        threads = worth_threads(2 * n_chunks(blocks))
        must = size > 2 * budget or (n_chunks(blocks) < workers and threads)  # idle workers
        want = size > budget or (n_chunks(blocks) < min_chunks and threads)
        if not (must or want):
            break
        chunk, batch_block, group_block = blocks
        if group_block > 1:
            split = (chunk, batch_block, _divisor_below(G, group_block // 2))
        elif batch_block > 1:
            split = (chunk, _divisor_below(geom.batch, batch_block // 2), group_block)
        elif chunk > 1:
            split = (-(-chunk // 2), batch_block, group_block)
        else:
            break
        if not must and matmul and split[0] * split[1] * other < MIN_COLUMNS:
            break
        blocks = split
    if matmul:
        blocks = _within_cache(geom, fft_shape, tiles, blocks, itemsize, workers, c)
    chunk, batch_block, group_block = blocks
    columns = chunk * batch_block * other
    ci, co = geom.in_channels // G, geom.out_channels // G
    if (
        matmul
        and workers > 1
        and columns < TEAM_COLUMNS
        and (
            co * ci > columns * (ci + co)
            or not compiled_product(geom, dtype_of(itemsize, geom.is_complex))
        )
        and worth_threads(workers * n_chunks(blocks))
    ):
        # as many tiles per member as per solo chunk, evened out; worth it unless the last
        # team chunk leaves members idle longer than the solo chunks leave workers idle
        # (rows of tiles per worker: an even split, the solo and the team critical paths)
        blocks_per_unit = (geom.batch // batch_block) * (G // group_block)
        n_team = -(-tiles[0] // (chunk * workers))
        share = -(-tiles[0] // (n_team * workers))
        even = tiles[0] * blocks_per_unit / workers
        solo = -(-n_chunks(blocks) // workers) * chunk
        if n_team * share * blocks_per_unit <= max(solo, even * 9 / 8):
            return share * workers, batch_block, group_block, workers
    return blocks + (1,)


def _within_cache(geom, fft_shape, tiles, blocks, itemsize, workers, c):
    """``blocks``, or its run of tiles halved until the chunks the workers hold fit the
    cache, whichever :func:`chunk_overheads` prices lower."""
    other = math.prod(tiles[1:])
    fits = blocks
    while (
        fits[0] > 1
        and -(-fits[0] // 2) * fits[1] * other >= MIN_COLUMNS
        and _spills(geom, fft_shape, tiles, fits + (1,), itemsize, workers)
    ):
        fits = (-(-fits[0] // 2),) + fits[1:]
    return min(
        (blocks, fits),
        key=lambda b: chunk_overheads(geom, fft_shape, tiles, b + (1,), itemsize, workers, c),
    )


def _spills(geom, fft_shape, tiles, blocks, itemsize, workers):
    """Whether the chunks the workers hold at once exceed half the last-level cache (the
    input and output stream through it too)."""
    chunk, batch_block, group_block, team = blocks
    held = chunk * batch_block * group_block * math.prod(tiles[1:])
    held *= tile_bytes(geom, fft_shape, itemsize) * (1 if team > 1 else workers)
    return held > _calibration.last_level_cache() / 2


def chunk_overheads(geom, fft_shape, tiles, blocks, itemsize, workers, c):
    """Seconds the chunks ``blocks`` (as :func:`chunking` returns) add to the work.

    Their own overhead; every run's product streaming its groups' kernel spectra from memory
    (with few tiles per chunk -- small images, many channels -- that bounds it, not the
    multiply-adds); and where chunks spill the cache, a matrix product that reads the tiles'
    spectra faster than it multiplies them waits for memory instead: the forward transforms'
    output is no longer in the cache, and the product reads it frequency block by frequency
    block (W3b, a 1 x 1 layer of 8 outputs on 1280 tiles, ran 1.4x faster in cache;
    ``benchmarks/RESULTS.md``).
    """
    chunk, batch_block, group_block, _ = blocks
    runs = -(-tiles[0] // chunk) * (geom.batch // batch_block)
    chunks = runs * (geom.groups // group_block)
    seconds = runs * spectra_bytes(geom, fft_shape, itemsize) * c.T_SPECTRA_PASS
    seconds += chunks * c.T_CHUNK
    if uses_matmul(geom) and _spills(geom, fft_shape, tiles, blocks, itemsize, workers):
        n_tiles = math.prod(tiles) * geom.batch
        spectra = n_tiles * (geom.in_channels + geom.out_channels)
        spectra *= _spectrum_bytes(geom, fft_shape, itemsize)
        product = _product_seconds(geom, fft_shape, n_tiles, itemsize, c)
        seconds += max(0.0, spectra * c.T_SPECTRA_PASS - product)
    return seconds


def spectra_bytes(geom, fft_shape, itemsize):
    """Bytes of a layer's kernel spectra for tiles of ``fft_shape`` (result itemsize)."""
    G = geom.groups
    kernels = G * (geom.out_channels // G) * (geom.in_channels // G)
    return kernels * _spectrum_bytes(geom, fft_shape, itemsize)


def chunked_cost(geom, tiling, seconds, workers):
    """``seconds`` of the whole tiling, as its chunks run on ``workers`` threads.

    Adds what ``fft_cost`` leaves out because it depends on the chunks: the uneven share of
    the last round of chunks among the workers. Used where the chunk length is free to
    choose (out-of-core).
    """
    per_chunk = tiling.chunk * tiling.batch_block * tiling.group_block
    units = tiling.tiles[0] * geom.batch * geom.groups
    if tiling.team > 1:  # every chunk is shared by all workers
        imbalance = tiling.n_chunks * per_chunk / units
    else:
        imbalance = -(-tiling.n_chunks // workers) * per_chunk * workers / units
    return seconds * max(1.0, imbalance)


def fft_cost(
    geom,
    fft_shape,
    spectra_cached=False,
    itemsize=8,
    spectra_budget=None,
    workers=None,
    constants=None,
):
    """Model seconds of the overlap-save path with tiles of ``fft_shape``.

    inf if the kernel spectra (of result ``itemsize``) exceed ``spectra_budget`` bytes
    (default ``SPECTRA_BUDGET``). ``constants``: as for :func:`direct_cost` (``workers``
    threads, default all).
    """
    c = _constants(geom, itemsize, workers, constants)
    workers = workers or fft.get_num_threads()
    return _fft_plan(geom, fft_shape, spectra_cached, itemsize, spectra_budget, workers, c)[0]


def _fft_plan(geom, fft_shape, spectra_cached, itemsize, spectra_budget, workers, c):
    """``(seconds, tiling)`` of :func:`fft_cost`: the tiles in the chunks they are priced in
    (``(inf, None)`` where the kernel spectra do not fit)."""
    work = _fft_work(geom, fft_shape, spectra_cached, itemsize, spectra_budget, c)
    if work == math.inf:
        return work, None
    tiles = Tiling.make(geom, fft_shape).tiles
    chunk, batch_block, group_block, team = blocks = chunking(
        geom, fft_shape, tiles, itemsize, workers, work, c
    )
    overheads = chunk_overheads(geom, fft_shape, tiles, blocks, itemsize, workers, c)
    seconds = work * imbalance(geom, tiles, blocks, workers) + overheads + c.T_FFT_CALL
    return seconds, Tiling.make(geom, fft_shape, *blocks)


def imbalance(geom, tiles, blocks, workers):
    """How many times an even share of the tiles the busiest worker transforms, with the
    chunks ``blocks`` (as :func:`chunking` returns): ``work`` is priced for every worker busy.

    Workers take whole chunks (a team's chunk: a run of tiles per member), and the last chunk
    of a run is padded past the signal's end, its padding transformed and multiplied too:
    13 rows of tiles in team chunks of 2 x 2 rows are 16 rows of work (W3a on 32 x 32 tiles,
    ``benchmarks/RESULTS.md``).
    """
    chunk, batch_block, group_block, team = blocks
    runs = (geom.batch // batch_block) * (geom.groups // group_block)
    chunks = -(-tiles[0] // chunk) * runs
    busiest = -(-chunks // (workers // team)) * (chunk // team)
    return busiest * workers / (tiles[0] * runs)


def _fft_work(geom, fft_shape, spectra_cached, itemsize, spectra_budget, c):
    """:func:`fft_cost` without the chunks' own overhead."""
    G = geom.groups
    ci, co = geom.in_channels // G, geom.out_channels // G
    cx = 2 if geom.is_complex else 1
    F = math.prod(spectral_shape(fft_shape, geom.is_complex))
    budget = SPECTRA_BUDGET if spectra_budget is None else spectra_budget
    if spectra_bytes(geom, fft_shape, itemsize) > budget:
        return math.inf
    steps = [(n - e + 1) // s for n, e, s in zip(fft_shape, geom.span, geom.stride)]
    if min(steps) < 1:
        return math.inf
    T = math.prod(-(-n // st) for n, st in zip(geom.out_shape, steps))
    out_len = tuple(n // s if n % s == 0 else n for n, s in zip(fft_shape, geom.stride))

    def transform(shape):
        n = math.prod(shape)
        stages = math.log2(max(n, 2)) + c.STRIDED_PASS * sum(not one_codelet(m) for m in shape[:-1])
        # and a row's own overhead (runs along the last axis), which small tiles pay often
        return c.T_FFT * cx * n * stages + c.T_COPY * n + c.T_ROW * math.prod(shape[:-1])

    seconds = (
        T
        * geom.batch
        * (
            geom.in_channels * transform(fft_shape)
            + geom.out_channels * transform(out_len)
            + geom.out_channels * F * _fold_passes(geom, fft_shape) * c.T_FOLD
        )
    )
    seconds += _product_seconds(geom, fft_shape, T * geom.batch, itemsize, c)
    if not spectra_cached:
        seconds += G * co * ci * math.prod(fft_shape) * cx * c.T_SPECTRA
    return seconds


def _product_seconds(geom, fft_shape, n_tiles, itemsize, c):
    """The per-frequency product over ``n_tiles`` tiles (all signals)."""
    G = geom.groups
    ci, co = geom.in_channels // G, geom.out_channels // G
    if compiled_product(geom, dtype_of(itemsize, geom.is_complex)):
        product = ci * c.T_CMAC_COMPILED
    elif uses_matmul(geom):
        product = ci * c.T_CMAC_MATMUL
    else:  # a pass per input channel to multiply, and one more to add each but the first
        product = (2 * ci - 1) * c.T_CMAC_ELEMENTWISE
    return n_tiles * G * co * math.prod(spectral_shape(fft_shape, geom.is_complex)) * product


def _fold_passes(geom, fft_shape):
    """Passes over the output spectra that folding them for the stride takes (see
    ``_engine._fold``): one per folded axis; a real signal's last axis also mirrors the
    spectrum along every axis."""
    folded = [s > 1 and n % s == 0 for n, s in zip(fft_shape, geom.stride)]
    if folded[-1] and not geom.is_complex:
        return sum(folded[:-1]) + geom.ndim + 2
    return sum(folded)


def choose(
    geom, method, itemsize, workers, spectra_cached=False, spectra_budget=None, constants=None
):
    """Pick the method (for ``method="auto"``) and, for FFTs, the tiling (memoised).

    ``spectra_cached=True`` leaves the one-off kernel spectra out of the cost, for a layer
    applied to many signals of one shape; ``spectra_budget`` bounds their bytes. The
    ``constants`` (a :class:`~specconv._calibration.Constants`) default to this machine's (measured the first time
    a precision and thread count is needed, see :mod:`specconv._calibration`).
    """
    c = _constants(geom, itemsize, workers, constants)
    # which compiled loops run is part of the choice (the calibration or a test may switch)
    loops = (_compiled.loops is not None, frozenset(_compiled.losing))
    return _choose(geom, method, itemsize, workers, spectra_cached, spectra_budget, c, loops)


@functools.lru_cache(maxsize=256)
def _choose(geom, method, itemsize, workers, spectra_cached, spectra_budget, c, loops):
    best: tuple[float, Tiling | None] | None = None
    if method in ("auto", "fft"):
        axes = [
            _axis_candidates(e, s, p, geom.ndim)
            for e, s, p in zip(geom.span, geom.stride, geom.padded)
        ]

        for shape in itertools.product(*axes):
            priced = _fft_plan(geom, shape, spectra_cached, itemsize, spectra_budget, workers, c)
            if best is None or priced[0] < best[0]:
                best = priced
        assert best is not None  # every axis has at least one candidate
        if best[1] is None:  # nothing fits the budget: smallest tiles
            shape = tuple(a[0] for a in axes)
            probe = Tiling.make(geom, shape)
            blocks = chunking(geom, shape, probe.tiles, itemsize, workers)
            best = (math.inf, Tiling.make(geom, shape, *blocks))
    direct, columns = direct_plan(geom, itemsize, workers, c)
    if method == "direct":
        return Choice("direct", direct, columns=columns)
    assert best is not None  # "auto" and "fft" priced the tilings above
    if method == "auto" and direct <= best[0]:
        return Choice("direct", direct, columns=columns)
    return Choice("fft", *best)
