/*
 * Compiled loops for the two steps numpy makes slow, each written for the compiler's
 * vectoriser (64-byte vectors; on x86-64 with gcc and Linux cloned for AVX-512 and AVX2, the
 * best picked when the module loads):
 *
 * - depthwise correlation (the direct method): numpy makes every tap one pass over memory,
 *   a 7 x 7 kernel 49 passes; here a block of each output line stays in registers across
 *   all taps, so the image is read once and the output written once;
 * - the per-frequency product of the FFT path in FFTW's own layout, where BLAS needs the
 *   spectra transposed and back (see product below).
 *
 * Python side: specconv/_direct.py and specconv/_engine.py, through specconv/_compiled.py.
 * No numpy headers: arrays come in through the buffer protocol, and every size and offset
 * is checked against the buffers here.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CLONED __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONED
#endif

/* Vectors of 64 bytes (the compiler splits them where the hardware's are narrower), loaded
 * from any address; four of them accumulate a block of one output line (8 x 64 x 128^2
 * images, 7 x 7, float32: 2, 4, 6 and 8 accumulators 10.7, 7.8, 7.4 and 8.0 ms). */
#define ACCUMULATORS 4
typedef float vec_f32 __attribute__((vector_size(64), aligned(4)));
typedef double vec_f64 __attribute__((vector_size(64), aligned(8)));

/* The taps of two lines ``step`` apart, merged (see DEFINE_LINES): ``count`` offsets
 * ``both``, and where each is a tap of the first and of the second line (-1: it is not). */
typedef struct {
    Py_ssize_t step, count;
    int64_t *both, *of_first, *of_second;
} Pairs;

/*
 * out[l * len + n] = sum_t w[t] * pad[lines[l] + taps[t] + n], for every line l and n < len.
 *
 * Two lines ``step`` apart (the rows of a 2-D image, say) read mostly the same samples: a
 * sample at offset both[k] from the first line's start is tap w0[k] of the first line and
 * w1[k] of the second (either 0 where that line has no such tap). Such pairs are computed
 * together, each sample loaded once for both (8 x 64 x 128^2 images, two threads, float32:
 * 7 x 7 6.4 -> 5.7 ms, 15 x 15 23 -> 18, 31 x 31 84 -> 68; float64 7 x 7 12.7 -> 11.5).
 */
#define DEFINE_LINES(T, V, NAME)                                                             \
    static inline void NAME##_from(const T *base, const T *w, const int64_t *taps,           \
                                   Py_ssize_t ntaps, Py_ssize_t n, Py_ssize_t len, T *dst)   \
    {                                                                                        \
        enum { LANES = sizeof(V) / sizeof(T), WIDE = ACCUMULATORS * LANES };                 \
        for (; n + WIDE <= len; n += WIDE) {                                                 \
            V acc[ACCUMULATORS] = {0};                                                       \
            for (Py_ssize_t t = 0; t < ntaps; t++) {                                         \
                const V *src = (const V *)(base + taps[t] + n);                              \
                for (int a = 0; a < ACCUMULATORS; a++) acc[a] += w[t] * src[a];              \
            }                                                                                \
            for (int a = 0; a < ACCUMULATORS; a++) *(V *)(dst + n + a * LANES) = acc[a];     \
        }                                                                                    \
        for (; n + LANES <= len; n += LANES) {                                               \
            V acc = {0};                                                                     \
            for (Py_ssize_t t = 0; t < ntaps; t++)                                           \
                acc += w[t] * *(const V *)(base + taps[t] + n);                              \
            *(V *)(dst + n) = acc;                                                           \
        }                                                                                    \
        for (; n < len; n++) {                                                               \
            T acc = 0;                                                                       \
            for (Py_ssize_t t = 0; t < ntaps; t++) acc += w[t] * base[taps[t] + n];          \
            dst[n] = acc;                                                                    \
        }                                                                                    \
    }                                                                                        \
    CLONED static void NAME(const T *pad, const T *w, const int64_t *taps, Py_ssize_t ntaps, \
                            const int64_t *lines, Py_ssize_t nlines, Py_ssize_t len, T *out, \
                            const Pairs *pairs, const T *w0, const T *w1)                    \
    {                                                                                        \
        enum { LANES = sizeof(V) / sizeof(T), WIDE = ACCUMULATORS * LANES };                 \
        for (Py_ssize_t l = 0; l < nlines; l++) {                                            \
            const T *base = pad + lines[l];                                                  \
            T *dst = out + l * len;                                                          \
            Py_ssize_t n = 0;                                                                \
            if (l + 1 < nlines && lines[l + 1] - lines[l] == pairs->step) {                  \
                for (; n + WIDE <= len; n += WIDE) {                                         \
                    V first[ACCUMULATORS] = {0}, second[ACCUMULATORS] = {0};                 \
                    for (Py_ssize_t k = 0; k < pairs->count; k++) {                          \
                        const V *src = (const V *)(base + pairs->both[k] + n);               \
                        for (int a = 0; a < ACCUMULATORS; a++) {                             \
                            const V v = src[a];                                              \
                            first[a] += w0[k] * v;                                           \
                            second[a] += w1[k] * v;                                          \
                        }                                                                    \
                    }                                                                        \
                    for (int a = 0; a < ACCUMULATORS; a++) {                                 \
                        *(V *)(dst + n + a * LANES) = first[a];                              \
                        *(V *)(dst + len + n + a * LANES) = second[a];                       \
                    }                                                                        \
                }                                                                            \
                NAME##_from(base + pairs->step, w, taps, ntaps, n, len, dst + len);          \
                NAME##_from(base, w, taps, ntaps, n, len, dst);                              \
                l++;                                                                         \
                continue;                                                                    \
            }                                                                                \
            NAME##_from(base, w, taps, ntaps, 0, len, dst);                                  \
        }                                                                                    \
    }

