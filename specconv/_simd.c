/*
 * Compiled loops for the two steps numpy makes slow, each written for the compiler's
 * vectoriser:
 *
 * - depthwise correlation (the direct method): numpy makes every tap one pass over memory,
 *   a 7 x 7 kernel 49 passes; here a block of each output line stays in registers across
 *   all taps, so the image is read once and the output written once;
 * - the per-frequency product of the FFT path in FFTW's own layout, where BLAS needs the
 *   spectra transposed and back (see product below).
 *
 * Every loop is compiled once per instruction-set level, each with its own vector width and
 * register blocks (the blocks that fit AVX-512's 32 registers spill on AVX2's 16): on x86-64
 * "avx512" (x86-64-v4), "avx2" (x86-64-v3) and "baseline" (the build's own target), elsewhere
 * "baseline" alone. ``supported()`` names the levels this CPU runs, best first; the loops of
 * level L are ``depthwise_L`` and ``product_L``. specconv/_compiled.py picks one at import.
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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define X86_LEVELS 1
/* Feature lists rather than "arch=x86-64-v4": older gcc and clang know the features only.
 * supported() checks the same features, so a level never runs where it was not meant to. */
#define TARGET_AVX512                                                                        \
    __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma,bmi,bmi2")))
#define TARGET_AVX2 __attribute__((target("avx2,fma,bmi,bmi2")))
#endif
#define TARGET_BASELINE

/* Vectors of W bytes loaded from any address (the element alignment), and the integer
 * vectors gcc's shuffles take as index lists. */
#define VECTOR_TYPES(W)                                                                      \
    typedef float f32x##W __attribute__((vector_size(W), aligned(4)));                       \
    typedef double f64x##W __attribute__((vector_size(W), aligned(8)));                      \
    typedef int32_t i32x##W __attribute__((vector_size(W)));                                 \
    typedef int64_t i64x##W __attribute__((vector_size(W)));
VECTOR_TYPES(8)
VECTOR_TYPES(16)
VECTOR_TYPES(32)
VECTOR_TYPES(64)

/* The taps of two lines ``step`` apart, merged (see DEFINE_LINES): ``count`` offsets
 * ``both``, and where each is a tap of the first and of the second line (-1: it is not). */
typedef struct {
    Py_ssize_t step, count;
    int64_t *both, *of_first, *of_second;
} Pairs;

/*
 * out[l * len + n] = sum_t w[t] * pad[lines[l] + taps[t] + n], for every line l and n < len,
 * in vectors V, ACC of them accumulating a block of one output line; a line's last samples
 * in a vector VH of half the width where they fill one (lines of 8 floats, a stride-2 layer's
 * on 16 x 16 images, would take the scalar loop on AVX-512).
 *
 * Two lines ``step`` apart (the rows of a 2-D image, say) read mostly the same samples: a
 * sample at offset both[k] from the first line's start is tap w0[k] of the first line and
 * w1[k] of the second (either 0 where that line has no such tap). Such pairs are computed
 * together, each sample loaded once for both; their 2 * ACC accumulators must stay in
 * registers (on AVX2, 2 x 4 accumulators of 64 bytes took 16 ymm registers and spilled).
 */
