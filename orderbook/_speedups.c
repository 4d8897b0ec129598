/*
 * orderbook._speedups: the optional native twins of the hot-path types.
 *
 * The module owns its types and touches no other class's layout:
 *
 *   DepthEvent         one depth frame; when read by depth_frame() its levels
 *                      are held parsed (fixed-point digits plus the offsets of
 *                      their text in the raw frame), so no Python object is
 *                      built per level; .bids/.asks build the [price, qty]
 *                      string lists on first read, exactly as received.
 *   Ladder             one side of a book: sorted fixed-point levels in
 *                      chunked arrays (no Python object per level unless a
 *                      level is read, then its Decimal tuple is cached).
 *   depth_frame(raw)   the JSON text of a depth frame -> DepthEvent, or None
 *                      to let orjson and the Python reader decide.
 *   apply_levels(bids, asks, event)  validate a whole frame, then apply it.
 *   crossed(bids, asks)              best bid >= best ask.
 *   fold_frames(bids, asks, frames)  merge frames' levels into dicts keyed by exact value.
 *   wire_raw_levels(levels, slow)    levels as strings in the spelling a sink publishes.
 *
 * Each has a pure-Python twin of the same API (orderbook/core/ladder.py,
 * orderbook/protocol/wire.py); tests/core/test_native.py runs both on the
 * same random inputs and compares every result and every exception.
 * Validation errors are built by a Python function given to configure(), so
 * the messages exist once.  The tuning constants (the value bound, how many
 * best levels keep their converted tuples) come from Python too.
 *
 * Numbers: a plain decimal string within the bound (at most MAX_INTEGER
 * digits before the point, MAX_DECIMALS after) is parsed into its digits
 * as a 128-bit integer and its count of decimals; a price key is
 * sign * digits * 10**(scale - decimals) with scale <= MAX_DECIMALS, so
 * every key is below 10**38 and fits the 128-bit integer: no key
 * arithmetic can overflow.
 *
 * Reference counting: every PyObject* is either borrowed from an object the
 * caller keeps alive for the whole call or owned and released before
 * returning; cached Decimal objects in a Ladder are owned by the ladder.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <structmember.h>

typedef __int128 i128;

/* ------------------------------------------------------------ configuration */

static int max_integer_digits = 20;
static int max_decimals = 18;
static Py_ssize_t remembered_depth = 100;
static PyObject *decimal_type = NULL;  /* decimal.Decimal */
static PyObject *level_error = NULL;   /* f(kind, value, symbol) -> MalformedMessage */
static PyObject *usage_error = NULL;   /* orderbook.errors.UsageError */
static PyObject *integrity_error = NULL; /* orderbook.errors.IntegrityError */

/* Kinds of level errors, as orderbook.core.ladder.LevelError numbers them. */
enum { E_SHAPE = 0, E_PRICE_TEXT = 1, E_PRICE_ZERO = 2, E_QTY_TEXT = 3 };

#define MAX_ID_DIGITS 18 /* any 18-digit decimal fits an int64 */
#define MAX_TEXT 64      /* longer than any number within the bound */

static i128 pow10_table[39];

static void
init_pow10(void)
{
    pow10_table[0] = 1;
    for (int i = 1; i < 39; i++)
        pow10_table[i] = pow10_table[i - 1] * 10;
}

/* Raise the MalformedMessage for a bad level (built in Python). */
static void
raise_level_error(int kind, PyObject *value, PyObject *symbol)
{
    PyObject *exc = PyObject_CallFunction(level_error, "iOO", kind, value ? value : Py_None,
                                          symbol ? symbol : Py_None);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
}

/* ---------------------------------------------------------------- numbers */

typedef struct {
    i128 digits;  /* the digits without the point */
    int decimals; /* digits after the point */
} Num;

/* A plain decimal within the bound: ASCII digits, at most one '.', at least
 * one digit.  1 with *out set, else 0 (the Python is_decimal_string). */
static int
parse_num(const char *s, Py_ssize_t n, Num *out)
{
    if (n < 1 || n > max_integer_digits + 1 + max_decimals)
        return 0;
    i128 v = 0;
    Py_ssize_t dot = -1, digits = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9') {
            v = v * 10 + (c - '0');
            digits++;
        }
        else if (c == '.' && dot < 0) {
            dot = i;
        }
        else {
            return 0;
        }
    }
    Py_ssize_t whole = dot < 0 ? n : dot;
    Py_ssize_t decimals = dot < 0 ? 0 : n - dot - 1;
    if (digits == 0 || whole > max_integer_digits || decimals > max_decimals)
        return 0;
    out->digits = v;
    out->decimals = (int)decimals;
    return 1;
}

/* A str object as a Num: 1, or 0 when it is not a bounded plain decimal. */
static int
parse_num_object(PyObject *text, Num *out)
{
    if (!PyUnicode_CheckExact(text) || !PyUnicode_IS_ASCII(text))
        return 0;
    return parse_num((const char *)PyUnicode_DATA(text), PyUnicode_GET_LENGTH(text), out);
}

/* digits / 10**decimals in plain notation ("0.005", "5.00", "5").  Returns
 * the length written to buf (at least 42 bytes). */