DEFINE_LINES(float, vec_f32, lines_f32)
DEFINE_LINES(double, vec_f64, lines_f64)

/*
 * Every image: copied into the zeroed scratch image (only its inside: the pads stay zero),
 * then every output channel of its group, line by line.
 */
#define DEFINE_IMAGES(T, LINES, NAME)                                                        \
    static void NAME(const T *x, T *out, const T *w, const int64_t *taps, Py_ssize_t ntaps,  \
                     const int64_t *rows, Py_ssize_t nrows, Py_ssize_t row,                  \
                     const int64_t *lines, Py_ssize_t nlines, Py_ssize_t len,                \
                     Py_ssize_t images, Py_ssize_t first, Py_ssize_t groups,                 \
                     Py_ssize_t mult, const Pairs *pairs, T *pad, T *w0, T *w1)              \
    {                                                                                        \
        for (Py_ssize_t i = 0; i < images; i++) {                                            \
            const Py_ssize_t g = (first + i) % groups;                                       \
            for (Py_ssize_t r = 0; r < nrows; r++)                                           \
                memcpy(pad + rows[r], x + (i * nrows + r) * row, (size_t)row * sizeof(T));   \
            for (Py_ssize_t j = 0; j < mult; j++) {                                          \
                const T *wj = w + (g * mult + j) * ntaps;                                    \
                for (Py_ssize_t k = 0; k < pairs->count; k++) {                              \
                    w0[k] = pairs->of_first[k] < 0 ? 0 : wj[pairs->of_first[k]];             \
                    w1[k] = pairs->of_second[k] < 0 ? 0 : wj[pairs->of_second[k]];           \
                }                                                                            \
                LINES(pad, wj, taps, ntaps, lines, nlines, len,                              \
                      out + (i * mult + j) * nlines * len, pairs, w0, w1);                   \
            }                                                                                \
        }                                                                                    \
    }

/*
 * The taps of lines ``step`` apart merged (``taps`` ascending). Pairs are used where most
 * samples are shared: 3 x 3 kernels (12 merged taps for 9) ran 3-10 % slower in pairs, and
 * 1 x k kernels and 1-D lines share none.
 */
static void merge_pairs(const int64_t *taps, Py_ssize_t ntaps, Py_ssize_t step, Pairs *pairs)
{
    Py_ssize_t i = 0, j = 0, k = 0;
    while (i < ntaps || j < ntaps) {
        const int64_t a = i < ntaps ? taps[i] : INT64_MAX;
        const int64_t b = j < ntaps ? taps[j] + step : INT64_MAX;
        const int64_t at = a < b ? a : b;
        pairs->both[k] = at;
        pairs->of_first[k] = a == at ? i++ : -1;
        pairs->of_second[k] = b == at ? j++ : -1;
        k++;
    }
    pairs->step = step;
    pairs->count = k;
    if (4 * k > 5 * ntaps) { /* too few shared: no pairs */
        pairs->step = -1;
        pairs->count = 0;
    }
}