#define DEFINE_LINES(T, V, VH, ACC, TARGET, NAME)                                            \
    TARGET static inline void NAME##_from(const T *base, const T *w, const int64_t *taps,    \
                                          Py_ssize_t ntaps, Py_ssize_t n, Py_ssize_t len,    \
                                          T *dst)                                            \
    {                                                                                        \
        enum { LANES = sizeof(V) / sizeof(T), WIDE = ACC * LANES };                          \
        for (; n + WIDE <= len; n += WIDE) {                                                 \
            V acc[ACC] = {0};                                                                \
            for (Py_ssize_t t = 0; t < ntaps; t++) {                                         \
                const V *src = (const V *)(base + taps[t] + n);                              \
                for (int a = 0; a < ACC; a++) acc[a] += w[t] * src[a];                       \
            }                                                                                \
            for (int a = 0; a < ACC; a++) *(V *)(dst + n + a * LANES) = acc[a];              \
        }                                                                                    \
        for (; n + LANES <= len; n += LANES) {                                               \
            V acc = {0};                                                                     \
            for (Py_ssize_t t = 0; t < ntaps; t++)                                           \
                acc += w[t] * *(const V *)(base + taps[t] + n);                              \
            *(V *)(dst + n) = acc;                                                           \
        }                                                                                    \
        enum { HALF = sizeof(VH) / sizeof(T) };                                              \
        for (; n + HALF <= len; n += HALF) {                                                 \
            VH acc = {0};                                                                    \
            for (Py_ssize_t t = 0; t < ntaps; t++)                                           \
                acc += w[t] * *(const VH *)(base + taps[t] + n);                             \
            *(VH *)(dst + n) = acc;                                                          \
        }                                                                                    \
        for (; n < len; n++) {                                                               \
            T acc = 0;                                                                       \
            for (Py_ssize_t t = 0; t < ntaps; t++) acc += w[t] * base[taps[t] + n];          \
            dst[n] = acc;                                                                    \
        }                                                                                    \
    }                                                                                        \
    TARGET static void NAME(const T *pad, const T *w, const int64_t *taps, Py_ssize_t ntaps, \
                            const int64_t *lines, Py_ssize_t nlines, Py_ssize_t len, T *out, \
                            const Pairs *pairs, const T *w0, const T *w1)                    \
    {                                                                                        \
        enum { LANES = sizeof(V) / sizeof(T), WIDE = ACC * LANES };                          \
        for (Py_ssize_t l = 0; l < nlines; l++) {                                            \
            const T *base = pad + lines[l];                                                  \
            T *dst = out + l * len;                                                          \
            Py_ssize_t n = 0;                                                                \
            if (l + 1 < nlines && lines[l + 1] - lines[l] == pairs->step) {                  \
                for (; n + WIDE <= len; n += WIDE) {                                         \
                    V first[ACC] = {0}, second[ACC] = {0};                                   \
                    for (Py_ssize_t k = 0; k < pairs->count; k++) {                          \
                        const V *src = (const V *)(base + pairs->both[k] + n);               \
                        for (int a = 0; a < ACC; a++) {                                      \
                            const V v = src[a];                                              \
                            first[a] += w0[k] * v;                                           \
                            second[a] += w1[k] * v;                                          \
                        }                                                                    \
                    }                                                                        \
                    for (int a = 0; a < ACC; a++) {                                          \
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

/*
 * Every image: copied into the zeroed scratch image (only its inside: the pads stay zero),
 * then every output channel of its group, line by line.
 *
 * With ``phases`` P > 1 (one line per image: the output phases of a transposed 1-D layer),
 * the multipliers j = o * P + r are output channel o's phases r, and its output is
 * interleaved: ``out[o, n * P + r]``, ``olen`` samples. Each block of CHUNK samples of every
 * phase is computed into ``tile`` and interleaved while in cache: the output is written once,
 * in order (rather than P strided passes over it).
 */
#define CHUNK 1024
#define DEFINE_IMAGES(T, LINES, TARGET, NAME)                                                \
    TARGET static void NAME(const T *x, T *out, const T *w, const int64_t *taps,             \
                            Py_ssize_t ntaps, const int64_t *rows, Py_ssize_t nrows,         \
                            Py_ssize_t row, const int64_t *lines, Py_ssize_t nlines,         \
                            Py_ssize_t len, Py_ssize_t images, Py_ssize_t first,             \
                            Py_ssize_t groups, Py_ssize_t mult, const Pairs *pairs, T *pad,  \
                            T *w0, T *w1, Py_ssize_t phases, Py_ssize_t olen, T *tile)       \
    {                                                                                        \
        for (Py_ssize_t i = 0; i < images; i++) {                                            \
            const Py_ssize_t g = (first + i) % groups;                                       \
            for (Py_ssize_t r = 0; r < nrows; r++)                                           \
                memcpy(pad + rows[r], x + (i * nrows + r) * row, (size_t)row * sizeof(T));   \
            if (phases > 1) {                                                                \
                const Py_ssize_t outs = mult / phases, whole = olen / phases;                \
                for (Py_ssize_t n0 = 0; n0 < len; n0 += CHUNK) {                             \
                    const Py_ssize_t n1 = n0 + CHUNK < len ? n0 + CHUNK : len;               \
                    for (Py_ssize_t j = 0; j < mult; j++)                                    \
                        LINES##_from(pad + lines[0] + n0, w + (g * mult + j) * ntaps, taps,  \
                                     ntaps, 0, n1 - n0, tile + j * CHUNK);                   \
                    for (Py_ssize_t o = 0; o < outs; o++) {                                  \
                        T *dst = out + (i * outs + o) * olen;                                \
                        const T *src = tile + o * phases * CHUNK;                            \
                        Py_ssize_t n = n0;                                                   \
                        for (; n < n1 && n < whole; n++)                                     \
                            for (Py_ssize_t r = 0; r < phases; r++)                          \
                                dst[n * phases + r] = src[r * CHUNK + n - n0];                    \
                        for (; n < n1; n++)                                                  \
                            for (Py_ssize_t r = 0; r < phases && n * phases + r < olen; r++) \
                                dst[n * phases + r] = src[r * CHUNK + n - n0];                    \
                    }                                                                        \
                }                                                                            \
                continue;                                                                    \
            }                                                                                \
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
 * The per-frequency product of the FFT path, in FFTW's natural layout:
 *
 *     y[b, g, o, t, f] = sum_c h[g, o, c, f] * x[b, g, c, t, f]      (complex, interleaved)
 *
 * numpy computes it as a batched BLAS matmul on blocks of frequencies, which needs both
 * spectra transposed and back. Here a vector holds consecutive frequencies of one (b, g, c, t)
 * row as they lie, and the kernel spectra come in blocks of 64 bytes of frequencies, LANES of
 * them, at every level (see _engine.kernel_spectra); a level with narrower vectors V computes
 * each block in PARTS parts, one after another. With x's real and imaginary parts each
 * duplicated into both slots of every complex number, the imaginary one signed (xr, xr) and
 * (-xi, xi), and h's parts swapped, one complex multiply-add is two fused multiply-adds:
 * (xr, xr) * (hr, hi) + (-xi, xi) * (hi, hr) = (xr hr - xi hi, xr hi + xi hr).
 * The duplicates of x serve every output channel, the swapped h every column of a block
 * (signing x rather than h: a shuffle per h, not a shuffle and a multiply, which would
 * compete with the FMAs for their ports).
 * Register blocks: OUTS output channels by COLS columns (b, t), OUTS * COLS accumulators and
 * 2 * OUTS vectors of h, which must fit the level's registers.
 */
#define SUPER 32 /* columns whose duplicated x are kept (in cache) while every o passes */
/* Every (column, channel) row of x and y is a stream of its own, one block of frequencies at
 * a time: too many streams for the hardware's prefetchers (32 x 32 channels, 30 tiles of
 * 64 x 72: 1920), so each row is fetched PREFETCH blocks ahead. */
#define PREFETCH 4
#define BLOCK_BYTES 64

/* index lists of the shuffles: every real part, or every imaginary part, in both slots of its
 * complex number, and (re, im) -> (im, re); by the number of elements */
#define EVEN_2 0, 0
#define EVEN_4 0, 0, 2, 2
#define EVEN_8 0, 0, 2, 2, 4, 4, 6, 6
#define EVEN_16 0, 0, 2, 2, 4, 4, 6, 6, 8, 8, 10, 10, 12, 12, 14, 14
#define ODD_2 1, 1
#define ODD_4 1, 1, 3, 3
#define ODD_8 1, 1, 3, 3, 5, 5, 7, 7
#define ODD_16 1, 1, 3, 3, 5, 5, 7, 7, 9, 9, 11, 11, 13, 13, 15, 15
#define SWAP_2 1, 0
#define SWAP_4 1, 0, 3, 2
#define SWAP_8 1, 0, 3, 2, 5, 4, 7, 6
#define SWAP_16 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14
#if defined(__clang__)
#define SHUFFLE(v, IV, ...) __builtin_shufflevector(v, v, __VA_ARGS__)
#else
#define SHUFFLE(v, IV, ...) __builtin_shuffle(v, (IV){__VA_ARGS__})
#endif

#define DEFINE_PRODUCT(T, V, IV, N, OUTS, COLS, XOUTER, TARGET, NAME)                        \
    TARGET static void NAME(const T *const *x, T *const *y, Py_ssize_t members, const T *h,  \
                            Py_ssize_t B, Py_ssize_t G, Py_ssize_t ci, Py_ssize_t co,        \
                            Py_ssize_t tiles, Py_ssize_t F, Py_ssize_t row, Py_ssize_t f_lo, \
                            Py_ssize_t f_hi, void *scratch)                                  \
    {                                                                                        \
        V *xd = scratch;                                                                     \
        enum {                                                                               \
            BLOCK = BLOCK_BYTES / sizeof(T), /* reals per block */                           \
            LANES = BLOCK / 2,               /* frequencies per block */                     \
            PART = sizeof(V) / sizeof(T),    /* reals per vector */                          \
            PARTS = BLOCK / PART,                                                            \
            AHEAD = PREFETCH * LANES                                                         \
        };                                                                                   \
        V sign;                                                                              \
        for (int k = 0; k < PART; k++) sign[k] = k % 2 ? 1 : -1;                             \
        const Py_ssize_t columns = members * B * tiles;                                      \
        const Py_ssize_t blocks = (F + LANES - 1) / LANES;                                   \
        for (Py_ssize_t fb = f_lo / LANES; fb * LANES < f_hi; fb++) {                        \
            const Py_ssize_t f0 = fb * LANES;                                                \
            const int whole = f0 >= f_lo && f0 + LANES <= f_hi;                              \
            for (Py_ssize_t g = 0; g < G; g++) {                                             \
                const T *hg = h + (g * blocks + fb) * co * ci * BLOCK;                       \
                for (Py_ssize_t s0 = 0; s0 < columns; s0 += SUPER) {                         \
                    const Py_ssize_t ns = columns - s0 < SUPER ? columns - s0 : SUPER;       \
                    T *ycol[SUPER]; /* row (o = 0) of every column in y, at f0 */            \
                    /* xd[((p * SUPER + j) * ci + c) * 2 + 0 / 1]: part p of the duplicated  \
                     * real / imaginary parts, each part's together */                      \
                    for (Py_ssize_t j = 0; j < ns; j++) {                                    \
                        const Py_ssize_t m = (s0 + j) / (B * tiles);                         \
                        const Py_ssize_t b = (s0 + j) / tiles % B, t = (s0 + j) % tiles;     \
                        ycol[j] = y[m] + ((b * G + g) * co * tiles + t) * row + 2 * f0;      \
                        for (Py_ssize_t c = 0; c < ci; c++) {                                \
                            const T *src = x[m] + (((b * G + g) * ci + c) * tiles + t)       \
                                                      * row;                                 \
                            V *dup = &xd[(j * ci + c) * 2];                                  \
                            if (f0 + AHEAD < f_hi) __builtin_prefetch(src + 2 * (f0 + AHEAD));  \
                            if (whole) {                                                     \
                                for (int p = 0; p < PARTS; p++) {                            \
                                    const V v = *(const V *)(src + 2 * f0 + p * PART);       \
                                    dup[p * SUPER * ci * 2] = SHUFFLE(v, IV, EVEN_##N);      \
                                    dup[p * SUPER * ci * 2 + 1] = SHUFFLE(v, IV, ODD_##N) * sign;  \
                                }                                                            \
                                continue;                                                    \
                            }                                                                \
                            for (int k = 0; k < LANES; k++) {                                \
                                const Py_ssize_t f = f0 + k;                                 \
                                const int in = f >= f_lo && f < f_hi;                        \
                                V *part = dup + (2 * k / PART) * SUPER * ci * 2;             \
                                T *re = (T *)&part[0], *im = (T *)&part[1];                  \
                                const int at = 2 * k % PART;                                 \
                                re[at] = re[at + 1] = in ? src[2 * f] : 0;                   \
                                im[at + 1] = in ? src[2 * f + 1] : 0;                        \
                                im[at] = -im[at + 1];                                        \
                            }                                                                \
                        }                                                                    \
                    }                                                                        \
                    /* XOUTER: blocks of columns outside, so that theirs stay in L1 while   \
                     * every output channel passes (x is read 2 * COLS times per OUTS       \
                     * reads of h); else blocks of outputs outside */                      \
                    for (int p = 0; p < PARTS; p++)                                          \
                    for (Py_ssize_t a0 = 0; a0 < (XOUTER ? ns : co);                         \
                         a0 += (XOUTER ? COLS : OUTS))                                       \
                        for (Py_ssize_t b0 = 0; b0 < (XOUTER ? co : ns);                     \
                             b0 += (XOUTER ? OUTS : COLS)) {                                 \
                            const Py_ssize_t o0 = XOUTER ? b0 : a0, j0 = XOUTER ? a0 : b0;   \
                            const int no = co - o0 < OUTS ? (int)(co - o0) : OUTS;           \
                            const int nj = ns - j0 < COLS ? (int)(ns - j0) : COLS;           \
                            const V *xp = xd + p * SUPER * ci * 2;                           \
                            /* a block short of outputs or columns repeats its last one in   \
                             * their place (computed, never stored): one register-blocked    \
                             * loop for every block */                                       \
                            const T *hrow[OUTS];                                             \
                            const V *xrow[COLS];                                             \
                            for (int i = 0; i < OUTS; i++)                                   \
                                hrow[i] = hg + (o0 + (i < no ? i : no - 1)) * ci * BLOCK     \
                                          + p * PART;                                        \
                            for (int j = 0; j < COLS; j++)                                   \
                                xrow[j] = xp + (j0 + (j < nj ? j : nj - 1)) * ci * 2;        \
                            V acc[OUTS][COLS] = {{{0}}};                                     \
                            for (Py_ssize_t c = 0; c < ci; c++) {                            \
                                V hv[OUTS], hs[OUTS];                                        \
                                for (int i = 0; i < OUTS; i++) {                             \
                                    hv[i] = *(const V *)(hrow[i] + c * BLOCK);               \
                                    hs[i] = SHUFFLE(hv[i], IV, SWAP_##N);                    \
                                }                                                            \
                                for (int j = 0; j < COLS; j++) {                             \
                                    const V xr = xrow[j][2 * c], xi = xrow[j][2 * c + 1];    \
                                    for (int i = 0; i < OUTS; i++) {                         \
                                        acc[i][j] += xr * hv[i];                             \
                                        acc[i][j] += xi * hs[i];                             \
                                    }                                                        \
                                }                                                            \
                            }                                                                \
                            if (whole && no == OUTS && nj == COLS) {                         \
                                for (int i = 0; i < OUTS; i++)                               \
                                    for (int j = 0; j < COLS; j++) {                         \
                                        T *dst = ycol[j0 + j] + (o0 + i) * tiles * row;      \
                                        if (p == 0 && f0 + AHEAD < f_hi)                     \
                                            __builtin_prefetch(dst + 2 * AHEAD, 1);          \
                                        *(V *)(dst + p * PART) = acc[i][j];                  \
                                    }                                                        \
                                continue;                                                    \
                            }                                                                \
                            /* the rest from a copy: indexing the accumulators by            \
                             * variables would keep them on the stack in every block */      \
                            V part[OUTS][COLS];                                              \
                            memcpy(part, acc, sizeof part);                                  \
                            for (int i = 0; i < no; i++)                                     \
                                for (int j = 0; j < nj; j++) {                               \
                                    T *dst = ycol[j0 + j] + (o0 + i) * tiles * row;          \
                                    if (whole) {                                             \
                                        if (p == 0 && f0 + AHEAD < f_hi)                     \
                                            __builtin_prefetch(dst + 2 * AHEAD, 1);          \
                                        *(V *)(dst + p * PART) = part[i][j];                 \
                                    } else {                                                 \
                                        const T *a = (const T *)&part[i][j];                 \
                                        for (int k = 0; k < PART; k++) {                     \
                                            const Py_ssize_t f = f0 + (p * PART + k) / 2;    \
                                            if (f >= f_lo && f < f_hi) dst[p * PART + k] = a[k];\
                                        }                                                    \
                                    }                                                        \
                                }                                                            \
                        }                                                                    \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

/* One level: its vector width W (bytes) and half of it H, the depthwise accumulators per line
 * ACC, the product's register block OUTS x COLS. N32 / N64: float / double elements per
 * vector. */
#define DEFINE_LEVEL(L, TARGET, W, H, N32, N64, ACC, OUTS, COLS, XOUTER)                     \
    DEFINE_LINES(float, f32x##W, f32x##H, ACC, TARGET, lines_f32_##L)                        \
    DEFINE_LINES(double, f64x##W, f64x##H, ACC, TARGET, lines_f64_##L)                       \
    DEFINE_IMAGES(float, lines_f32_##L, TARGET, images_f32_##L)                              \
    DEFINE_IMAGES(double, lines_f64_##L, TARGET, images_f64_##L)                             \
    DEFINE_PRODUCT(float, f32x##W, i32x##W, N32, OUTS, COLS, XOUTER, TARGET, product_c64_##L)  \
    DEFINE_PRODUCT(double, f64x##W, i64x##W, N64, OUTS, COLS, XOUTER, TARGET, product_c128_##L)

/* Measured (benchmarks/bench_levels.py, results in benchmarks/RESULTS.md). Overridable at
 * build time (-DAVX2_ACC=...) to measure other blocks. */
#ifndef AVX512_ACC
#define AVX512_ACC 4
#endif
#ifndef AVX512_OUTS
#define AVX512_OUTS 4
#endif
#ifndef AVX512_COLS
#define AVX512_COLS 4
#endif
#ifndef AVX2_ACC
#define AVX2_ACC 4
#endif
#ifndef AVX2_OUTS
#define AVX2_OUTS 2
#endif
#ifndef AVX2_COLS
#define AVX2_COLS 4
#endif
#ifndef AVX512_XOUTER
#define AVX512_XOUTER 1
#endif
#ifndef AVX2_XOUTER
#define AVX2_XOUTER 1
#endif
#ifndef BASELINE_XOUTER
#define BASELINE_XOUTER 1
#endif
#ifndef BASELINE_ACC
#define BASELINE_ACC 4
#endif
#ifndef BASELINE_OUTS
#define BASELINE_OUTS 2
#endif
#ifndef BASELINE_COLS
#define BASELINE_COLS 4
#endif

#ifdef X86_LEVELS
DEFINE_LEVEL(avx512, TARGET_AVX512, 64, 32, 16, 8, AVX512_ACC, AVX512_OUTS, AVX512_COLS,
             AVX512_XOUTER)
DEFINE_LEVEL(avx2, TARGET_AVX2, 32, 16, 8, 4, AVX2_ACC, AVX2_OUTS, AVX2_COLS, AVX2_XOUTER)
#endif
/* 16 bytes: SSE2's and NEON's registers (wider generic vectors are split into several) */
DEFINE_LEVEL(baseline, TARGET_BASELINE, 16, 8, 4, 2, BASELINE_ACC, BASELINE_OUTS, BASELINE_COLS,
             BASELINE_XOUTER)

typedef void images_f32_fn(const float *, float *, const float *, const int64_t *, Py_ssize_t,
                           const int64_t *, Py_ssize_t, Py_ssize_t, const int64_t *,
                           Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, const Pairs *, float *, float *, float *, Py_ssize_t,
                           Py_ssize_t, float *);
typedef void images_f64_fn(const double *, double *, const double *, const int64_t *,
                           Py_ssize_t, const int64_t *, Py_ssize_t, Py_ssize_t,
                           const int64_t *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           Py_ssize_t, Py_ssize_t, const Pairs *, double *, double *,
                           double *, Py_ssize_t, Py_ssize_t, double *);
typedef void product_c64_fn(const float *const *, float *const *, Py_ssize_t, const float *,
                            Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                            Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, void *);
typedef void product_c128_fn(const double *const *, double *const *, Py_ssize_t,
                             const double *, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                             Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                             void *);

typedef struct {
    const char *name;
    images_f32_fn *images_f32;
    images_f64_fn *images_f64;
    product_c64_fn *product_c64;
    product_c128_fn *product_c128;
} Level;

#define LEVEL(L) {#L, images_f32_##L, images_f64_##L, product_c64_##L, product_c128_##L}
enum { AVX512, AVX2, BASELINE }; /* indices into LEVELS on x86-64 */
static const Level LEVELS[] = {
#ifdef X86_LEVELS
    LEVEL(avx512),
    LEVEL(avx2),
#endif
    LEVEL(baseline),
};
#define NLEVELS ((int)(sizeof LEVELS / sizeof LEVELS[0]))

/* Whether this CPU (and its OS, which must save the wider registers) runs level i. */
static int runs(int i)
{
#ifdef X86_LEVELS
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
        && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
    if (i == AVX2) return avx2;
    if (i == AVX512)
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
#endif
    return i >= 0 && i < NLEVELS;
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
"depthwise(x, out, w, taps, rows, lines, itemsize, first, groups, padded, length,\n"
"          phases=1, out_length=length)\n"
"\n"
"Depthwise stride-1 correlation of images ``first, first + 1, ...`` (one per row of\n"
"``x``, C-contiguous, ``len(rows) * row`` samples each, group ``image % groups``).\n"
"Each image is copied into a zeroed scratch image of ``padded`` samples, input row r at\n"
"offset ``rows[r]``. Output channel j of an image (``out``: (images, m, lines, length))\n"
"is, on line l, ``sum_t w[g, j, t] * scratch[lines[l] + taps[t] + n]`` for n < length.\n"
"``taps``, ``rows`` and ``lines`` are int64; ``w`` is (groups, m, taps); ``itemsize`` 4\n"
"(float32) or 8 (float64). With ``phases`` P > 1 (one line: 1-D images), channels\n"
"``o * P + r`` are the phases r of one output, interleaved: ``out`` is\n"
"(images, m / P, out_length), its sample ``n * P + r`` channel ``o * P + r``'s sample n\n"
"(``out_length <= P * length``). Releases the GIL.");

static PyObject *depthwise(const Level *level, PyObject *args)
{
    Buffers b = {0};
    int itemsize;
    Py_ssize_t first, groups, padded, length, phases = 1, olen = -1;
    if (!PyArg_ParseTuple(args, "y*w*y*y*y*y*innnn|nn", &b.x, &b.out, &b.w, &b.taps, &b.rows,
                          &b.lines, &itemsize, &first, &groups, &padded, &length, &phases,
                          &olen)) {
        release(&b);
        return NULL;
    }
    const char *problem = NULL;
    Py_ssize_t ntaps = b.taps.len / 8, nrows = b.rows.len / 8, nlines = b.lines.len / 8;
    if (itemsize != 4 && itemsize != 8) problem = "itemsize must be 4 or 8";
    else if (ntaps < 1 || nrows < 1 || nlines < 1 || groups < 1 || length < 1 || first < 0)
        problem = "empty taps, rows or lines, or a non-positive size";
    if (olen < 0) olen = length;
    if (problem == NULL && (phases < 1 || olen < 1 || olen > phases * length))
        problem = "phases or out_length out of range";
    if (problem == NULL && phases > 1 && nlines != 1)
        problem = "interleaved phases need one line per image";
    Py_ssize_t row = 0, images = 0, mult = 0;
    if (problem == NULL) {
        Py_ssize_t kernels = b.w.len / itemsize / ntaps; /* groups * m */
        mult = kernels / groups;
        /* samples per image: every channel's lines, or every output's interleaved phases */
        Py_ssize_t out_image = phases > 1 ? mult / phases * olen : mult * nlines * length;
        if (mult < 1 || kernels != mult * groups || b.w.len != kernels * ntaps * itemsize)
            problem = "w does not hold (groups, m, taps) values";
        else if (mult % phases != 0)
            problem = "m is not a multiple of phases";
        else if (b.out.len == 0 || b.out.len % (out_image * itemsize) != 0)
            problem = "out does not hold whole output images";
        else {
            images = b.out.len / (out_image * itemsize);
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
    /* scratch: the padded image, the phases' tile, then the pairs' offsets and their two
     * lines' weights */
    const size_t image = ((size_t)padded * itemsize + 63) / 64 * 64;
    const size_t tile = phases > 1 ? (size_t)mult * CHUNK * itemsize : 0;
    char *scratch = calloc(image + tile + (size_t)ntaps * 2 * (24 + 2 * itemsize), 1);
    if (scratch == NULL) {
        release(&b);
        return PyErr_NoMemory();
    }
    int64_t *merged = (int64_t *)(scratch + image + tile);
    Pairs pairs = {-1, 0, merged, merged + 2 * ntaps, merged + 4 * ntaps};
    void *w0 = merged + 6 * ntaps, *w1 = (char *)w0 + 2 * ntaps * itemsize;
    int ascending = 1;
    for (Py_ssize_t t = 1; t < ntaps; t++) ascending &= taps[t] > taps[t - 1];
    if (nlines > 1 && lines[1] > lines[0] && ascending)
        merge_pairs(taps, ntaps, lines[1] - lines[0], &pairs);
    Py_BEGIN_ALLOW_THREADS
    if (itemsize == 4)
        level->images_f32(b.x.buf, b.out.buf, b.w.buf, taps, ntaps, rows, nrows, row, lines,
                           nlines,
                           length, images, first, groups, mult, &pairs, (float *)scratch, w0,
                           w1, phases, olen, (float *)(scratch + image));
    else
        level->images_f64(b.x.buf, b.out.buf, b.w.buf, taps, ntaps, rows, nrows, row, lines,
                           nlines,
                           length, images, first, groups, mult, &pairs, (double *)scratch, w0,
                           w1, phases, olen, (double *)(scratch + image));
    Py_END_ALLOW_THREADS
    free(scratch);
    release(&b);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(product_doc,
"product(xs, ys, h, itemsize, batch, groups, ci, co, tiles, freqs, f_lo, f_hi)\n"
"\n"
"``y[b, g, o, t, f] = sum_c h[g, o, c, f] * x[b, g, c, t, f]`` for f_lo <= f < f_hi and\n"
"every pair (x, y) of the sequences xs, ys (a team's members: their tiles are columns of\n"
"the same product): x (batch, groups, ci, tiles, freqs) and y (batch, groups, co, tiles,\n"
"freqs) complex, their frequencies contiguous and their (b, g, c, t) rows one stride apart,\n"
"the same in every array (rows may be padded apart); h the kernel spectra in blocks of\n"
"64 / (2 * itemsize) frequencies, (groups, blocks, co, ci, lanes), zeros beyond freqs.\n"
"``itemsize`` of the real parts: 4 (complex64) or 8 (complex128). Releases the GIL.");


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
        int flags = writable ? PyBUF_RECORDS : PyBUF_RECORDS_RO;
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

/* Reals from one (b, g, c, t) row of a complex (batch, groups, channels, tiles, freqs) buffer
 * to the next, if its frequencies are contiguous and its rows one stride apart; 0 for a
 * single row (any stride); else -1. (The strides of axes of length 1 mean nothing.) */
static Py_ssize_t row_stride(const Py_buffer *b, const Py_ssize_t shape[5], int itemsize)
{
    if (b->ndim != 5 || b->strides == NULL) return -1;
    for (int k = 0; k < 5; k++)
        if (b->shape[k] != shape[k]) return -1;
    if (shape[4] > 1 && b->strides[4] != 2 * itemsize) return -1;
    Py_ssize_t row = -1, rows = 1; /* rows: how many rows one step along axis k crosses */
    for (int k = 3; k >= 0; k--) {
        if (shape[k] > 1) {
            const Py_ssize_t step = b->strides[k];
            if (step <= 0 || step % (rows * itemsize) != 0) return -1;
            if (row < 0) row = step / (rows * itemsize);
            else if (step != row * rows * itemsize) return -1;
        }
        rows *= shape[k];
    }
    if (row < 0) return 0;
    return row >= 2 * shape[4] && row % 2 == 0 ? row : -1;
}

static void release_all(Py_buffer *bufs, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
}

static PyObject *product(const Level *level, PyObject *args)
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
    const Py_ssize_t lanes = BLOCK_BYTES / (2 * (Py_ssize_t)(itemsize ? itemsize : 1));
    if (itemsize != 4 && itemsize != 8) problem = "itemsize must be 4 or 8";
    else if (B < 1 || G < 1 || ci < 1 || co < 1 || tiles < 1 || F < 1)
        problem = "a non-positive size";
    else if (nx < 1 || nx != ny) problem = "x and y hold different numbers of arrays";
    else if (f_lo < 0 || f_hi > F || f_lo > f_hi) problem = "frequencies outside 0 .. freqs";
    else if (h.len != ((F + lanes - 1) / lanes) * G * co * ci * BLOCK_BYTES)
        problem = "h is not (groups, blocks, co, ci, lanes)";
    Py_ssize_t row = 0; /* reals per (b, g, c, t) row, the same in every x and y */
    const Py_ssize_t xshape[5] = {B, G, ci, tiles, F}, yshape[5] = {B, G, co, tiles, F};
    for (Py_ssize_t i = 0; problem == NULL && i < 2 * nx; i++) {
        const Py_ssize_t r = i < nx ? row_stride(&x[i], xshape, itemsize)
                                    : row_stride(&y[i - nx], yshape, itemsize);
        if (r < 0)
            problem = i < nx
                          ? "x is not (batch, groups, ci, tiles, freqs) in rows one stride apart"
                          : "y is not (batch, groups, co, tiles, freqs) in rows one stride apart";
        else if (r > 0 && row > 0 && r != row)
            problem = "x and y rows lie at different strides";
        else if (r > 0)
            row = r;
    }
    if (row == 0) row = 2 * F; /* single rows only */
    if (problem != NULL) {
        PyErr_Format(PyExc_ValueError, "specconv._simd.product: %s", problem);
        goto done;
    }
    pointers = PyMem_Calloc(2 * nx, sizeof(void *));
    if (pointers == NULL || posix_memalign(&xd, 64, (size_t)SUPER * ci * 2 * BLOCK_BYTES) != 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < nx; i++) {
        pointers[i] = x[i].buf;
        pointers[nx + i] = y[i].buf;
    }
    Py_BEGIN_ALLOW_THREADS
    if (itemsize == 4)
        level->product_c64((const float *const *)pointers, (float *const *)(pointers + nx), nx,
                    h.buf, B, G, ci, co, tiles, F, row, f_lo, f_hi, xd);
    else
        level->product_c128((const double *const *)pointers, (double *const *)(pointers + nx), nx,
                     h.buf, B, G, ci, co, tiles, F, row, f_lo, f_hi, xd);
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

/* the loops of each level, as module functions depthwise_<level> and product_<level> */
#define WRAPPERS(L, I)                                                                       \
    static PyObject *depthwise_##L(PyObject *Py_UNUSED(self), PyObject *args)                \
    {                                                                                        \
        return depthwise(&LEVELS[I], args);                                                  \
    }                                                                                        \
    static PyObject *product_##L(PyObject *Py_UNUSED(self), PyObject *args)                  \
    {                                                                                        \
        return product(&LEVELS[I], args);                                                    \
    }
#ifdef X86_LEVELS
WRAPPERS(avx512, AVX512)
WRAPPERS(avx2, AVX2)
WRAPPERS(baseline, BASELINE)
#else
WRAPPERS(baseline, 0)
#endif

PyDoc_STRVAR(supported_doc,
"supported()\n"
"\n"
"The names of the levels this CPU runs, best first (the loops of level L are\n"
"``depthwise_L`` and ``product_L``).");

static PyObject *supported(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(args))
{
    PyObject *names = PyList_New(0);
    for (int i = 0; names != NULL && i < NLEVELS; i++) {
        if (!runs(i)) continue;
        PyObject *name = PyUnicode_FromString(LEVELS[i].name);
        if (name == NULL || PyList_Append(names, name) != 0) Py_CLEAR(names);
        Py_XDECREF(name);
    }
    if (names == NULL) return NULL;
    PyObject *result = PyList_AsTuple(names);
    Py_DECREF(names);
    return result;
}

#define METHODS(L)                                                                           \
    {"depthwise_" #L, depthwise_##L, METH_VARARGS, depthwise_doc},                           \
    {"product_" #L, product_##L, METH_VARARGS, product_doc}
static PyMethodDef methods[] = {
#ifdef X86_LEVELS
    METHODS(avx512),
    METHODS(avx2),
#endif
    METHODS(baseline),
    {"supported", supported, METH_NOARGS, supported_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_simd",
    .m_doc = "Compiled loops of specconv's direct method and FFT path, per instruction-set "
             "level (see _simd.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__simd(void) { return PyModule_Create(&module); }