static int
format_num(i128 digits, int decimals, char *buf)
{
    char rev[48];
    int n = 0;
    int negative = digits < 0;
    unsigned __int128 v = negative ? (unsigned __int128)(-digits) : (unsigned __int128)digits;
    do {
        rev[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    while (n <= decimals)
        rev[n++] = '0'; /* at least one digit before the point */
    int out = 0;
    if (negative)
        buf[out++] = '-';
    for (int i = n - 1; i >= 0; i--) {
        buf[out++] = rev[i];
        if (i == decimals && decimals > 0)
            buf[out++] = '.';
    }
    return out;
}

static PyObject *
num_text(i128 digits, int decimals)
{
    char buf[64];
    int n = format_num(digits, decimals, buf);
    return PyUnicode_FromStringAndSize(buf, n);
}

static PyObject *
num_decimal(i128 digits, int decimals)
{
    PyObject *text = num_text(digits, decimals);
    if (text == NULL)
        return NULL;
    PyObject *value = PyObject_CallOneArg(decimal_type, text);
    Py_DECREF(text);
    return value;
}

/* A 128-bit integer as a Python int. */
static PyObject *
i128_to_long(i128 value)
{
    if (value >= INT64_MIN && value <= INT64_MAX)
        return PyLong_FromLongLong((long long)value);
    char buf[64];
    int n = format_num(value, 0, buf);
    buf[n] = '\0';
    return PyLong_FromString(buf, NULL, 10);
}

/* A Python int as a 128-bit integer: 1, or 0 when it is not an int or does
 * not fit, -1 on error. */
static int
long_to_i128(PyObject *number, i128 *value)
{
    if (!PyLong_Check(number))
        return 0;
    int overflow = 0;
    long long small = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (small == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {
        *value = small;
        return 1;
    }
    PyObject *text = PyObject_Str(number);
    if (text == NULL)
        return -1;
    const char *s = PyUnicode_AsUTF8(text);
    if (s == NULL) {
        Py_DECREF(text);
        return -1;
    }
    int negative = s[0] == '-';
    Num num;
    int ok = parse_num(s + negative, (Py_ssize_t)strlen(s + negative), &num) && num.decimals == 0;
    Py_DECREF(text);
    if (ok)
        *value = negative ? -num.digits : num.digits;
    return ok;
}

/* ----------------------------------------------------------- JSON reading */

/* depth_frame() reads the raw JSON text of a depth frame directly, for the
 * one shape the venue sends:
 *
 *   {"stream":"depth.SYM","data":{"e":"depth","E":..,"s":"SYM",
 *    "a":[["price","qty"],...],"b":[...],"U":..,"u":..,"T":..}}
 *
 * in any key order and with any JSON whitespace.  It accepts a strict
 * subset of JSON: strings of printable ASCII without escapes, non-negative
 * integers of at most 18 digits, and for unknown keys such a string or
 * integer or true/false/null; every price and quantity a plain decimal
 * within the bound, every price > 0.  Anything else (escapes, non-ASCII,
 * floats, nested unknown values, a repeated known key, a missing field,
 * U > u, an "s" naming another symbol, a level that is not a bounded plain
 * decimal, trailing text) is declined, and the caller decodes the frame
 * with orjson and the Python code.  So whatever this accepts is valid JSON
 * that orjson + the Python reader read the same way. */

typedef struct {
    const unsigned char *start;
    const unsigned char *at;
    const unsigned char *end;
} Reader;

typedef struct {
    const char *text;
    Py_ssize_t length;
} Span;

static inline int
peek(Reader *r)
{
    while (r->at < r->end) {
        unsigned char c = *r->at;
        if (c != ' ' && c != '\n' && c != '\r' && c != '\t')
            return c;
        r->at++;
    }
    return -1;
}

static inline int
expect(Reader *r, int c)
{
    if (peek(r) != c)
        return 0;
    r->at++;
    return 1;
}

/* What a byte means inside a JSON string: 0 ordinary, 1 the closing quote,
 * 2 decline (a control character, an escape, or non-ASCII). */
static unsigned char string_byte[256];

static void
init_string_bytes(void)
{
    for (int c = 0; c < 256; c++)
        string_byte[c] = (c < 0x20 || c >= 0x80 || c == '\\') ? 2 : c == '"';
}

static int
read_plain_string(Reader *r, Span *out)
{
    if (!expect(r, '"'))
        return 0;
    const unsigned char *start = r->at;
    for (const unsigned char *p = start; p < r->end; p++) {
        unsigned char kind = string_byte[*p];
        if (kind == 0)
            continue;
        if (kind == 2)
            return 0;
        out->text = (const char *)start;
        out->length = p - start;
        r->at = p + 1;
        return 1;
    }
    return 0;
}

static int
read_json_uint(Reader *r, long long *value)
{
    const unsigned char *start = r->at, *p = start;
    long long v = 0;
    while (p < r->end && *p >= '0' && *p <= '9' && p - start < MAX_ID_DIGITS + 1) {
        v = v * 10 + (*p - '0');
        p++;
    }
    Py_ssize_t digits = p - start;
    if (digits == 0 || digits > MAX_ID_DIGITS || (digits > 1 && *start == '0'))
        return 0;
    r->at = p;
    *value = v;
    return 1;
}

static int
read_id(Reader *r, long long *value)
{
    int c = peek(r);
    if (c >= '0' && c <= '9')
        return read_json_uint(r, value);
    Span text;
    if (c != '"' || !read_plain_string(r, &text))
        return 0;
    if (text.length < 1 || text.length > MAX_ID_DIGITS)
        return 0;
    long long v = 0;
    for (Py_ssize_t i = 0; i < text.length; i++) {
        char digit = text.text[i];
        if (digit < '0' || digit > '9')
            return 0;
        v = v * 10 + (digit - '0');
    }
    *value = v;
    return 1;
}

static int
skip_simple_value(Reader *r)
{
    int c = peek(r);
    if (c == '"') {
        Span ignored;
        return read_plain_string(r, &ignored);
    }
    if (c >= '0' && c <= '9') {
        long long ignored;
        return read_json_uint(r, &ignored);
    }
    static const char *literals[3] = {"true", "false", "null"};
    for (int i = 0; i < 3; i++) {
        size_t n = strlen(literals[i]);
        if ((size_t)(r->end - r->at) >= n && memcmp(r->at, literals[i], n) == 0) {
            r->at += n;
            return 1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ DepthEvent */

typedef struct {
    i128 price;      /* digits */
    i128 qty;        /* digits */
    uint32_t p_off, q_off; /* offsets of the texts in the raw frame */
    uint8_t p_len, q_len, p_dec, q_dec;
} ParsedLevel;

typedef struct {
    PyObject_VAR_HEAD       /* ob_size: parsed levels held (bids then asks) */
    PyObject *symbol, *first_id, *last_id, *event_time, *engine_time;
    PyObject *bids, *asks;  /* the level lists; NULL until built from raw */
    PyObject *raw;          /* the text the levels were parsed from, or NULL */
    Py_ssize_t n_bids;      /* parsed bid levels (asks follow them) */
    int parsed;             /* 1: levels[] holds every level */
    ParsedLevel levels[1];
} DepthEventObject;

static PyTypeObject DepthEventType;

static const char *raw_text(PyObject *raw)
{
    return PyBytes_CheckExact(raw) ? PyBytes_AS_STRING(raw) : (const char *)PyUnicode_DATA(raw);
}

/* The [[price, qty], ...] list of parsed levels [from, to), as received. */
static PyObject *
levels_list(DepthEventObject *ev, Py_ssize_t from, Py_ssize_t to)
{
    PyObject *out = PyList_New(to - from);
    if (out == NULL)
        return NULL;
    const char *text = raw_text(ev->raw);
    for (Py_ssize_t i = from; i < to; i++) {
        ParsedLevel *lv = &ev->levels[i];
        PyObject *pair = PyList_New(2);
        if (pair == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i - from, pair);
        PyObject *price = PyUnicode_FromStringAndSize(text + lv->p_off, lv->p_len);
        PyObject *qty = PyUnicode_FromStringAndSize(text + lv->q_off, lv->q_len);
        PyList_SET_ITEM(pair, 0, price);
        PyList_SET_ITEM(pair, 1, qty);
        if (price == NULL || qty == NULL) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *
event_get_bids(DepthEventObject *ev, void *closure)
{
    if (ev->bids == NULL && !(ev->bids = levels_list(ev, 0, ev->n_bids)))
        return NULL;
    return Py_NewRef(ev->bids);
}

static PyObject *
event_get_asks(DepthEventObject *ev, void *closure)
{
    if (ev->asks == NULL && !(ev->asks = levels_list(ev, ev->n_bids, Py_SIZE(ev))))
        return NULL;
    return Py_NewRef(ev->asks);
}

static PyObject *
event_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"symbol", "first_id", "last_id", "event_time", "engine_time", "bids",
                            "asks", NULL};
    PyObject *values[7];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOO:DepthEvent", names, &values[0],
                                     &values[1], &values[2], &values[3], &values[4], &values[5],
                                     &values[6]))
        return NULL;
    DepthEventObject *ev = (DepthEventObject *)type->tp_alloc(type, 0);
    if (ev == NULL)
        return NULL;
    ev->symbol = Py_NewRef(values[0]);
    ev->first_id = Py_NewRef(values[1]);
    ev->last_id = Py_NewRef(values[2]);
    ev->event_time = Py_NewRef(values[3]);
    ev->engine_time = Py_NewRef(values[4]);
    ev->bids = Py_NewRef(values[5]);
    ev->asks = Py_NewRef(values[6]);
    ev->raw = NULL;
    ev->n_bids = 0;
    ev->parsed = 0;
    return (PyObject *)ev;
}

static int
event_traverse(DepthEventObject *ev, visitproc visit, void *arg)
{
    Py_VISIT(ev->bids);
    Py_VISIT(ev->asks);
    return 0;
}

static int
event_clear(DepthEventObject *ev)
{
    Py_CLEAR(ev->bids);
    Py_CLEAR(ev->asks);
    return 0;
}

static void
event_dealloc(DepthEventObject *ev)
{
    PyObject_GC_UnTrack(ev);
    Py_XDECREF(ev->symbol);
    Py_XDECREF(ev->first_id);
    Py_XDECREF(ev->last_id);
    Py_XDECREF(ev->event_time);
    Py_XDECREF(ev->engine_time);
    Py_XDECREF(ev->bids);
    Py_XDECREF(ev->asks);
    Py_XDECREF(ev->raw);
    Py_TYPE(ev)->tp_free((PyObject *)ev);
}

static PyObject *
event_fields(DepthEventObject *ev)
{
    PyObject *bids = event_get_bids(ev, NULL);
    PyObject *asks = bids ? event_get_asks(ev, NULL) : NULL;
    PyObject *out = asks ? PyTuple_Pack(7, ev->symbol, ev->first_id, ev->last_id, ev->event_time,
                                        ev->engine_time, bids, asks)
                         : NULL;
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    return out;
}

static PyObject *
event_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(b, &DepthEventType))
        Py_RETURN_NOTIMPLEMENTED;
    PyObject *fa = event_fields((DepthEventObject *)a);
    PyObject *fb = fa ? event_fields((DepthEventObject *)b) : NULL;
    PyObject *result = fb ? PyObject_RichCompare(fa, fb, op) : NULL;
    Py_XDECREF(fa);
    Py_XDECREF(fb);
    return result;
}

static PyObject *
event_repr(DepthEventObject *ev)
{
    PyObject *bids = event_get_bids(ev, NULL);
    PyObject *asks = bids ? event_get_asks(ev, NULL) : NULL;
    PyObject *out = asks ? PyUnicode_FromFormat(
                               "DepthEvent(symbol=%R, first_id=%R, last_id=%R, event_time=%R, "
                               "engine_time=%R, bids=%R, asks=%R)",
                               ev->symbol, ev->first_id, ev->last_id, ev->event_time,
                               ev->engine_time, bids, asks)
                         : NULL;
    Py_XDECREF(bids);
    Py_XDECREF(asks);
    return out;
}

static PyMemberDef event_members[] = {
    {"symbol", T_OBJECT_EX, offsetof(DepthEventObject, symbol), READONLY, "The market."},
    {"first_id", T_OBJECT_EX, offsetof(DepthEventObject, first_id), READONLY, "U: first update id."},
    {"last_id", T_OBJECT_EX, offsetof(DepthEventObject, last_id), READONLY, "u: last update id."},
    {"event_time", T_OBJECT_EX, offsetof(DepthEventObject, event_time), READONLY, "E, in us."},
    {"engine_time", T_OBJECT_EX, offsetof(DepthEventObject, engine_time), READONLY, "T, in us."},
    {NULL},
};

static PyGetSetDef event_getset[] = {
    {"bids", (getter)event_get_bids, NULL, "The bid [price, quantity] strings as received.", NULL},
    {"asks", (getter)event_get_asks, NULL, "The ask [price, quantity] strings as received.", NULL},
    {NULL},
};

static PyTypeObject DepthEventType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "orderbook._speedups.DepthEvent",
    .tp_doc = "One depth frame (the native twin of orderbook.protocol.wire.DepthEvent).",
    .tp_basicsize = offsetof(DepthEventObject, levels),
    .tp_itemsize = sizeof(ParsedLevel),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = event_new,
    .tp_dealloc = (destructor)event_dealloc,
    .tp_traverse = (traverseproc)event_traverse,
    .tp_clear = (inquiry)event_clear,
    .tp_richcompare = event_richcompare,
    .tp_repr = (reprfunc)event_repr,
    .tp_members = event_members,
    .tp_getset = event_getset,
    .tp_hash = PyObject_HashNotImplemented,
};

/* ------------------------------------------------------------ depth_frame */

/* Symbols seen, by their text: frames of one market share one str object
 * (cheaper dict lookups downstream, no allocation per frame). */
#define SYMBOL_SLOTS 4096
static PyObject *symbol_table[SYMBOL_SLOTS];

static PyObject *
symbol_string(Span text)
{
    uint32_t h = 2166136261u;
    for (Py_ssize_t i = 0; i < text.length; i++)
        h = (h ^ (unsigned char)text.text[i]) * 16777619u;
    for (int probe = 0; probe < 8; probe++) {
        PyObject **slot = &symbol_table[(h + probe) & (SYMBOL_SLOTS - 1)];
        if (*slot == NULL) {
            PyObject *s = PyUnicode_FromStringAndSize(text.text, text.length);
            if (s == NULL)
                return NULL;
            *slot = Py_NewRef(s);
            return s;
        }
        if (PyUnicode_GET_LENGTH(*slot) == text.length &&
            memcmp(PyUnicode_DATA(*slot), text.text, text.length) == 0)
            return Py_NewRef(*slot);
    }
    return PyUnicode_FromStringAndSize(text.text, text.length); /* table crowded: no sharing */
}

#define MAX_LEVELS 1024 /* per frame; more is declined (the venue sends a few) */

typedef struct {
    long long ids[4]; /* U, u, E, T */
    Span named;
    int seen;
    Py_ssize_t n_levels[2]; /* bids, asks */
    Py_ssize_t at[2];       /* first index in levels[] of bids, asks */
    ParsedLevel *levels;
    Py_ssize_t count, cap;
    int heap; /* levels was allocated here (else it is the caller's buffer) */
} DepthData;

enum { F_U = 1, F_u = 2, F_E = 4, F_T = 8, F_b = 16, F_a = 32, F_s = 64, F_ALL = 63 };

/* [["price","qty"], ...] into data->levels.  1, 0 to decline, -1 on error. */
static int
read_levels(Reader *r, DepthData *data, int side)
{
    if (!expect(r, '['))
        return 0;
    data->at[side] = data->count;
    if (expect(r, ']'))
        return 1;
    for (;;) {
        Span price, qty;
        if (!expect(r, '[') || !read_plain_string(r, &price) || !expect(r, ',') ||
            !read_plain_string(r, &qty) || !expect(r, ']'))
            return 0;
        Num p, q;
        if (!parse_num(price.text, price.length, &p) || p.digits == 0 ||
            !parse_num(qty.text, qty.length, &q))
            return 0; /* an error or unusual value: the Python reader's to say */
        if (data->count == data->cap) {
            if (data->cap >= MAX_LEVELS)
                return 0;
            Py_ssize_t cap = data->cap * 2;
            ParsedLevel *grown;
            if (data->heap) {
                grown = PyMem_Realloc(data->levels, cap * sizeof(ParsedLevel));
            }
            else { /* leaving the caller's stack buffer */
                grown = PyMem_Malloc(cap * sizeof(ParsedLevel));
                if (grown != NULL)
                    memcpy(grown, data->levels, data->count * sizeof(ParsedLevel));
            }
            if (grown == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            data->levels = grown;
            data->heap = 1;
            data->cap = cap;
        }
        ParsedLevel *lv = &data->levels[data->count++];
        lv->price = p.digits;
        lv->qty = q.digits;
        lv->p_dec = (uint8_t)p.decimals;
        lv->q_dec = (uint8_t)q.decimals;
        lv->p_off = (uint32_t)((const unsigned char *)price.text - r->start);
        lv->q_off = (uint32_t)((const unsigned char *)qty.text - r->start);
        lv->p_len = (uint8_t)price.length;
        lv->q_len = (uint8_t)qty.length;
        data->n_levels[side]++;
        if (expect(r, ','))
            continue;
        if (expect(r, ']'))
            return 1;
        return 0;
    }
}

static int
read_depth_data(Reader *r, DepthData *data)
{
    if (!expect(r, '{'))
        return 0;
    if (expect(r, '}'))
        return 1;
    do {
        Span key;
        int status = 1, field = 0;
        if (!read_plain_string(r, &key) || !expect(r, ':'))
            return 0;
        if (key.length == 1) {
            switch (key.text[0]) {
            case 'U': field = F_U; break;
            case 'u': field = F_u; break;
            case 'E': field = F_E; break;
            case 'T': field = F_T; break;
            case 'b': field = F_b; break;
            case 'a': field = F_a; break;
            case 's': field = F_s; break;
            }
        }
        if (field & data->seen)
            return 0; /* a repeated key: JSON keeps the last, the reader declines */
        data->seen |= field;
        switch (field) {
        case F_U: status = read_id(r, &data->ids[0]); break;
        case F_u: status = read_id(r, &data->ids[1]); break;
        case F_E: status = read_id(r, &data->ids[2]); break;
        case F_T: status = read_id(r, &data->ids[3]); break;
        case F_b: status = read_levels(r, data, 0); break;
        case F_a: status = read_levels(r, data, 1); break;
        case F_s: status = read_plain_string(r, &data->named); break;
        default: status = skip_simple_value(r);
        }
        if (status != 1)
            return status;
    } while (expect(r, ','));
    return expect(r, '}');
}

static int
read_depth_message(Reader *r, Span *stream, DepthData *data)
{
    int seen_stream = 0, seen_data = 0;
    if (!expect(r, '{'))
        return 0;
    if (expect(r, '}'))
        return 0;
    do {
        Span key;
        int status;
        if (!read_plain_string(r, &key) || !expect(r, ':'))
            return 0;
        if (key.length == 6 && memcmp(key.text, "stream", 6) == 0) {
            if (seen_stream++)
                return 0;
            status = read_plain_string(r, stream);
        }
        else if (key.length == 4 && memcmp(key.text, "data", 4) == 0) {
            if (seen_data++)
                return 0;
            status = read_depth_data(r, data);
        }
        else {
            status = skip_simple_value(r);
        }
        if (status != 1)
            return status;
    } while (expect(r, ','));
    if (!expect(r, '}') || peek(r) != -1)
        return 0;
    return seen_stream && seen_data;
}

/* "depth.<symbol>" or "depth.<N>ms.<symbol>": split by the known prefix,
 * never on the last dot (symbols can contain dots); the rule of
 * orderbook.protocol.streams.parse_stream.  0 when not a depth stream. */
static int
depth_symbol(Span stream, Span *symbol)
{
    if (stream.length < 7 || memcmp(stream.text, "depth.", 6) != 0)
        return 0;
    *symbol = (Span){stream.text + 6, stream.length - 6};
    static const char *windows[] = {"200ms.", "600ms.", "1000ms."};
    for (int i = 0; i < 3; i++) {
        Py_ssize_t n = (Py_ssize_t)strlen(windows[i]);
        if (symbol->length >= n && memcmp(symbol->text, windows[i], n) == 0) {
            symbol->text += n;
            symbol->length -= n;
            break;
        }
    }
    return symbol->length > 0;
}

static PyObject *
depth_frame(PyObject *module, PyObject *raw)
{
    Reader reader;
    if (PyBytes_CheckExact(raw)) {
        reader.at = (const unsigned char *)PyBytes_AS_STRING(raw);
        reader.end = reader.at + PyBytes_GET_SIZE(raw);
    }
    else if (PyUnicode_CheckExact(raw) && PyUnicode_IS_ASCII(raw)) {
        reader.at = (const unsigned char *)PyUnicode_DATA(raw);
        reader.end = reader.at + PyUnicode_GET_LENGTH(raw);
    }
    else {
        Py_RETURN_NONE;
    }
    if (reader.end - reader.at > UINT32_MAX)
        Py_RETURN_NONE;
    reader.start = reader.at;
    ParsedLevel stack[32];
    DepthData data = {{0, 0, 0, 0}, {NULL, 0}, 0, {0, 0}, {0, 0}, NULL, 0, 0, 0};
    Span stream = {NULL, 0}, symbol;
    PyObject *result = NULL;
    /* most frames hold a few levels: parse into a stack buffer first */
    data.levels = stack;
    data.cap = 32;
    int status = read_depth_message(&reader, &stream, &data);
    if (status < 0)
        goto done;
    if (status == 0 || (data.seen & F_ALL) != F_ALL || data.ids[0] > data.ids[1] ||
        !depth_symbol(stream, &symbol))
        goto decline;
    if ((data.seen & F_s) && (data.named.length != symbol.length ||
                              memcmp(data.named.text, symbol.text, symbol.length) != 0))
        goto decline;

    DepthEventObject *ev = PyObject_GC_NewVar(DepthEventObject, &DepthEventType, data.count);
    if (ev == NULL)
        goto done;
    ev->symbol = ev->first_id = ev->last_id = ev->event_time = ev->engine_time = NULL;
    ev->bids = ev->asks = NULL;
    ev->raw = Py_NewRef(raw);
    ev->n_bids = data.n_levels[0];
    ev->parsed = 1;
    /* bids first, then asks, whatever their order in the text */
    memcpy(ev->levels, data.levels + data.at[0], data.n_levels[0] * sizeof(ParsedLevel));
    memcpy(ev->levels + data.n_levels[0], data.levels + data.at[1],
           data.n_levels[1] * sizeof(ParsedLevel));
    PyObject_GC_Track(ev);
    if (!(ev->symbol = symbol_string(symbol)) ||
        !(ev->first_id = PyLong_FromLongLong(data.ids[0])) ||
        !(ev->last_id = PyLong_FromLongLong(data.ids[1])) ||
        !(ev->event_time = PyLong_FromLongLong(data.ids[2])) ||
        !(ev->engine_time = PyLong_FromLongLong(data.ids[3]))) {
        Py_DECREF(ev);
        goto done;
    }
    result = (PyObject *)ev;
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    if (data.heap)
        PyMem_Free(data.levels);
    return result;
}

/* --------------------------------------------------------------- Ladder */

/* Levels are kept best first in chunks of at most CHUNK_MAX, each chunk a
 * sorted array of keys and a parallel array of slots; `maxes` holds each
 * chunk's last key, so finding a key is a binary search over the chunks and
 * one inside a chunk: O(log n), with inserts and deletes moving at most one
 * chunk's entries.  Keys are sign * price * 10**scale (bids negated), so
 * ascending keys are best first on both sides. */
#define CHUNK_MAX 64

typedef struct {
    uint64_t qty_lo;   /* quantity digits, as two halves (keeps the slot small) */
    int64_t qty_hi;
    PyObject *price;   /* the cached Decimal price, or NULL */
    PyObject *level;   /* the cached (price, qty) tuple, or NULL */
    uint8_t qty_dec;   /* quantity decimals */
} Slot;

typedef struct {
    int n;
    i128 keys[CHUNK_MAX];
    Slot slots[CHUNK_MAX];
} Chunk;

typedef struct {
    PyObject_HEAD
    int sign;            /* -1: bids, +1: asks */
    int scale;           /* decimals of the keys */
    Py_ssize_t len;      /* levels held */
    Py_ssize_t count;    /* chunks in use */
    Py_ssize_t cap;      /* chunks allocated in `chunks` / `maxes` */
    Chunk **chunks;
    i128 *maxes;
    uint64_t version;    /* bumped by every change (iterators check it) */
} LadderObject;

static PyTypeObject LadderType;

static inline i128
slot_qty(const Slot *s)
{
    return ((i128)s->qty_hi << 64) | (i128)s->qty_lo;
}

static inline void
slot_set_qty(Slot *s, i128 qty, int decimals)
{
    s->qty_lo = (uint64_t)qty;
    s->qty_hi = (int64_t)(qty >> 64);
    s->qty_dec = (uint8_t)decimals;
}

static void
slot_release(Slot *s)
{
    Py_CLEAR(s->price);
    Py_CLEAR(s->level);
}

static void
ladder_release_all(LadderObject *lad)
{
    for (Py_ssize_t c = 0; c < lad->count; c++) {
        Chunk *chunk = lad->chunks[c];
        for (int i = 0; i < chunk->n; i++)
            slot_release(&chunk->slots[i]);
        PyMem_Free(chunk);
    }
    lad->count = 0;
    lad->len = 0;
    lad->version++;
}

/* Room for one more chunk pointer.  0, or -1 with MemoryError. */
static int
ladder_reserve(LadderObject *lad, Py_ssize_t chunks)
{
    if (chunks <= lad->cap)
        return 0;
    Py_ssize_t cap = lad->cap ? lad->cap : 4;
    while (cap < chunks)
        cap *= 2;
    Chunk **grown = PyMem_Realloc(lad->chunks, cap * sizeof(Chunk *));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    lad->chunks = grown;
    i128 *maxes = PyMem_Realloc(lad->maxes, cap * sizeof(i128));
    if (maxes == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    lad->maxes = maxes;
    lad->cap = cap;
    return 0;
}

static Chunk *
chunk_new(void)
{
    Chunk *chunk = PyMem_Malloc(sizeof(Chunk));
    if (chunk == NULL)
        PyErr_NoMemory();
    else
        chunk->n = 0;
    return chunk;
}

/* The chunk that holds `key` or where it belongs: the first whose max is
 * >= key (the last chunk when key is beyond every max). */
static inline Py_ssize_t
find_chunk(LadderObject *lad, i128 key)
{
    Py_ssize_t lo = 0, hi = lad->count - 1;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (lad->maxes[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First index in the chunk whose key is >= key. */
static inline int
find_in_chunk(const Chunk *chunk, i128 key)
{
    int lo = 0, hi = chunk->n;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (chunk->keys[mid] < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Insert a new level at (c, i).  0, or -1 with MemoryError (nothing changed). */
static int
chunk_insert(LadderObject *lad, Py_ssize_t c, int i, i128 key, i128 qty, int qty_dec)
{
    Chunk *chunk = lad->chunks[c];
    if (chunk->n == CHUNK_MAX) { /* split in halves first */
        if (ladder_reserve(lad, lad->count + 1) < 0)
            return -1;
        Chunk *right = chunk_new();
        if (right == NULL)
            return -1;
        int half = CHUNK_MAX / 2;
        right->n = CHUNK_MAX - half;
        memcpy(right->keys, chunk->keys + half, right->n * sizeof(i128));
        memcpy(right->slots, chunk->slots + half, right->n * sizeof(Slot));
        chunk->n = half;
        memmove(lad->chunks + c + 2, lad->chunks + c + 1, (lad->count - c - 1) * sizeof(Chunk *));
        memmove(lad->maxes + c + 2, lad->maxes + c + 1, (lad->count - c - 1) * sizeof(i128));
        lad->chunks[c + 1] = right;
        lad->maxes[c] = chunk->keys[half - 1];
        lad->maxes[c + 1] = right->keys[right->n - 1];
        lad->count++;
        if (i > half) {
            c++;
            i -= half;
            chunk = right;
        }
    }
    memmove(chunk->keys + i + 1, chunk->keys + i, (chunk->n - i) * sizeof(i128));
    memmove(chunk->slots + i + 1, chunk->slots + i, (chunk->n - i) * sizeof(Slot));
    chunk->keys[i] = key;
    Slot *slot = &chunk->slots[i];
    slot->price = slot->level = NULL;
    slot_set_qty(slot, qty, qty_dec);
    chunk->n++;
    if (i == chunk->n - 1)
        lad->maxes[c] = key;
    lad->len++;
    return 0;
}

static void
chunk_delete(LadderObject *lad, Py_ssize_t c, int i)
{
    Chunk *chunk = lad->chunks[c];
    slot_release(&chunk->slots[i]);
    memmove(chunk->keys + i, chunk->keys + i + 1, (chunk->n - i - 1) * sizeof(i128));
    memmove(chunk->slots + i, chunk->slots + i + 1, (chunk->n - i - 1) * sizeof(Slot));
    chunk->n--;
    lad->len--;
    if (chunk->n == 0) {
        PyMem_Free(chunk);
        memmove(lad->chunks + c, lad->chunks + c + 1, (lad->count - c - 1) * sizeof(Chunk *));
        memmove(lad->maxes + c, lad->maxes + c + 1, (lad->count - c - 1) * sizeof(i128));
        lad->count--;
    }
    else if (i == chunk->n) {
        lad->maxes[c] = chunk->keys[chunk->n - 1];
    }
}

/* Set the quantity of `key` (0 deletes).  0, or -1 with MemoryError (then
 * nothing changed). */
static int
ladder_set(LadderObject *lad, i128 key, i128 qty, int qty_dec)
{
    if (lad->count == 0) {
        if (qty == 0)
            return 0;
        if (ladder_reserve(lad, 1) < 0)
            return -1;
        Chunk *chunk = chunk_new();
        if (chunk == NULL)
            return -1;
        lad->chunks[0] = chunk;
        lad->maxes[0] = key;
        lad->count = 1;
        return chunk_insert(lad, 0, 0, key, qty, qty_dec);
    }
    Py_ssize_t c = find_chunk(lad, key);
    Chunk *chunk = lad->chunks[c];
    int i = find_in_chunk(chunk, key);
    int present = i < chunk->n && chunk->keys[i] == key;
    if (qty == 0) {
        if (present)
            chunk_delete(lad, c, i);
        return 0;
    }
    if (present) {
        Slot *slot = &chunk->slots[i];
        Py_CLEAR(slot->level); /* the price stays: same key */
        slot_set_qty(slot, qty, qty_dec);
        return 0;
    }
    return chunk_insert(lad, c, i, key, qty, qty_dec);
}

/* The (price, qty) tuple of a slot: a new reference.  With `remember` (the
 * best REMEMBERED_DEPTH levels) the tuple and its Decimal price are kept in
 * the slot, the price across quantity changes; deeper levels are converted
 * afresh on every read, so reading a whole book does not grow it. */
static PyObject *
slot_level(LadderObject *lad, i128 key, Slot *slot, int remember)
{
    if (slot->level != NULL)
        return Py_NewRef(slot->level);
    PyObject *price = slot->price;
    if (price != NULL)
        Py_INCREF(price);
    else if (!(price = num_decimal(key * lad->sign, lad->scale)))
        return NULL;
    PyObject *qty = num_decimal(slot_qty(slot), slot->qty_dec);
    PyObject *level = qty ? PyTuple_Pack(2, price, qty) : NULL;
    Py_XDECREF(qty);
    if (level != NULL && remember) {
        slot->level = Py_NewRef(level);
        if (slot->price == NULL)
            slot->price = Py_NewRef(price);
    }
    Py_DECREF(price);
    return level;
}

static PyObject *
ladder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"sign", NULL};
    int sign;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i:Ladder", names, &sign))
        return NULL;
    if (sign != 1 && sign != -1) {
        PyErr_SetString(usage_error ? usage_error : PyExc_ValueError,
                        "sign must be -1 (bids) or +1 (asks)");
        return NULL;
    }
    LadderObject *lad = (LadderObject *)type->tp_alloc(type, 0);
    if (lad == NULL)
        return NULL;
    lad->sign = sign;
    lad->scale = 0;
    lad->len = lad->count = lad->cap = 0;
    lad->chunks = NULL;
    lad->maxes = NULL;
    lad->version = 0;
    return (PyObject *)lad;
}

static void
ladder_dealloc(LadderObject *lad)
{
    ladder_release_all(lad);
    PyMem_Free(lad->chunks);
    PyMem_Free(lad->maxes);
    Py_TYPE(lad)->tp_free((PyObject *)lad);
}

static Py_ssize_t
ladder_length(LadderObject *lad)
{
    return lad->len;
}

/* Multiply every key by 10**(decimals - scale).  Prices stay. */
static void
ladder_rescale(LadderObject *lad, int decimals)
{
    if (decimals <= lad->scale)
        return;
    i128 factor = pow10_table[decimals - lad->scale];
    for (Py_ssize_t c = 0; c < lad->count; c++) {
        Chunk *chunk = lad->chunks[c];
        for (int i = 0; i < chunk->n; i++) {
            chunk->keys[i] *= factor;
            Slot *slot = &chunk->slots[i];
            Py_CLEAR(slot->price); /* spelled at the old scale */
            Py_CLEAR(slot->level);
        }
        lad->maxes[c] *= factor;
    }
    lad->scale = decimals;
    lad->version++;
}

static PyObject *
ladder_set_scale(LadderObject *lad, PyObject *arg)
{
    int decimals = _PyLong_AsInt(arg);
    if (decimals == -1 && PyErr_Occurred())
        return NULL;
    if (decimals < lad->scale || decimals > max_decimals) {
        PyErr_Format(usage_error, "a scale can only grow, up to %d; got %d at %d", max_decimals,
                     decimals, lad->scale);
        return NULL;
    }
    ladder_rescale(lad, decimals);
    Py_RETURN_NONE;
}

static PyObject *
ladder_clear_method(LadderObject *lad, PyObject *unused)
{
    ladder_release_all(lad);
    lad->scale = 0;
    Py_RETURN_NONE;
}

/* Ladder.load(levels, scale): replace everything with validated (price,
 * qty) string pairs, best first; zero quantities are skipped. */
static PyObject *
ladder_load(LadderObject *lad, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "load(levels, scale)");
        return NULL;
    }
    int scale = _PyLong_AsInt(args[1]);
    if (scale == -1 && PyErr_Occurred())
        return NULL;
    if (scale < 0 || scale > max_decimals) {
        PyErr_Format(usage_error, "scale must be in 0..%d, got %d", max_decimals, scale);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(args[0], "levels must be a sequence of (price, qty) pairs");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    /* parse everything first: a bad input changes nothing */
    i128 *keys = PyMem_Malloc((n ? n : 1) * sizeof(i128));
    Num *qtys = PyMem_Malloc((n ? n : 1) * sizeof(Num));
    Py_ssize_t kept = 0;
    if (keys == NULL || qtys == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, i);
        Num p, q;
        if (!PyTuple_Check(pair) && !PyList_Check(pair))
            goto bad;
        if (PySequence_Fast_GET_SIZE(pair) != 2)
            goto bad;
        if (!parse_num_object(PySequence_Fast_GET_ITEM(pair, 0), &p) || p.digits == 0 ||
            p.decimals > scale || !parse_num_object(PySequence_Fast_GET_ITEM(pair, 1), &q))
            goto bad;
        if (q.digits == 0)
            continue;
        i128 key = lad->sign * p.digits * pow10_table[scale - p.decimals];
        if (kept && key <= keys[kept - 1]) {
            PyErr_SetString(usage_error, "Ladder.load needs distinct levels, best first");
            goto fail;
        }
        keys[kept] = key;
        qtys[kept] = q;
        kept++;
    }
    ladder_release_all(lad);
    lad->scale = scale;
    Py_ssize_t chunks = (kept + CHUNK_MAX / 2 - 1) / (CHUNK_MAX / 2);
    if (ladder_reserve(lad, chunks) < 0)
        goto fail;
    for (Py_ssize_t i = 0; i < kept; i++) {
        if (i % (CHUNK_MAX / 2) == 0) { /* half-full chunks leave room to insert */
            Chunk *chunk = chunk_new();
            if (chunk == NULL)
                goto fail;
            lad->chunks[lad->count++] = chunk;
        }
        Chunk *chunk = lad->chunks[lad->count - 1];
        chunk->keys[chunk->n] = keys[i];
        Slot *slot = &chunk->slots[chunk->n];
        slot->price = slot->level = NULL;
        slot_set_qty(slot, qtys[i].digits, qtys[i].decimals);
        chunk->n++;
        lad->maxes[lad->count - 1] = keys[i];
        lad->len++;
    }
    PyMem_Free(keys);
    PyMem_Free(qtys);
    Py_DECREF(seq);
    Py_RETURN_NONE;
bad:
    PyErr_Format(usage_error, "Ladder.load needs validated (price, qty) strings at scale %d", scale);
fail:
    PyMem_Free(keys);
    PyMem_Free(qtys);
    Py_DECREF(seq);
    return NULL;
}

static PyObject *
ladder_get_best(LadderObject *lad, void *closure)
{
    if (lad->len == 0)
        Py_RETURN_NONE;
    Chunk *chunk = lad->chunks[0];
    return slot_level(lad, chunk->keys[0], &chunk->slots[0], 1);
}

static PyObject *
ladder_get_best_key(LadderObject *lad, void *closure)
{
    if (lad->len == 0)
        Py_RETURN_NONE;
    return i128_to_long(lad->chunks[0]->keys[0]);
}

static PyObject *
ladder_get_scale(LadderObject *lad, void *closure)
{
    return PyLong_FromLong(lad->scale);
}

static PyObject *
ladder_get_sign(LadderObject *lad, void *closure)
{
    return PyLong_FromLong(lad->sign);
}

/* Ladder.view(n): the best n levels (all for None) as (Decimal, Decimal). */
static PyObject *
ladder_view(LadderObject *lad, PyObject *arg)
{
    Py_ssize_t wanted = lad->len;
    if (arg != Py_None) {
        wanted = PyLong_AsSsize_t(arg);
        if (wanted == -1 && PyErr_Occurred())
            return NULL;
        if (wanted < 0) {
            PyErr_SetString(usage_error, "n must be >= 0");
            return NULL;
        }
        if (wanted > lad->len)
            wanted = lad->len;
    }
    PyObject *out = PyList_New(wanted);
    if (out == NULL)
        return NULL;
    Py_ssize_t rank = 0;
    for (Py_ssize_t c = 0; c < lad->count && rank < wanted; c++) {
        Chunk *chunk = lad->chunks[c];
        for (int i = 0; i < chunk->n && rank < wanted; i++, rank++) {
            PyObject *level = slot_level(lad, chunk->keys[i], &chunk->slots[i],
                                         rank < remembered_depth);
            if (level == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, rank, level);
        }
    }
    return out;
}

static PyObject *
ladder_keys(LadderObject *lad, PyObject *unused)
{
    PyObject *out = PyList_New(lad->len);
    if (out == NULL)
        return NULL;
    Py_ssize_t rank = 0;
    for (Py_ssize_t c = 0; c < lad->count; c++) {
        Chunk *chunk = lad->chunks[c];
        for (int i = 0; i < chunk->n; i++) {
            PyObject *key = i128_to_long(chunk->keys[i]);
            if (key == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, rank++, key);
        }
    }
    return out;
}

static PyObject *
ladder_price_of(LadderObject *lad, PyObject *arg)
{
    i128 key;
    int status = long_to_i128(arg, &key);
    if (status <= 0) {
        if (status == 0)
            PyErr_SetString(usage_error, "a key is an int of at most 38 digits");
        return NULL;
    }
    return num_decimal(key * lad->sign, lad->scale);
}

/* Ladder.cut_beyond(price): remove the levels worse than `price` (a plain
 * decimal string); return how many. */
static PyObject *
ladder_cut_beyond(LadderObject *lad, PyObject *arg)
{
    Num p;
    if (!parse_num_object(arg, &p)) {
        PyErr_SetString(usage_error, "cut_beyond needs a plain decimal price string within the bound");
        return NULL;
    }
    /* compare at the finer of the two scales */
    int scale = p.decimals > lad->scale ? p.decimals : lad->scale;
    i128 bound = lad->sign * p.digits * pow10_table[scale - p.decimals];
    i128 factor = pow10_table[scale - lad->scale];
    Py_ssize_t removed = 0;
    while (lad->count > 0) { /* the worst levels are at the end */
        Py_ssize_t c = lad->count - 1;
        Chunk *chunk = lad->chunks[c];
        if (chunk->keys[chunk->n - 1] * factor <= bound)
            break;
        chunk_delete(lad, c, chunk->n - 1);
        removed++;
    }
    if (removed)
        lad->version++;
    return PyLong_FromSsize_t(removed);
}

/* Ladder.check(name): raise IntegrityError unless every invariant holds. */
static PyObject *
ladder_check(LadderObject *lad, PyObject *name)
{
    Py_ssize_t total = 0;
    int have_previous = 0;
    i128 previous = 0;
    for (Py_ssize_t c = 0; c < lad->count; c++) {
        Chunk *chunk = lad->chunks[c];
        if (chunk->n < 1 || chunk->n > CHUNK_MAX)
            return PyErr_Format(integrity_error, "%U chunk %zd holds %d levels", name, c, chunk->n);
        if (lad->maxes[c] != chunk->keys[chunk->n - 1])
            return PyErr_Format(integrity_error, "%U chunk %zd: stale max", name, c);
        for (int i = 0; i < chunk->n; i++) {
            i128 key = chunk->keys[i];
            Slot *slot = &chunk->slots[i];
            if (have_previous && key <= previous)
                return PyErr_Format(integrity_error, "%U keys out of order", name);
            if (key * lad->sign <= 0)
                return PyErr_Format(integrity_error, "%U key of a price <= 0", name);
            if (slot_qty(slot) <= 0)
                return PyErr_Format(integrity_error, "%U level with quantity <= 0", name);
            previous = key;
            have_previous = 1;
            if (slot->price != NULL || slot->level != NULL) {
                PyObject *price = num_decimal(key * lad->sign, lad->scale);
                PyObject *qty = price ? num_decimal(slot_qty(slot), slot->qty_dec) : NULL;
                int ok = qty != NULL;
                if (ok && slot->price != NULL)
                    ok = PyObject_RichCompareBool(slot->price, price, Py_EQ) == 1;
                if (ok && slot->level != NULL) {
                    PyObject *expected = PyTuple_Pack(2, price, qty);
                    ok = expected && PyObject_RichCompareBool(slot->level, expected, Py_EQ) == 1;
                    Py_XDECREF(expected);
                }
                Py_XDECREF(price);
                Py_XDECREF(qty);
                if (PyErr_Occurred())
                    return NULL;
                if (!ok)
                    return PyErr_Format(integrity_error, "%U cached level does not match its key", name);
            }
        }
        total += chunk->n;
    }
    if (total != lad->len)
        return PyErr_Format(integrity_error, "%U holds %zd levels, counted %zd", name, total, lad->len);
    Py_RETURN_NONE;
}

/* ---- iteration: levels best first, converted on the way (the best
 * `remembered_depth` kept) */

typedef struct {
    PyObject_HEAD
    LadderObject *ladder;
    Py_ssize_t chunk, index, rank;
    uint64_t version;
} LadderIterObject;

static PyTypeObject LadderIterType;

static PyObject *
ladder_iter(LadderObject *lad)
{
    LadderIterObject *it = PyObject_New(LadderIterObject, &LadderIterType);
    if (it == NULL)
        return NULL;
    it->ladder = (LadderObject *)Py_NewRef(lad);
    it->chunk = it->index = it->rank = 0;
    it->version = lad->version;
    return (PyObject *)it;
}

static void
ladder_iter_dealloc(LadderIterObject *it)
{
    Py_XDECREF(it->ladder);
    PyObject_Free(it);
}

static PyObject *
ladder_iter_next(LadderIterObject *it)
{
    LadderObject *lad = it->ladder;
    if (it->version != lad->version) {
        PyErr_SetString(PyExc_RuntimeError, "the ladder changed during iteration");
        return NULL;
    }
    while (it->chunk < lad->count) {
        Chunk *chunk = lad->chunks[it->chunk];
        if (it->index < chunk->n) {
            Py_ssize_t i = it->index++;
            return slot_level(lad, chunk->keys[i], &chunk->slots[i], it->rank++ < remembered_depth);
        }
        it->chunk++;
        it->index = 0;
    }
    return NULL;
}

static PyTypeObject LadderIterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "orderbook._speedups.LadderIterator",
    .tp_basicsize = sizeof(LadderIterObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)ladder_iter_dealloc,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)ladder_iter_next,
};

static PyMethodDef ladder_methods[] = {
    {"load", (PyCFunction)(void (*)(void))ladder_load, METH_FASTCALL,
     "load(levels, scale): replace the content with validated (price, qty) pairs, best first. O(n)."},
    {"clear", (PyCFunction)ladder_clear_method, METH_NOARGS, "Remove every level. O(n)."},
    {"view", (PyCFunction)ladder_view, METH_O, "view(n): the best n levels (all for None). O(n)."},
    {"keys", (PyCFunction)ladder_keys, METH_NOARGS, "The fixed-point keys, best first. O(n)."},
    {"price_of", (PyCFunction)ladder_price_of, METH_O, "The exact price of a key. O(1)."},
    {"set_scale", (PyCFunction)ladder_set_scale, METH_O, "Re-key for more decimals. O(n)."},
    {"cut_beyond", (PyCFunction)ladder_cut_beyond, METH_O,
     "cut_beyond(price): remove the levels worse than price; return how many. O(k)."},
    {"check", (PyCFunction)ladder_check, METH_O, "check(name): raise IntegrityError on a broken invariant. O(n)."},
    {NULL},
};

static PyGetSetDef ladder_getset[] = {
    {"best", (getter)ladder_get_best, NULL, "The best level (price, qty), or None. O(1).", NULL},
    {"best_key", (getter)ladder_get_best_key, NULL, "The best level's key, or None. O(1).", NULL},
    {"scale", (getter)ladder_get_scale, NULL, "Decimals of the keys.", NULL},
    {"sign", (getter)ladder_get_sign, NULL, "-1 for bids, +1 for asks.", NULL},
    {NULL},
};

static PySequenceMethods ladder_as_sequence = {
    .sq_length = (lenfunc)ladder_length,
};

static PyTypeObject LadderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "orderbook._speedups.Ladder",
    .tp_doc = "One side of a book (the native twin of orderbook.core.ladder.Ladder).",
    .tp_basicsize = sizeof(LadderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = ladder_new,
    .tp_dealloc = (destructor)ladder_dealloc,
    .tp_as_sequence = &ladder_as_sequence,
    .tp_iter = (getiterfunc)ladder_iter,
    .tp_methods = ladder_methods,
    .tp_getset = ladder_getset,
};

/* ---------------------------------------------------------- apply_levels */

typedef struct {
    i128 price;   /* digits */
    i128 qty;     /* digits */
    int p_dec, q_dec;
} Change;

/* One side of a list-based event: validate every level into changes[].
 * Returns the count, or -1 with the MalformedMessage set. */
static Py_ssize_t
prepare_list(PyObject *raw, PyObject *symbol, Change *changes, Py_ssize_t room)
{
    PyObject *seq = PySequence_Fast(raw, "levels must be a list");
    if (seq == NULL) {
        PyErr_Clear();
        raise_level_error(E_SHAPE, raw, symbol);
        return -1;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > room) {
        Py_DECREF(seq);
        raise_level_error(E_SHAPE, raw, symbol);
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *level = PySequence_Fast_GET_ITEM(seq, i);
        if ((!PyList_CheckExact(level) && !PyTuple_CheckExact(level)) ||
            PySequence_Fast_GET_SIZE(level) != 2) {
            raise_level_error(E_SHAPE, raw, symbol);
            Py_DECREF(seq);
            return -1;
        }
        PyObject *price = PySequence_Fast_GET_ITEM(level, 0);
        PyObject *qty = PySequence_Fast_GET_ITEM(level, 1);
        Num p, q;
        if (!parse_num_object(price, &p)) {
            raise_level_error(E_PRICE_TEXT, price, symbol);
            Py_DECREF(seq);
            return -1;
        }
        if (p.digits == 0) {
            raise_level_error(E_PRICE_ZERO, price, symbol);
            Py_DECREF(seq);
            return -1;
        }
        if (!parse_num_object(qty, &q)) {
            raise_level_error(E_QTY_TEXT, qty, symbol);
            Py_DECREF(seq);
            return -1;
        }
        changes[i] = (Change){p.digits, q.digits, p.decimals, q.decimals};
    }
    Py_DECREF(seq);
    return n;
}

static Py_ssize_t
prepare_parsed(DepthEventObject *ev, Py_ssize_t from, Py_ssize_t to, Change *changes)
{
    for (Py_ssize_t i = from; i < to; i++) {
        ParsedLevel *lv = &ev->levels[i];
        changes[i - from] = (Change){lv->price, lv->qty, lv->p_dec, lv->q_dec};
    }
    return to - from;
}

static Py_ssize_t
side_length(PyObject *levels)
{
    if (PyList_CheckExact(levels))
        return PyList_GET_SIZE(levels);
    if (PyTuple_CheckExact(levels))
        return PyTuple_GET_SIZE(levels);
    Py_ssize_t n = PyObject_Length(levels);
    if (n < 0)
        PyErr_Clear();
    return n < 0 ? 0 : n;
}

/* Store one side's validated changes; 1 in *touched when one of them is at
 * or before the best key (or the side was empty).  0, or -1 on MemoryError. */
static int
apply_side(LadderObject *lad, Change *changes, Py_ssize_t n, int *touched)
{
    int empty = lad->len == 0;
    i128 best = empty ? 0 : lad->chunks[0]->keys[0];
    for (Py_ssize_t i = 0; i < n; i++) {
        Change *ch = &changes[i];
        i128 key = lad->sign * ch->price * pow10_table[lad->scale - ch->p_dec];
        if (empty || key <= best)
            *touched = 1;
        if (ladder_set(lad, key, ch->qty, ch->q_dec) < 0)
            return -1;
    }
    if (n)
        lad->version++;
    return 0;
}

/* apply_levels(bids, asks, event) -> bool: validate every level of the frame
 * first (raising MalformedMessage with the ladders unchanged), re-key both
 * ladders when a price has more decimals than their scale, then store every
 * change.  True when a best level may have changed. */
static PyObject *
apply_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyObject_TypeCheck(args[0], &LadderType) ||
        !PyObject_TypeCheck(args[1], &LadderType) || !PyObject_TypeCheck(args[2], &DepthEventType)) {
        PyErr_SetString(PyExc_TypeError, "apply_levels(bids: Ladder, asks: Ladder, event: DepthEvent)");
        return NULL;
    }
    LadderObject *bids = (LadderObject *)args[0], *asks = (LadderObject *)args[1];
    DepthEventObject *ev = (DepthEventObject *)args[2];
    Change stack[64];
    Change *changes = stack;
    Py_ssize_t nb, na, room;
    if (ev->parsed) {
        room = Py_SIZE(ev);
    }
    else {
        room = side_length(ev->bids) + side_length(ev->asks);
    }
    if (room > 64 && !(changes = PyMem_Malloc(room * sizeof(Change))))
        return PyErr_NoMemory();
    PyObject *result = NULL;
    if (ev->parsed) {
        nb = prepare_parsed(ev, 0, ev->n_bids, changes);
        na = prepare_parsed(ev, ev->n_bids, Py_SIZE(ev), changes + nb);
    }
    else {
        nb = prepare_list(ev->bids, ev->symbol, changes, room);
        if (nb < 0)
            goto done;
        na = prepare_list(ev->asks, ev->symbol, changes + nb, room - nb);
        if (na < 0)
            goto done;
    }
    int decimals = bids->scale > asks->scale ? bids->scale : asks->scale;
    for (Py_ssize_t i = 0; i < nb + na; i++)
        if (changes[i].p_dec > decimals)
            decimals = changes[i].p_dec;
    ladder_rescale(bids, decimals);
    ladder_rescale(asks, decimals);
    /* From here on only a MemoryError can stop the frame half way (the
     * caller then clears the book). */
    int touched = 0;
    if (apply_side(bids, changes, nb, &touched) < 0 ||
        apply_side(asks, changes + nb, na, &touched) < 0)
        goto done;
    result = Py_NewRef(touched ? Py_True : Py_False);
done:
    if (changes != stack)
        PyMem_Free(changes);
    return result;
}

