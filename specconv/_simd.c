/*
 * Compiled loops for the one layer numpy cannot make fast: depthwise correlation.
 *
 * A depthwise tap is a scaled copy of the image; numpy makes it one pass over memory per tap,
 * and a 7 x 7 kernel 49 passes. Here every output line keeps a block of its samples in
 * registers across all taps, so the image is read once from memory and the output written
 * once. The loops are plain C written for the compiler's vectoriser; on x86-64 (gcc, Linux)
 * they are cloned for AVX-512 and AVX2 and the best is picked when the module loads.
 *
 * Python side: specconv/_direct.py (``_depthwise``). No numpy headers: arrays come in
 * through the buffer protocol, and every offset is checked against the buffers here.
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
 * from any address; four of them accumulate a block of one output line. */
#define ACCUMULATORS 4
typedef float vec_f32 __attribute__((vector_size(64), aligned(4)));
typedef double vec_f64 __attribute__((vector_size(64), aligned(8)));

/*
 * out[l * len + n] = sum_t w[t] * pad[lines[l] + taps[t] + n], for every line l and n < len.
 */
#define DEFINE_LINES(T, V, NAME)                                                              \
    CLONED static void NAME(const T *pad, const T *w, const int64_t *taps, Py_ssize_t ntaps,  \
                            const int64_t *lines, Py_ssize_t nlines, Py_ssize_t len, T *out)  \
    {                                                                                         \
        enum { LANES = sizeof(V) / sizeof(T), WIDE = ACCUMULATORS * LANES };                 \
        for (Py_ssize_t l = 0; l < nlines; l++) {                                             \
            const T *base = pad + lines[l];                                                   \
            T *dst = out + l * len;                                                           \
            Py_ssize_t n = 0;                                                                 \
            for (; n + WIDE <= len; n += WIDE) {                                              \
                V acc[ACCUMULATORS] = {0};                                                    \
                for (Py_ssize_t t = 0; t < ntaps; t++) {                                      \
                    const V *src = (const V *)(base + taps[t] + n);                           \
                    for (int a = 0; a < ACCUMULATORS; a++) acc[a] += w[t] * src[a];           \
                }                                                                             \
                for (int a = 0; a < ACCUMULATORS; a++) *(V *)(dst + n + a * LANES) = acc[a];  \
            }                                                                                 \
            for (; n + LANES <= len; n += LANES) {                                            \
                V acc = {0};                                                                  \
                for (Py_ssize_t t = 0; t < ntaps; t++)                                        \
                    acc += w[t] * *(const V *)(base + taps[t] + n);                           \
                *(V *)(dst + n) = acc;                                                        \
            }                                                                                 \
            for (; n < len; n++) {                                                            \
                T acc = 0;                                                                    \
                for (Py_ssize_t t = 0; t < ntaps; t++) acc += w[t] * base[taps[t] + n];       \
                dst[n] = acc;                                                                 \
            }                                                                                 \
        }                                                                                     \
    }

DEFINE_LINES(float, vec_f32, lines_f32)
DEFINE_LINES(double, vec_f64, lines_f64)

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

    void *scratch = calloc((size_t)padded, (size_t)itemsize);
    if (scratch == NULL) {
        release(&b);
        return PyErr_NoMemory();
    }
    const int64_t *taps = b.taps.buf, *rows = b.rows.buf, *lines = b.lines.buf;
    Py_ssize_t in_image = nrows * row, out_image = nlines * length;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < images; i++) {
        Py_ssize_t g = (first + i) % groups;
        if (itemsize == 4) {
            const float *src = (const float *)b.x.buf + i * in_image;
            float *pad = scratch;
            for (Py_ssize_t r = 0; r < nrows; r++)
                memcpy(pad + rows[r], src + r * row, (size_t)row * sizeof(float));
            for (Py_ssize_t j = 0; j < mult; j++)
                lines_f32(pad, (const float *)b.w.buf + (g * mult + j) * ntaps, taps, ntaps,
                          lines, nlines, length, (float *)b.out.buf + (i * mult + j) * out_image);
        } else {
            const double *src = (const double *)b.x.buf + i * in_image;
            double *pad = scratch;
            for (Py_ssize_t r = 0; r < nrows; r++)
                memcpy(pad + rows[r], src + r * row, (size_t)row * sizeof(double));
            for (Py_ssize_t j = 0; j < mult; j++)
                lines_f64(pad, (const double *)b.w.buf + (g * mult + j) * ntaps, taps, ntaps,
                          lines, nlines, length, (double *)b.out.buf + (i * mult + j) * out_image);
        }
    }
    Py_END_ALLOW_THREADS
    free(scratch);
    release(&b);
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"depthwise", depthwise, METH_VARARGS, depthwise_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "_simd",
    .m_doc = "Compiled depthwise correlation for specconv's direct method (see _simd.c).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__simd(void) { return PyModule_Create(&module); }