DEFINE_IMAGES(float, lines_f32, images_f32)
DEFINE_IMAGES(double, lines_f64, images_f64)

typedef struct {
    Py_buffer x, out, w, taps, rows, lines;
} Buffers;

static void release(Buffers *b)
{
    Py_buffer *all[] = {&b->x, &b->out, &b->w, &b->taps, &b->rows, &b->lines};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (all[i]->obj != NULL) PyBuffer_Release(all[i]);
}

static int64_t max_of(const int64_t *v, Py_ssize_t n, int64_t *lowest)
{
    int64_t hi = v[0], lo = v[0];
    for (Py_ssize_t i = 1; i < n; i++) {
        if (v[i] > hi) hi = v[i];
        if (v[i] < lo) lo = v[i];
    }
    *lowest = lo;
    return hi;
}

PyDoc_STRVAR(depthwise_doc,
"depthwise(x, out, w, taps, rows, lines, itemsize, first, groups, padded, length)\n"
"\n"
"Depthwise stride-1 correlation of images ``first, first + 1, ...`` (one per row of\n"
"``x``, C-contiguous, ``len(rows) * row`` samples each, group ``image % groups``).\n"
"Each image is copied into a zeroed scratch image of ``padded`` samples, input row r at\n"
"offset ``rows[r]``. Output channel j of an image (``out``: (images, m, lines, length))\n"
"is, on line l, ``sum_t w[g, j, t] * scratch[lines[l] + taps[t] + n]`` for n < length.\n"
"``taps``, ``rows`` and ``lines`` are int64; ``w`` is (groups, m, taps); ``itemsize`` 4\n"
"(float32) or 8 (float64). Releases the GIL.");

static PyObject *depthwise(PyObject *Py_UNUSED(self), PyObject *args)
{
    Buffers b = {0};
    int itemsize;
    Py_ssize_t first, groups, padded, length;
    if (!PyArg_ParseTuple(args, "y*w*y*y*y*y*innnn", &b.x, &b.out, &b.w, &b.taps, &b.rows,
                          &b.lines, &itemsize, &first, &groups, &padded, &length)) {
        release(&b);
        return NULL;
    }
    const char *problem = NULL;
    Py_ssize_t ntaps = b.taps.len / 8, nrows = b.rows.len / 8, nlines = b.lines.len / 8;
    if (itemsize != 4 && itemsize != 8) problem = "itemsize must be 4 or 8";
    else if (ntaps < 1 || nrows < 1 || nlines < 1 || groups < 1 || length < 1 || first < 0)
        problem = "empty taps, rows or lines, or a non-positive size";
    Py_ssize_t row = 0, images = 0, mult = 0;
    if (problem == NULL) {
        Py_ssize_t kernels = b.w.len / itemsize / ntaps; /* groups * m */
        Py_ssize_t out_image = nlines * length;
        mult = kernels / groups;
        if (mult < 1 || kernels != mult * groups || b.w.len != kernels * ntaps * itemsize)
            problem = "w does not hold (groups, m, taps) values";
        else if (b.out.len == 0 || b.out.len % (mult * out_image * itemsize) != 0)
            problem = "out does not hold whole output images";
        else {
            images = b.out.len / (mult * out_image * itemsize);
            if (b.x.len == 0 || b.x.len % (images * nrows * itemsize) != 0)
                problem = "x and out hold different numbers of images";
            else
                row = b.x.len / (images * nrows * itemsize); /* x: whole images of rows */
        }
    }
    if (problem == NULL) {
        int64_t lo_t, lo_r, lo_l;
        int64_t hi_t = max_of(b.taps.buf, ntaps, &lo_t);
        int64_t hi_r = max_of(b.rows.buf, nrows, &lo_r);
        int64_t hi_l = max_of(b.lines.buf, nlines, &lo_l);
        if (lo_t < 0 || lo_r < 0 || lo_l < 0 || row < 1 || hi_r + row > padded
            || hi_l + hi_t + length > padded)
            problem = "an offset reads or writes outside the padded image";
    }
    if (problem != NULL) {
        release(&b);
        PyErr_Format(PyExc_ValueError, "specconv._simd.depthwise: %s", problem);
        return NULL;
    }

    const int64_t *taps = b.taps.buf, *rows = b.rows.buf, *lines = b.lines.buf;
    /* scratch: the padded image, then the pairs' offsets and their two lines' weights */
    const size_t image = ((size_t)padded * itemsize + 63) / 64 * 64;
    char *scratch = calloc(image + (size_t)ntaps * 2 * (24 + 2 * itemsize), 1);
    if (scratch == NULL) {
        release(&b);
        return PyErr_NoMemory();
    }
    int64_t *merged = (int64_t *)(scratch + image);
    Pairs pairs = {-1, 0, merged, merged + 2 * ntaps, merged + 4 * ntaps};
    void *w0 = merged + 6 * ntaps, *w1 = (char *)w0 + 2 * ntaps * itemsize;
    int ascending = 1;
    for (Py_ssize_t t = 1; t < ntaps; t++) ascending &= taps[t] > taps[t - 1];
    if (nlines > 1 && lines[1] > lines[0] && ascending)
        merge_pairs(taps, ntaps, lines[1] - lines[0], &pairs);
    Py_BEGIN_ALLOW_THREADS
    if (itemsize == 4)
        images_f32(b.x.buf, b.out.buf, b.w.buf, taps, ntaps, rows, nrows, row, lines, nlines,
                   length, images, first, groups, mult, &pairs, (float *)scratch, w0, w1);
    else
        images_f64(b.x.buf, b.out.buf, b.w.buf, taps, ntaps, rows, nrows, row, lines, nlines,
                   length, images, first, groups, mult, &pairs, (double *)scratch, w0, w1);
    Py_END_ALLOW_THREADS
    free(scratch);
    release(&b);
    Py_RETURN_NONE;
}