static PyObject *
crossed(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyObject_TypeCheck(args[0], &LadderType) ||
        !PyObject_TypeCheck(args[1], &LadderType)) {
        PyErr_SetString(PyExc_TypeError, "crossed(bids: Ladder, asks: Ladder)");
        return NULL;
    }
    LadderObject *bids = (LadderObject *)args[0], *asks = (LadderObject *)args[1];
    if (bids->len == 0 || asks->len == 0)
        Py_RETURN_FALSE;
    /* -bid_key >= ask_key, compared at the finer scale */
    int scale = bids->scale > asks->scale ? bids->scale : asks->scale;
    i128 bid = -bids->chunks[0]->keys[0] * pow10_table[scale - bids->scale];
    i128 ask = asks->chunks[0]->keys[0] * pow10_table[scale - asks->scale];
    return PyBool_FromLong(bid >= ask);
}

/* ------------------------------------------------------------- ws_line */

/* ws_line(line: bytes) -> (ts, raw) | None: a version 2 capture line as our
 * writer makes it, {"ts":<digits>,"kind":"ws","raw":"<text>"} and an
 * optional newline, read without a JSON decoder.  The text may hold printable
 * ASCII and the escapes \" \\ \/ only; anything else (other escapes, non-ASCII,
 * control characters, other keys, key orders or spacing, a ts beyond
 * 2**63-1 or with a leading zero) declines (None): orjson decides.  When it
 * accepts, orjson.loads(line) is {"ts": ts, "kind": "ws", "raw": raw}. */
