/* JPEG marker search for wsianon.io.jpeg.marker_positions (see its docstring).
 *
 * positions(buffer) -> bytes: the positions p < len - 1 where byte p is 0xFF and byte p + 1 starts
 * a marker after entropy-coded data -- not a stuffed zero, a restart marker (0xD0-0xD7) or another
 * 0xFF -- as native int64 values, in increasing order.  The same answer as the numpy search
 * (wsianon.io.jpeg._markers_numpy), about three times faster: memchr finds each 0xFF, and the scan
 * runs without the GIL, beside the copy's other threads.  Built by `pip install` (setup.py, an
 * optional extension): where it cannot be built, the numpy search is used.
 *
 * pairs_and_restarts(buffer) -> (bytes, bytes): the positions p < len - 1 where byte p is 0xFF and
 * byte p + 1 is 0xFF too (a fill byte), and those where byte p + 1 is a restart marker (0xD0-0xD7),
 * both as native int64 values in increasing order -- the two kinds of 0xFF the marker search skips
 * and the header-repeat shortcut (wsianon.io.jpeg.clean_by_header_many) must count; the same
 * answer as wsianon.io.jpeg._pairs_restarts_numpy. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int after_ff_is_marker(unsigned char c) { return c != 0x00 && c != 0xFF && (c < 0xD0 || c > 0xD7); }

/* a growable array of int64 positions */
typedef struct {
    int64_t *v;
    Py_ssize_t n, cap;
} posv;

static int posv_push(posv *a, int64_t x) {
    if (a->n == a->cap) {
        Py_ssize_t cap = a->cap ? a->cap * 2 : 64;
        int64_t *grown = (int64_t *)realloc(a->v, (size_t)cap * sizeof(int64_t));
        if (grown == NULL)
            return -1;
        a->v = grown;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return 0;
}

static PyObject *posv_bytes(posv *a) {
    PyObject *res = PyBytes_FromStringAndSize(a->v ? (const char *)a->v : "", a->n * (Py_ssize_t)sizeof(int64_t));
    free(a->v);
    a->v = NULL;
    return res;
}

/* which list the 0xFF at q belongs to, by the byte after it: 0 none, else 1 + the list's index */
static int kind_marker(unsigned char c) { return after_ff_is_marker(c) ? 1 : 0; }
static int kind_pair_restart(unsigned char c) { return c == 0xFF ? 1 : (c >= 0xD0 && c <= 0xD7) ? 2 : 0; }
static int kind_all(unsigned char c) { return c == 0xFF ? 2 : (c >= 0xD0 && c <= 0xD7) ? 3 : c != 0x00 ? 1 : 0; }

/* the positions of the 0xFF bytes of b[0..n) (but the last byte) into lists[kind() - 1];
 * -1 when out of memory. Runs without the GIL. */
static int scan(const unsigned char *b, Py_ssize_t n, int (*kind)(unsigned char), posv *lists) {
    int rc = 0;
    if (n < 2)
        return 0;
    Py_BEGIN_ALLOW_THREADS
    const unsigned char *p = b, *end = b + n - 1; /* a 0xFF at end has no byte after it */
    while (p < end) {
        const unsigned char *q = (const unsigned char *)memchr(p, 0xFF, (size_t)(end - p));
        if (q == NULL)
            break;
        int k = kind(q[1]);
        if (k && posv_push(&lists[k - 1], (int64_t)(q - b)) < 0) {
            rc = -1;
            break;
        }
        p = q + 1;
    }
    Py_END_ALLOW_THREADS
    return rc;
}

/* scan() of a buffer object: its lists as a tuple of bytes (nlists > 1) or the first alone */
static PyObject *scan_buffer(PyObject *arg, int (*kind)(unsigned char), int nlists) {
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    posv lists[3] = {{NULL, 0, 0}, {NULL, 0, 0}, {NULL, 0, 0}};
    int rc = scan((const unsigned char *)view.buf, view.len, kind, lists);
    PyBuffer_Release(&view);
    if (rc < 0) {
        for (int i = 0; i < 3; i++)
            free(lists[i].v);
        return PyErr_NoMemory();
    }
    if (nlists == 1)
        return posv_bytes(&lists[0]);
    PyObject *out = PyTuple_New(nlists);
    for (int i = 0; i < nlists; i++) {
        PyObject *item = out ? posv_bytes(&lists[i]) : NULL;
        if (item == NULL) {
            for (int j = i; j < 3; j++)
                free(lists[j].v);
            Py_XDECREF(out);
            return out ? NULL : PyErr_NoMemory();
        }
        PyTuple_SET_ITEM(out, i, item);
    }
    return out;
}

static PyObject *positions(PyObject *self, PyObject *arg) { return scan_buffer(arg, kind_marker, 1); }

static PyObject *pairs_and_restarts(PyObject *self, PyObject *arg) { return scan_buffer(arg, kind_pair_restart, 2); }

static PyObject *index_all(PyObject *self, PyObject *arg) { return scan_buffer(arg, kind_all, 3); }

/* prefix_mask(buffer, starts, prefix) -> bytes: for each native int64 position in starts, 1 where
 * buffer holds prefix at that position (wholly inside the buffer), else 0 -- the comparison of many
 * streams' first bytes with one known header (wsianon.io.jpeg.prefix_mask) without a Python call a
 * stream. */
static PyObject *prefix_mask(PyObject *self, PyObject *args) {
    Py_buffer buf, starts, prefix;
    if (!PyArg_ParseTuple(args, "y*y*y*", &buf, &starts, &prefix))
        return NULL;
    Py_ssize_t k = starts.len / (Py_ssize_t)sizeof(int64_t);
    PyObject *res = PyBytes_FromStringAndSize(NULL, k);
    if (res != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(res);
        const unsigned char *b = (const unsigned char *)buf.buf, *pre = (const unsigned char *)prefix.buf;
        Py_ssize_t n = buf.len, L = prefix.len;
        const int64_t *at = (const int64_t *)starts.buf;
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < k; i++) {
            int64_t a = at[i];
            out[i] = a >= 0 && a <= (int64_t)(n - L) && memcmp(b + a, pre, (size_t)L) == 0;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&buf);
    PyBuffer_Release(&starts);
    PyBuffer_Release(&prefix);
    return res;
}

static PyMethodDef methods[] = {
    {"positions", positions, METH_O, "JPEG marker positions in a buffer, as native int64 bytes."},
    {"index", index_all, METH_O, "positions, then pairs_and_restarts, of one buffer in one pass: a tuple of three bytes."},
    {"prefix_mask", prefix_mask, METH_VARARGS, "1 where the buffer holds the prefix at each int64 start, else 0, as bytes."},
    {"pairs_and_restarts", pairs_and_restarts, METH_O, "Positions of 0xFF 0xFF pairs and of restart markers, as native int64 bytes."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_markers", NULL, -1, methods};

PyMODINIT_FUNC PyInit__markers(void) { return PyModule_Create(&module); }