/*
 * The per-frequency product of the FFT path, in FFTW's natural layout:
 *
 *     y[b, g, o, t, f] = sum_c h[g, o, c, f] * x[b, g, c, t, f]      (complex, interleaved)
 *
 * numpy computes it as a batched BLAS matmul on blocks of frequencies, which needs both
 * spectra transposed and back. Here a vector holds LANES consecutive frequencies of one
 * (b, g, c, t) row as they lie, and the kernel spectra come in blocks of LANES frequencies
 * (see _engine.kernel_spectra). With x's real and imaginary parts each duplicated into both
 * slots of every complex number, the imaginary one signed (xr, xr) and (-xi, xi), and h's
 * parts swapped, one complex multiply-add is two fused multiply-adds:
 * (xr, xr) * (hr, hi) + (-xi, xi) * (hi, hr) = (xr hr - xi hi, xr hi + xi hr).
 * The duplicates of x serve every output channel, the swapped h every column of a block
 * (signing x rather than h: a shuffle per h, not a shuffle and a multiply, which would
 * compete with the FMAs for their ports).
 * Register blocks: OUTS output channels by COLS columns (b, t). Measured on chunks of 16 x 16,
 * 32 x 32 and 64 x 64 channels, complex64: 4 x 4 blocks 11-12 G complex multiply-adds per
 * second on one core, 2 x 4 and 4 x 3 6-8, 4 x 5 9-12 (BLAS's cgemm alone: 10).
 */
#define OUTS 4
#define COLS 4
#define SUPER 32 /* columns whose duplicated x are kept (in cache) while every o passes */
/* Every (column, channel) row of x and y is a stream of its own, one vector per block of
 * frequencies: too many streams for the hardware's prefetchers (32 x 32 channels, 30 tiles
 * of 64 x 72: 1920). Fetching each row PREFETCH blocks ahead: 7.7 -> 8.8-9.1 G complex
 * multiply-adds per second on that chunk, complex64 (2, 8 and 16 blocks: no better). */
#define PREFETCH 4