static PyObject *
ws_line(PyObject *module, PyObject *line)
{
    static const char head[] = "{\"ts\":";
    static const char middle[] = ",\"kind\":\"ws\",\"raw\":\"";
    if (!PyBytes_CheckExact(line))
        Py_RETURN_NONE;
    const unsigned char *at = (const unsigned char *)PyBytes_AS_STRING(line);
    const unsigned char *end = at + PyBytes_GET_SIZE(line);
    if (end - at < (Py_ssize_t)(sizeof head + sizeof middle) || memcmp(at, head, sizeof head - 1))
        Py_RETURN_NONE;
    at += sizeof head - 1;
    const unsigned char *digits = at;
    uint64_t ts = 0;
    while (at < end && *at >= '0' && *at <= '9') {
        if (at - digits >= 19)
            Py_RETURN_NONE;
        ts = ts * 10 + (uint64_t)(*at - '0');
        at++;
    }
    if (at == digits || (*digits == '0' && at - digits > 1) || ts > (uint64_t)INT64_MAX)
        Py_RETURN_NONE;
    if (end - at < (Py_ssize_t)sizeof middle - 1 || memcmp(at, middle, sizeof middle - 1))
        Py_RETURN_NONE;
    at += sizeof middle - 1;
    const unsigned char *text = at;
    Py_ssize_t length = 0;
    for (;;) {  /* validate the string and count its characters */
        if (at >= end)
            Py_RETURN_NONE;
        unsigned char c = *at;
        if (c == '"')
            break;
        if (c < 0x20 || c > 0x7e)
            Py_RETURN_NONE;
        if (c == '\\') {
            if (at + 1 >= end || (at[1] != '"' && at[1] != '\\' && at[1] != '/'))
                Py_RETURN_NONE;
            at++;
        }
        at++;
        length++;
    }
    const unsigned char *close = at;
    at++;
    if (at >= end || *at != '}')
        Py_RETURN_NONE;
    at++;
    if (at < end && *at == '\n')
        at++;
    if (at != end)
        Py_RETURN_NONE;
    PyObject *raw = PyUnicode_New(length, 127);
    if (raw == NULL)
        return NULL;
    unsigned char *out = PyUnicode_1BYTE_DATA(raw);
    for (const unsigned char *p = text; p < close; p++)
        *out++ = *p == '\\' ? *++p : *p;
    PyObject *stamp = PyLong_FromUnsignedLongLong(ts);
    if (stamp == NULL) {
        Py_DECREF(raw);
        return NULL;
    }
    PyObject *pair = PyTuple_New(2);
    if (pair == NULL) {
        Py_DECREF(raw);
        Py_DECREF(stamp);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, stamp);
    PyTuple_SET_ITEM(pair, 1, raw);
    return pair;
}

/* --------------------------------------------------------- write_levels */

/* value as 16 little-endian bytes (two's complement). */
static inline void
put_i128(unsigned char *at, i128 value)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(at, &value, 16);
#else
    for (int b = 0; b < 16; b++) {
        at[b] = (unsigned char)(value & 0xff);
        value >>= 8;
    }
#endif
}

/* The most quantity decimals among the best n levels of a side. */
static int
side_decimals(LadderObject *lad, Py_ssize_t n)
{
    int decimals = 0;
    Py_ssize_t rank = 0;
    for (Py_ssize_t c = 0; c < lad->count && rank < n; c++) {
        Chunk *chunk = lad->chunks[c];
        for (int i = 0; i < chunk->n && rank < n; i++, rank++)
            if (chunk->slots[i].qty_dec > decimals)
                decimals = chunk->slots[i].qty_dec;
    }
    return decimals;
}

/* The best n levels of one side into `at` (32 bytes each: the price at
 * price_scale, the quantity at qty_scale; both no less than needed).
 * Returns how many were written. */
static Py_ssize_t
write_side(LadderObject *lad, Py_ssize_t n, unsigned char *at, int price_scale, int qty_scale)
{
    i128 price_factor = lad->sign * pow10_table[price_scale - lad->scale];
    Py_ssize_t rank = 0;
    for (Py_ssize_t c = 0; c < lad->count && rank < n; c++) {
        Chunk *chunk = lad->chunks[c];
        for (int i = 0; i < chunk->n && rank < n; i++, rank++) {
            Slot *slot = &chunk->slots[i];
            put_i128(at + 32 * rank, chunk->keys[i] * price_factor);
            put_i128(at + 32 * rank + 16, slot_qty(slot) * pow10_table[qty_scale - slot->qty_dec]);
        }
    }
    return rank;
}