#define DEFINE_PRODUCT(T, V, EVEN, ODD, SWAP, SIGN, NAME)                                          \
    CLONED static void NAME(const T *const *x, T *const *y, Py_ssize_t members, const T *h,  \
                            Py_ssize_t B, Py_ssize_t G, Py_ssize_t ci, Py_ssize_t co,        \
                            Py_ssize_t tiles, Py_ssize_t F, Py_ssize_t f_lo,                 \
                            Py_ssize_t f_hi, V *xd)                                          \
    {                                                                                        \
        enum { LANES = sizeof(V) / (2 * sizeof(T)), AHEAD = PREFETCH * LANES };              \
        const Py_ssize_t columns = members * B * tiles;                                      \
        const Py_ssize_t row = 2 * F; /* reals per (b, g, c, t) row */                       \
        const Py_ssize_t blocks = (F + LANES - 1) / LANES;                                   \
        for (Py_ssize_t fb = f_lo / LANES; fb * LANES < f_hi; fb++) {                        \
            const Py_ssize_t f0 = fb * LANES;                                                \
            const int whole = f0 >= f_lo && f0 + LANES <= f_hi;                              \
            for (Py_ssize_t g = 0; g < G; g++) {                                             \
                const V *hg = (const V *)h + (g * blocks + fb) * co * ci;                    \
                for (Py_ssize_t s0 = 0; s0 < columns; s0 += SUPER) {                         \
                    const Py_ssize_t ns = columns - s0 < SUPER ? columns - s0 : SUPER;       \
                    /* xd[(j * ci + c) * 2 + 0 / 1]: duplicated real / imaginary parts */    \
                    for (Py_ssize_t j = 0; j < ns; j++) {                                    \
                        const Py_ssize_t m = (s0 + j) / (B * tiles);                         \
                        const Py_ssize_t b = (s0 + j) / tiles % B, t = (s0 + j) % tiles;     \
                        for (Py_ssize_t c = 0; c < ci; c++) {                                \
                            const T *src = x[m] + (((b * G + g) * ci + c) * tiles + t)       \
                                                      * row;                                 \
                            V *dup = &xd[(j * ci + c) * 2];                                  \
                            if (f0 + AHEAD < f_hi) __builtin_prefetch(src + 2 * (f0 + AHEAD));  \
                            if (whole) {                                                     \
                                const V v = *(const V *)(src + 2 * f0);                      \
                                dup[0] = EVEN(v);                                            \
                                dup[1] = ODD(v) * SIGN;                                      \
                                continue;                                                    \
                            }                                                                \
                            T *re = (T *)&dup[0], *im = (T *)&dup[1];                        \
                            for (int k = 0; k < LANES; k++) {                                \
                                const Py_ssize_t f = f0 + k;                                 \
                                const int in = f >= f_lo && f < f_hi;                        \
                                re[2 * k] = re[2 * k + 1] = in ? src[2 * f] : 0;             \
                                im[2 * k + 1] = in ? src[2 * f + 1] : 0;                     \
                                im[2 * k] = -im[2 * k + 1];                                  \
                            }                                                                \
                        }                                                                    \
                    }                                                                        \
                    for (Py_ssize_t o0 = 0; o0 < co; o0 += OUTS) {                           \
                        const int no = co - o0 < OUTS ? (int)(co - o0) : OUTS;               \
                        for (Py_ssize_t j0 = 0; j0 < ns; j0 += COLS) {                       \
                            const int nj = ns - j0 < COLS ? (int)(ns - j0) : COLS;           \
                            V acc[OUTS][COLS] = {{{0}}};                                     \
                            if (no == OUTS && nj == COLS) {                                  \
                                for (Py_ssize_t c = 0; c < ci; c++) {                        \
                                    V hv[OUTS], hs[OUTS];                                    \
                                    for (int i = 0; i < OUTS; i++) {                         \
                                        hv[i] = hg[(o0 + i) * ci + c];                       \
                                        hs[i] = SWAP(hv[i]);                                 \
                                    }                                                        \
                                    for (int j = 0; j < COLS; j++) {                         \
                                        const V xr = xd[((j0 + j) * ci + c) * 2];            \
                                        const V xi = xd[((j0 + j) * ci + c) * 2 + 1];        \
                                        for (int i = 0; i < OUTS; i++) {                     \
                                            acc[i][j] += xr * hv[i];                         \
                                            acc[i][j] += xi * hs[i];                         \
                                        }                                                    \
                                    }                                                        \
                                }                                                            \
                            } else {                                                         \
                                for (Py_ssize_t c = 0; c < ci; c++)                          \
                                    for (int i = 0; i < no; i++) {                           \
                                        const V hv = hg[(o0 + i) * ci + c];                  \
                                        const V hs = SWAP(hv);                               \
                                        for (int j = 0; j < nj; j++)                         \
                                            acc[i][j] += xd[((j0 + j) * ci + c) * 2] * hv    \
                                                + xd[((j0 + j) * ci + c) * 2 + 1] * hs;      \
                                    }                                                        \
                            }                                                                \
                            for (int i = 0; i < no; i++)                                     \
                                for (int j = 0; j < nj; j++) {                               \
                                    const Py_ssize_t col = s0 + j0 + j;                      \
                                    const Py_ssize_t b = col / tiles % B, t = col % tiles;   \
                                    T *dst = y[col / (B * tiles)]                            \
                                        + ((((b * G + g) * co + o0 + i) * tiles + t)         \
                                                  * row) + 2 * f0;                           \
                                    if (whole) {                                             \
                                        if (f0 + AHEAD < f_hi)                               \
                                            __builtin_prefetch(dst + 2 * AHEAD, 1);          \
                                        *(V *)dst = acc[i][j];                               \
                                    } else {                                                 \
                                        const T *a = (const T *)&acc[i][j];                  \
                                        for (int k = 0; k < 2 * LANES; k++)                  \
                                            if (f0 + k / 2 >= f_lo && f0 + k / 2 < f_hi)     \
                                                dst[k] = a[k];                               \
                                    }                                                        \
                                }                                                            \
                        }                                                                    \
                    }                                                                        \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

/* every real part, or every imaginary part, in both slots of its complex number; (hr, hi) ->
 * (hi, hr) */
#if defined(__clang__)
#define EVEN_F32(v) __builtin_shufflevector(v, v, 0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14)
#define ODD_F32(v) __builtin_shufflevector(v, v, 1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15)
#define EVEN_F64(v) __builtin_shufflevector(v, v, 0, 0, 2, 2, 4, 4, 6, 6)
#define ODD_F64(v) __builtin_shufflevector(v, v, 1, 1, 3, 3, 5, 5, 7, 7)
#define SWAP_F32(v) __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14)
#define SWAP_F64(v) __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6)
#else
typedef int32_t vec_i32 __attribute__((vector_size(64)));
typedef int64_t vec_i64 __attribute__((vector_size(64)));
#define EVEN_F32(v) __builtin_shuffle(v, (vec_i32){0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14})
#define ODD_F32(v) __builtin_shuffle(v, (vec_i32){1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15})
#define EVEN_F64(v) __builtin_shuffle(v, (vec_i64){0, 0, 2, 2, 4, 4, 6, 6})
#define ODD_F64(v) __builtin_shuffle(v, (vec_i64){1, 1, 3, 3, 5, 5, 7, 7})
#define SWAP_F32(v) __builtin_shuffle(v, (vec_i32){1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14})
#define SWAP_F64(v) __builtin_shuffle(v, (vec_i64){1, 0, 3, 2, 5, 4, 7, 6})
#endif
static const vec_f32 SIGN_F32 = {-1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1, 1};
static const vec_f64 SIGN_F64 = {-1, 1, -1, 1, -1, 1, -1, 1};

DEFINE_PRODUCT(float, vec_f32, EVEN_F32, ODD_F32, SWAP_F32, SIGN_F32, product_c64)
DEFINE_PRODUCT(double, vec_f64, EVEN_F64, ODD_F64, SWAP_F64, SIGN_F64, product_c128)

PyDoc_STRVAR(product_doc,
"product(xs, ys, h, itemsize, batch, groups, ci, co, tiles, freqs, f_lo, f_hi)\n"
"\n"
"``y[b, g, o, t, f] = sum_c h[g, o, c, f] * x[b, g, c, t, f]`` for f_lo <= f < f_hi and\n"
"every pair (x, y) of the sequences xs, ys (a team's members: their tiles are columns of\n"
"the same product): x (batch, groups, ci, tiles, freqs) and y (batch, groups, co, tiles,\n"
"freqs) complex, C-contiguous; h the kernel spectra in blocks of 64 / (2 * itemsize)\n"
"frequencies, (groups, blocks, co, ci, lanes), zeros beyond freqs. ``itemsize`` of the real\n"
"parts: 4 (complex64) or 8 (complex128). Releases the GIL.");

/* The buffers of a sequence of arrays (writable ones for ``writable``), or -1 and an error. */
static Py_ssize_t get_buffers(PyObject *arrays, int writable, Py_buffer **out)
{
    PyObject *seq = PySequence_Fast(arrays, "specconv._simd.product: x and y must be sequences");
    if (seq == NULL) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Py_buffer *bufs = PyMem_Calloc(n ? n : 1, sizeof(Py_buffer));
    if (bufs == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, i), &bufs[i], flags) != 0) {
            while (i-- > 0) PyBuffer_Release(&bufs[i]);
            PyMem_Free(bufs);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    *out = bufs;
    return n;
}

static void release_all(Py_buffer *bufs, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
}

static PyObject *product(PyObject *Py_UNUSED(self), PyObject *args)
{
    PyObject *xs, *ys;
    Py_buffer h = {0}, *x = NULL, *y = NULL;
    int itemsize;
    Py_ssize_t B, G, ci, co, tiles, F, f_lo, f_hi, nx = -1, ny = -1;
    if (!PyArg_ParseTuple(args, "OOy*innnnnnnn", &xs, &ys, &h, &itemsize, &B, &G, &ci, &co,
                          &tiles, &F, &f_lo, &f_hi))
        return NULL;
    PyObject *result = NULL;
    void *xd = NULL, **pointers = NULL;
    if ((nx = get_buffers(xs, 0, &x)) < 0 || (ny = get_buffers(ys, 1, &y)) < 0) goto done;
    const char *problem = NULL;
    const Py_ssize_t lanes = 64 / (2 * (Py_ssize_t)(itemsize ? itemsize : 1));
    if (itemsize != 4 && itemsize != 8) problem = "itemsize must be 4 or 8";
    else if (B < 1 || G < 1 || ci < 1 || co < 1 || tiles < 1 || F < 1)
        problem = "a non-positive size";
    else if (nx < 1 || nx != ny) problem = "x and y hold different numbers of arrays";
    else if (f_lo < 0 || f_hi > F || f_lo > f_hi) problem = "frequencies outside 0 .. freqs";
    else if (h.len != ((F + lanes - 1) / lanes) * G * co * ci * 64)
        problem = "h is not (groups, blocks, co, ci, lanes)";
    for (Py_ssize_t i = 0; problem == NULL && i < nx; i++) {
        if (x[i].len != B * G * ci * tiles * F * 2 * itemsize)
            problem = "x is not (batch, groups, ci, tiles, freqs)";
        else if (y[i].len != B * G * co * tiles * F * 2 * itemsize)
            problem = "y is not (batch, groups, co, tiles, freqs)";
    }
    if (problem != NULL) {
        PyErr_Format(PyExc_ValueError, "specconv._simd.product: %s", problem);
        goto done;
    }
    pointers = PyMem_Calloc(2 * nx, sizeof(void *));
    if (pointers == NULL || posix_memalign(&xd, 64, (size_t)SUPER * ci * 2 * 64) != 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nx; i++) {
        pointers[i] = x[i].buf;
        pointers[nx + i] = y[i].buf;
    }
    Py_BEGIN_ALLOW_THREADS
    if (itemsize == 4)
        product_c64((const float *const *)pointers, (float *const *)(pointers + nx), nx,
                    h.buf, B, G, ci, co, tiles, F, f_lo, f_hi, xd);
    else
        product_c128((const double *const *)pointers, (double *const *)(pointers + nx), nx,
                     h.buf, B, G, ci, co, tiles, F, f_lo, f_hi, xd);
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    free(xd);
    PyMem_Free(pointers);
    if (nx >= 0) release_all(x, nx);
    if (ny >= 0) release_all(y, ny);
    PyBuffer_Release(&h);
    return result;
}

static PyMethodDef methods[] = {
    {"depthwise", depthwise, METH_VARARGS, depthwise_doc},
    {"product", product, METH_VARARGS, product_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_simd",
    .m_doc = "Compiled loops of specconv's direct method and FFT path (see _simd.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__simd(void) { return PyModule_Create(&module); }