/* write_levels(bids, asks, n, out, offset, price_scale, qty_scale) ->
 * (bids, asks, price scale needed, quantity scale needed): the best n levels
 * of each side as fixed-point integers (price * 10**price_scale, quantity *
 * 10**qty_scale; 16 bytes little-endian each: the storage of Arrow
 * decimal128 values) into the writable buffer `out` from byte `offset`: n
 * bid (price, quantity) pairs, then n ask pairs, 64 * n bytes in all, zero
 * where a side has fewer levels.  When a scale given is below the one needed
 * nothing is written (the caller asks again with larger scales).  O(n). */
static PyObject *
write_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyObject_TypeCheck(args[0], &LadderType) ||
        !PyObject_TypeCheck(args[1], &LadderType)) {
        PyErr_SetString(PyExc_TypeError, "write_levels(bids: Ladder, asks: Ladder, n: int, "
                                         "out: buffer, offset: int, price_scale: int, qty_scale: int)");
        return NULL;
    }
    Py_ssize_t n = PyLong_AsSsize_t(args[2]);
    Py_ssize_t offset = PyLong_AsSsize_t(args[4]);
    int price_scale = _PyLong_AsInt(args[5]);
    int qty_scale = _PyLong_AsInt(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (n < 0 || offset < 0 || price_scale < 0 || qty_scale < 0 || price_scale > max_decimals ||
        qty_scale > max_decimals) {
        PyErr_Format(usage_error, "n and offset must be >= 0 and the scales in 0..%d", max_decimals);
        return NULL;
    }
    LadderObject *bids = (LadderObject *)args[0], *asks = (LadderObject *)args[1];
    int scale = bids->scale > asks->scale ? bids->scale : asks->scale;
    int decimals = side_decimals(bids, n);
    int ask_decimals = side_decimals(asks, n);
    if (ask_decimals > decimals)
        decimals = ask_decimals;
    Py_ssize_t nb = bids->len < n ? bids->len : n;
    Py_ssize_t na = asks->len < n ? asks->len : n;
    if (scale > price_scale || decimals > qty_scale)
        return Py_BuildValue("(nnii)", nb, na, scale, decimals);
    Py_buffer view;
    if (PyObject_GetBuffer(args[3], &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (n > (PY_SSIZE_T_MAX - offset) / 64 || offset + 64 * n > view.len) {
        PyBuffer_Release(&view);
        PyErr_SetString(usage_error, "out is too small for n levels per side from offset");
        return NULL;
    }
    unsigned char *row = (unsigned char *)view.buf + offset;
    memset(row, 0, 64 * n);
    write_side(bids, n, row, price_scale, qty_scale);
    write_side(asks, n, row + 32 * n, price_scale, qty_scale);
    PyBuffer_Release(&view);
    return Py_BuildValue("(nnii)", nb, na, scale, decimals);
}

/* ---------------------------------------------------------------- module */

static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError,
                        "configure(decimal, level_error, usage_error, integrity_error, "
                        "max_integer_digits, max_decimals, remembered_depth)");
        return NULL;
    }
    int integer_digits = _PyLong_AsInt(args[4]);
    int decimals = _PyLong_AsInt(args[5]);
    Py_ssize_t depth = PyLong_AsSsize_t(args[6]);
    if (PyErr_Occurred())
        return NULL;
    if (integer_digits < 1 || decimals < 0 || integer_digits + decimals > 38 || depth < 0) {
        PyErr_SetString(PyExc_ValueError, "the value bound must keep keys below 10**38");
        return NULL;
    }
    Py_XSETREF(decimal_type, Py_NewRef(args[0]));
    Py_XSETREF(level_error, Py_NewRef(args[1]));
    Py_XSETREF(usage_error, Py_NewRef(args[2]));
    Py_XSETREF(integrity_error, Py_NewRef(args[3]));
    max_integer_digits = integer_digits;
    max_decimals = decimals;
    remembered_depth = depth;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ fold_levels */

/* The key of a plain decimal string's value: without leading zeros and
 * without trailing zeros after the point (Python's value_key, in
 * orderbook/protocol/decimals.py).  A new reference; the string itself when
 * it is already in that form (the common case: no allocation). */
static PyObject *
value_key(PyObject *text)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        PyErr_Format(PyExc_TypeError, "a price must be an ASCII str, got %R", text);
        return NULL;
    }
    const char *s = (const char *)PyUnicode_DATA(text);
    Py_ssize_t start = 0, end = PyUnicode_GET_LENGTH(text);
    if (memchr(s, '.', (size_t)end) != NULL) {
        while (end > 0 && s[end - 1] == '0')
            end--;
        if (end > 0 && s[end - 1] == '.')
            end--;
    }
    while (start < end && s[start] == '0')
        start++;
    if (start == 0 && end == PyUnicode_GET_LENGTH(text))
        return Py_NewRef(text);
    return PyUnicode_FromStringAndSize(s + start, end - start);
}

/* The two items of a [price, quantity] list or tuple, borrowed; -1 with
 * ValueError for anything else. */
static int
level_pair(PyObject *pair, PyObject **price, PyObject **qty)
{
    if (PyList_CheckExact(pair) && PyList_GET_SIZE(pair) == 2) {
        *price = PyList_GET_ITEM(pair, 0);
        *qty = PyList_GET_ITEM(pair, 1);
    } else if (PyTuple_CheckExact(pair) && PyTuple_GET_SIZE(pair) == 2) {
        *price = PyTuple_GET_ITEM(pair, 0);
        *qty = PyTuple_GET_ITEM(pair, 1);
    } else {
        PyErr_Format(PyExc_ValueError, "a level must be a [price, quantity] pair, got %R", pair);
        return -1;
    }
    return 0;
}

/* into[value_key(price)] = (price, qty) for each [price, qty] of the
 * sequence levels, in order.  0, or -1 with an exception set. */
static int
fold_into(PyObject *into, PyObject *levels_obj)
{
    PyObject *levels = PySequence_Fast(levels_obj, "levels must be a sequence");
    if (levels == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(levels);
    PyObject **items = PySequence_Fast_ITEMS(levels);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = items[i];
        PyObject *price, *qty;
        if (level_pair(pair, &price, &qty) < 0) {
            Py_DECREF(levels);
            return -1;
        }
        PyObject *key = value_key(price);
        if (key == NULL) {
            Py_DECREF(levels);
            return -1;
        }
        PyObject *value = PyTuple_Pack(2, price, qty);
        int failed = value == NULL || PyDict_SetItem(into, key, value) < 0;
        Py_DECREF(key);
        Py_XDECREF(value);
        if (failed) {
            Py_DECREF(levels);
            return -1;
        }
    }
    Py_DECREF(levels);
    return 0;
}

/* fold_frames(bids, asks, frames): for each frame, in order, and each
 * [price, qty] of its bids (asks), bids[value_key(price)] = (price, qty)
 * (asks[...]).  The twin of
 * _py_fold_frames in orderbook/sync/updates.py.  O(levels), no Python call
 * per frame (a DepthEvent of this module is read directly; its level lists
 * are built once and kept, as its .bids / .asks do). */
static PyObject *
fold_frames(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyDict_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "fold_frames(bids: dict, asks: dict, frames)");
        return NULL;
    }
    PyObject *frames = PySequence_Fast(args[2], "frames must be a sequence");
    if (frames == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(frames);
    PyObject **items = PySequence_Fast_ITEMS(frames);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *frame = items[i];
        PyObject *bids, *asks;
        if (Py_IS_TYPE(frame, &DepthEventType)) {
            bids = event_get_bids((DepthEventObject *)frame, NULL);
            asks = bids ? event_get_asks((DepthEventObject *)frame, NULL) : NULL;
        } else {
            bids = PyObject_GetAttrString(frame, "bids");
            asks = bids ? PyObject_GetAttrString(frame, "asks") : NULL;
        }
        int failed = asks == NULL || fold_into(args[0], bids) < 0 || fold_into(args[1], asks) < 0;
        Py_XDECREF(bids);
        Py_XDECREF(asks);
        if (failed) {
            Py_DECREF(frames);
            return NULL;
        }
    }
    Py_DECREF(frames);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ wire_raw_levels */

/* Whether a plain decimal string is already spelled as decimal_str(Decimal(s))
 * would spell it: no '.' first or last, no leading zero but a lone "0" before
 * the point (Python's wire_decimal, in orderbook/sinks/messages.py). */
static int
canonical_spelling(const char *s, Py_ssize_t n)
{
    return n > 0 && s[0] != '.' && s[n - 1] != '.' && !(s[0] == '0' && n > 1 && s[1] != '.');
}

/* A published spelling: the string itself when canonical (a new reference,
 * no allocation), else slow(text).  NULL with TypeError for what is not an
 * ASCII str. */
static PyObject *
wire_spelling(PyObject *text, PyObject *slow)
{
    if (!PyUnicode_Check(text) || !PyUnicode_IS_ASCII(text)) {
        PyErr_Format(PyExc_TypeError, "a level must hold ASCII strings, got %R", text);
        return NULL;
    }
    const char *s = (const char *)PyUnicode_DATA(text);
    if (canonical_spelling(s, PyUnicode_GET_LENGTH(text)))
        return Py_NewRef(text);
    return PyObject_CallOneArg(slow, text);
}

/* Whether a decimal string's value is zero: only '0' and '.' in it. */
static int
zero_spelling(PyObject *text)
{
    const char *s = (const char *)PyUnicode_DATA(text);
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    for (Py_ssize_t i = 0; i < n; i++)
        if (s[i] != '0' && s[i] != '.')
            return 0;
    return 1;
}

static PyObject *zero_text = NULL; /* "0" */

/* wire_raw_levels(levels, slow) -> tuple of (price, qty): each level of the
 * iterable as published (the twin of _py_wire_raw_levels in
 * orderbook/sinks/messages.py): a canonical spelling kept as it is, another
 * one given to slow(text), a zero quantity as "0".  An input tuple whose
 * strings are kept is reused: O(levels), no allocation but the result for
 * canonical input. */
static PyObject *
wire_raw_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "wire_raw_levels(levels, slow)");
        return NULL;
    }
    PyObject *slow = args[1];
    PyObject *levels = PySequence_List(args[0]);
    if (levels == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(levels);
    PyObject *out = PyTuple_New(n);
    if (out == NULL) {
        Py_DECREF(levels);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *pair = PyList_GET_ITEM(levels, i);
        PyObject *price, *qty;
        if (level_pair(pair, &price, &qty) < 0)
            goto fail;
        PyObject *wire_price = wire_spelling(price, slow);
        if (wire_price == NULL)
            goto fail;
        PyObject *wire_qty;
        if (!PyUnicode_Check(qty) || !PyUnicode_IS_ASCII(qty))
            wire_qty = wire_spelling(qty, slow); /* raises the TypeError */
        else if (zero_spelling(qty))  /* "0" itself is kept: no new tuple for it */
            wire_qty = Py_NewRef(PyUnicode_GET_LENGTH(qty) == 1 && PyUnicode_READ_CHAR(qty, 0) == '0'
                                     ? qty : zero_text);
        else
            wire_qty = wire_spelling(qty, slow);
        if (wire_qty == NULL) {
            Py_DECREF(wire_price);
            goto fail;
        }
        if (PyTuple_CheckExact(pair) && wire_price == price && wire_qty == qty) {
            Py_DECREF(wire_price);
            Py_DECREF(wire_qty);
            PyTuple_SET_ITEM(out, i, Py_NewRef(pair));
        } else {
            PyObject *level = PyTuple_New(2);
            if (level == NULL) {
                Py_DECREF(wire_price);
                Py_DECREF(wire_qty);
                goto fail;
            }
            PyTuple_SET_ITEM(level, 0, wire_price);
            PyTuple_SET_ITEM(level, 1, wire_qty);
            PyTuple_SET_ITEM(out, i, level);
        }
    }
    Py_DECREF(levels);
    return out;
fail:
    Py_DECREF(levels);
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "Set the Python objects and tuning constants the module uses (called once at import)."},
    {"depth_frame", (PyCFunction)depth_frame, METH_O,
     "depth_frame(raw) -> DepthEvent for a depth frame in the venue's plain form, else None."},
    {"apply_levels", (PyCFunction)(void (*)(void))apply_levels, METH_FASTCALL,
     "apply_levels(bids, asks, event) -> bool: validate, then apply a frame's levels."},
    {"crossed", (PyCFunction)(void (*)(void))crossed, METH_FASTCALL,
     "crossed(bids, asks) -> bool: best bid >= best ask."},
    {"ws_line", (PyCFunction)ws_line, METH_O,
     "ws_line(line) -> (ts, raw) for a version 2 capture ws line as written here, else None."},
    {"fold_frames", (PyCFunction)(void (*)(void))fold_frames, METH_FASTCALL,
     "fold_frames(bids, asks, frames): fold_levels of every frame's two sides, in order."},
    {"wire_raw_levels", (PyCFunction)(void (*)(void))wire_raw_levels, METH_FASTCALL,
     "wire_raw_levels(levels, slow) -> tuple of (price, qty) strings as a sink publishes them."},
    {"write_levels", (PyCFunction)(void (*)(void))write_levels, METH_FASTCALL,
     "write_levels(bids, asks, n, out, offset, price_scale, qty_scale) -> (bids, asks, price "
     "scale needed, quantity scale needed): the best n levels of each side as 128-bit "
     "fixed-point integers into out."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    .m_base = PyModuleDef_HEAD_INIT,
    .m_name = "orderbook._speedups",
    .m_doc = "Native twins of the hot-path types (see orderbook/_native.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    init_string_bytes();
    init_pow10();
    zero_text = PyUnicode_InternFromString("0");
    if (zero_text == NULL)
        return NULL;
    if (PyType_Ready(&DepthEventType) < 0 || PyType_Ready(&LadderType) < 0 ||
        PyType_Ready(&LadderIterType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&speedups_module);
    if (module == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, "DepthEvent", (PyObject *)&DepthEventType) < 0 ||
        PyModule_AddObjectRef(module, "Ladder", (PyObject *)&LadderType) < 0 ||
        PyModule_AddIntConstant(module, "CHUNK_MAX", CHUNK_MAX) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
