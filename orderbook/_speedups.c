/*
 * orderbook._speedups: optional native versions of the hottest steps.
 *
 *   depth_frame(raw)      the JSON text of a depth frame -> DepthEvent, or None
 *   apply_delta(book, event)  OrderBook.apply_delta for a continuing frame -> bool, or None
 *   view(ladder, n)       Ladder.view -> list of level tuples, or None
 *
 * Contract (what makes this safe to have twice): each function handles only
 * the well-formed common case and returns None for anything else, having
 * changed nothing that matters; the caller then runs the pure-Python code,
 * which is the reference and the only place errors are raised.  So a frame
 * either gets exactly the result the pure-Python path would give, or goes
 * down that path.  tests/test_speedups.py checks this against the Python
 * implementation on random and malformed inputs; setting the environment
 * variable ORDERBOOK_PURE_PYTHON=1 disables this module.
 *
 * The only side effects of a declined call are true facts the Python code
 * would record too: entries in a ladder's price -> key cache (apply_delta)
 * and levels converted to their (price, qty) tuples (view).
 *
 * Reference counting: every PyObject* below is either borrowed from a
 * container the caller keeps alive for the whole call (the raw text, the
 * level lists, the ladders) or owned and released before returning.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>
#include <structmember.h>

/* Set by orderbook.wire and orderbook.book when they are imported. */
static PyObject *depth_event_type = NULL;
/* Its fields, in constructor order, and an empty tuple. */
#define EVENT_FIELDS 7
static const char *event_field_names[EVENT_FIELDS] = {
    "symbol", "first_id", "last_id", "event_time", "engine_time", "bids", "asks"};
static PyObject *empty_tuple = NULL;
enum { E_SYMBOL, E_FIRST, E_LAST, E_EVENT_TIME, E_ENGINE_TIME, E_BIDS, E_ASKS };
static Py_ssize_t event_offsets[EVENT_FIELDS]; /* byte offsets of its slots */
static Py_ssize_t price_cache_limit = 65536;
static Py_ssize_t dead_slack = 256;

/* Interned method names. */
static PyObject *s_add, *s_refresh_best, *s_compact, *s_expand;
static PyObject *s_lists, *s_maxes, *s_index, *s_load, *s_len;

#define MAX_INT64_DIGITS 18 /* any 18-digit decimal fits an int64 */

/* The object slot at a byte offset (see configure()). */
#define SLOT(object, offsets, slot) (*(PyObject **)((char *)(object) + (offsets)[slot]))

/* Store `value` (a new reference, stolen) in an object slot. */
static void
set_slot(PyObject *object, Py_ssize_t offset, PyObject *value)
{
    PyObject **field = (PyObject **)((char *)object + offset);
    PyObject *old = *field;
    *field = value;
    Py_XDECREF(old);
}


/* ----------------------------------------------------------- depth_frame */

/* depth_frame() reads the raw JSON text of a depth frame directly, for the
 * one shape the venue sends:
 *
 *   {"stream":"depth.SYM","data":{"e":"depth","E":..,"s":"SYM",
 *    "a":[["price","qty"],...],"b":[...],"U":..,"u":..,"T":..}}
 *
 * in any key order and with any JSON whitespace.  It accepts a strict
 * subset of JSON: strings of printable ASCII without escapes, non-negative
 * integers of at most 18 digits, and for unknown keys such a string or
 * integer or true/false/null.  Anything else (escapes, non-ASCII, floats,
 * nested unknown values, a repeated known key, a missing field, U > u, an
 * "s" naming another symbol, trailing text) is declined, and the caller
 * decodes the frame with orjson and the Python code.  So whatever this
 * accepts is valid JSON that orjson + parse_message read the same way. */

typedef struct {
    const unsigned char *at;
    const unsigned char *end;
} Reader;

/* The next character after JSON whitespace, or -1 at the end (not consumed). */
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

/* Consume `c` (after whitespace); 1 if it was there, else 0. */
static inline int
expect(Reader *r, int c)
{
    if (peek(r) != c)
        return 0;
    r->at++;
    return 1;
}

typedef struct {
    const char *text;
    Py_ssize_t length;
} Span;

/* What a byte means inside a JSON string for read_plain_string: 0 an
 * ordinary character, 1 the closing quote, 2 decline (a control character,
 * an escape, or non-ASCII). */
static unsigned char string_byte[256];

static void
init_string_bytes(void)
{
    for (int c = 0; c < 256; c++)
        string_byte[c] = (c < 0x20 || c >= 0x80 || c == '\\') ? 2 : c == '"';
}

/* A string of printable ASCII without escapes: 1, or 0 to decline. */
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

/* A JSON integer >= 0 of at most 18 digits (no leading zero, not followed by
 * a fraction or exponent, which the caller's grammar check refuses). */
static int
read_json_uint(Reader *r, long long *value)
{
    const unsigned char *start = r->at, *p = start;
    long long v = 0;
    while (p < r->end && *p >= '0' && *p <= '9' && p - start < MAX_INT64_DIGITS + 1) {
        v = v * 10 + (*p - '0');
        p++;
    }
    Py_ssize_t digits = p - start;
    if (digits == 0 || digits > MAX_INT64_DIGITS || (digits > 1 && *start == '0'))
        return 0;
    r->at = p;
    *value = v;
    return 1;
}

/* An id or time: a JSON integer, or a string of 1-18 ASCII digits (leading
 * zeros allowed, as int() allows them). */
static int
read_id(Reader *r, long long *value)
{
    int c = peek(r);
    if (c >= '0' && c <= '9')
        return read_json_uint(r, value);
    Span text;
    if (c != '"' || !read_plain_string(r, &text))
        return 0;
    if (text.length < 1 || text.length > MAX_INT64_DIGITS)
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

/* The value of a key the reader does not use: a plain string, a small
 * integer, true, false or null. */
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

static PyObject *
ascii_string(Span text)
{
    PyObject *s = PyUnicode_New(text.length, 127);
    if (s != NULL)
        memcpy(PyUnicode_DATA(s), text.text, text.length);
    return s;
}

/* [["price","qty"], ...] -> a new list of [price, qty] lists, exactly what
 * orjson builds.  1 with *out set, 0 to decline, -1 on error. */
static int
read_levels(Reader *r, PyObject **out)
{
    if (!expect(r, '['))
        return 0;
    PyObject *levels = PyList_New(0);
    if (levels == NULL)
        return -1;
    if (expect(r, ']')) {
        *out = levels;
        return 1;
    }
    for (;;) {
        Span price, qty;
        if (!expect(r, '[') || !read_plain_string(r, &price) || !expect(r, ',') ||
            !read_plain_string(r, &qty) || !expect(r, ']'))
            goto decline;
        PyObject *pair = PyList_New(2);
        if (pair == NULL)
            goto error;
        PyObject *price_text = ascii_string(price), *qty_text = ascii_string(qty);
        PyList_SET_ITEM(pair, 0, price_text); /* a NULL item is fine for Py_DECREF */
        PyList_SET_ITEM(pair, 1, qty_text);
        int failed = price_text == NULL || qty_text == NULL || PyList_Append(levels, pair) < 0;
        Py_DECREF(pair);
        if (failed)
            goto error;
        if (expect(r, ','))
            continue;
        if (expect(r, ']'))
            break;
        goto decline;
    }
    *out = levels;
    return 1;
decline:
    Py_DECREF(levels);
    return 0;
error:
    Py_DECREF(levels);
    return -1;
}

/* The last symbol built, reused while frames name the same one. */
static PyObject *last_symbol = NULL;

static PyObject *
symbol_string(Span text)
{
    if (last_symbol != NULL && PyUnicode_GET_LENGTH(last_symbol) == text.length &&
        memcmp(PyUnicode_DATA(last_symbol), text.text, text.length) == 0)
        return Py_NewRef(last_symbol);
    PyObject *symbol = ascii_string(text);
    if (symbol != NULL)
        Py_XSETREF(last_symbol, Py_NewRef(symbol));
    return symbol;
}

enum { F_U = 1, F_u = 2, F_E = 4, F_T = 8, F_b = 16, F_a = 32, F_s = 64, F_ALL = 63 };

typedef struct {
    long long ids[4]; /* U, u, E, T */
    PyObject *bids, *asks;
    Span named;
    int seen;
} DepthData;

/* The "data" object.  1, 0 to decline, -1 on error (lists owned by *data). */
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
        case F_b: status = read_levels(r, &data->bids); break;
        case F_a: status = read_levels(r, &data->asks); break;
        case F_s: status = read_plain_string(r, &data->named); break;
        default: status = skip_simple_value(r);
        }
        if (status != 1)
            return status;
    } while (expect(r, ','));
    return expect(r, '}');
}

/* The whole message.  1, 0 to decline, -1 on error. */
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
        return 0; /* unclosed, or text after the object */
    return seen_stream && seen_data;
}

/* DepthEvent(*values) without running the dataclass __init__ (a Python
 * function): allocate through the class's own tp_new and store each field
 * in its slot, exactly what __init__ does. */
static PyObject *
new_event(PyObject **values)
{
    PyTypeObject *cls = (PyTypeObject *)depth_event_type;
    PyObject *event = cls->tp_new(cls, empty_tuple, NULL);
    if (event == NULL)
        return NULL;
    for (int i = 0; i < EVENT_FIELDS; i++)
        set_slot(event, event_offsets[i], Py_NewRef(values[i]));
    return event;
}

static PyObject *
depth_frame(PyObject *module, PyObject *raw)
{
    Reader reader;
    if (depth_event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "orderbook._speedups.set_event_type() was not called");
        return NULL;
    }
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

    Span stream = {NULL, 0};
    DepthData data = {{0, 0, 0, 0}, NULL, NULL, {NULL, 0}, 0};
    PyObject *values[EVENT_FIELDS] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    PyObject *result = NULL;
    int status = read_depth_message(&reader, &stream, &data);
    if (status < 0)
        goto done;
    if (status == 0 || (data.seen & F_ALL) != F_ALL || data.ids[0] > data.ids[1])
        goto decline;
    /* "depth.<symbol>" or "depth.<N>ms.<symbol>": split by the known
     * prefix, never on the last dot (symbols can contain dots); the same
     * rule as orderbook.protocol.streams.parse_stream */
    if (stream.length < 7 || memcmp(stream.text, "depth.", 6) != 0)
        goto decline;
    Span symbol = {stream.text + 6, stream.length - 6};
    static const char *windows[] = {"200ms.", "600ms.", "1000ms."};
    for (int i = 0; i < 3; i++) {
        Py_ssize_t n = (Py_ssize_t)strlen(windows[i]);
        if (symbol.length >= n && memcmp(symbol.text, windows[i], n) == 0) {
            symbol.text += n;
            symbol.length -= n;
            break;
        }
    }
    if (symbol.length == 0)
        goto decline;
    if ((data.seen & F_s) && (data.named.length != symbol.length ||
                              memcmp(data.named.text, symbol.text, symbol.length) != 0))
        goto decline;

    if (!(values[0] = symbol_string(symbol)))
        goto done;
    for (int i = 0; i < 4; i++)
        if (!(values[1 + i] = PyLong_FromLongLong(data.ids[i])))
            goto done;
    values[5] = data.bids;
    values[6] = data.asks;
    data.bids = data.asks = NULL; /* released through values[] */
    result = new_event(values);
    goto done;

decline:
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < EVENT_FIELDS; i++)
        Py_XDECREF(values[i]);
    Py_XDECREF(data.bids);
    Py_XDECREF(data.asks);
    return result;
}

/* ----------------------------------------------------------- apply_delta */

/* apply_delta(book, event) is OrderBook.apply_delta for the common case: a
 * synced book (a frame already applied on top of its snapshot), a frame for
 * the same symbol with U == last_update_id + 1, and levels that are all well
 * formed at the ladders' current scale with keys that fit an int64.  It
 * checks the whole frame first and declines (None) before changing anything
 * but the price caches; then it stores both sides, recomputes each touched
 * best level (in C when the frame itself shows the new best, else through
 * Ladder.refresh_best), compacts dead keys like Ladder.apply, and advances
 * the book.  It returns True/False exactly as the Python path would. */

/* The classes and the byte offsets of their slots, set by configure():
 * reading a slot is then one load instead of an attribute lookup. */
static PyTypeObject *ladder_type = NULL, *book_type = NULL, *key_list_type = NULL;
static PyObject *decimal_type = NULL;
enum { L_KEYS, L_LEVELS, L_PRICES, L_DEAD, L_SCALE, L_SIGN, L_BEST, L_BEST_KEY, L_TOUCH_PRICES, LADDER_SLOTS };
static const char *ladder_slot_names[LADDER_SLOTS] = {
    "keys", "levels", "prices", "dead", "scale", "sign", "best", "best_key", "touch_prices"};
static Py_ssize_t ladder_offsets[LADDER_SLOTS];
enum { B_SYMBOL, B_BIDS, B_ASKS, B_LAST, B_BRIDGED, B_TIMESTAMP, BOOK_SLOTS };
static const char *book_slot_names[BOOK_SLOTS] = {
    "symbol", "_bids", "_asks", "_last_update_id", "_bridged", "_timestamp"};
static Py_ssize_t book_offsets[BOOK_SLOTS];

typedef struct { /* one Ladder's fields, for one call */
    PyObject *ladder; /* the Ladder (borrowed from the book, kept alive by it) */
    PyObject *keys;   /* SortedList of int keys */
    PyObject *levels; /* dict key -> stored quantity */
    PyObject *prices; /* dict price string -> key */
    PyObject *dead;   /* set of dead keys (in keys, not in levels) */
    long scale;
    long sign;
    int has_best;
    long long best_key;
} Side;

typedef struct {
    PyObject *key; /* owned */
    PyObject *qty; /* borrowed from the frame; unused for a delete */
    long long value;
    int delete;
} Change;

/* What storing a side's changes did to its best level. */
enum {
    BEST_KEPT,    /* unchanged (no change at or before the best key) */
    BEST_KNOWN,   /* the best is change `best_change` (a new best, or a new quantity) */
    BEST_UNKNOWN, /* the best key was deleted or the side was empty: ask the sorted list */
};

/* An int (a key, an update id, a ladder's scale or sign) as an int64: 1
 * with *value set, 0 when it is not an exact int or does not fit, -1 on
 * error. */
static int
as_int64(PyObject *number, long long *value)
{
    int overflow = 0;
    if (!PyLong_CheckExact(number))
        return 0;
    *value = PyLong_AsLongLongAndOverflow(number, &overflow);
    if (*value == -1 && PyErr_Occurred())
        return -1;
    return !overflow;
}

/* Read a Ladder's fields (the four containers with new references, released
 * by side_release, so that nothing run meanwhile can free them).
 * Returns 1 when usable, 0 to decline, -1 on error. */
static int
side_load(PyObject *ladder, Side *side)
{
    if (Py_TYPE(ladder) != ladder_type)
        return 0;
    for (int i = 0; i < LADDER_SLOTS; i++)
        if (SLOT(ladder, ladder_offsets, i) == NULL)
            return 0; /* an unset slot */
    if (!PyDict_CheckExact(SLOT(ladder, ladder_offsets, L_LEVELS)) ||
        !PyDict_CheckExact(SLOT(ladder, ladder_offsets, L_PRICES)) ||
        !PyDict_CheckExact(SLOT(ladder, ladder_offsets, L_TOUCH_PRICES)) ||
        !PySet_CheckExact(SLOT(ladder, ladder_offsets, L_DEAD)))
        return 0;

    long long number;
    int usable = as_int64(SLOT(ladder, ladder_offsets, L_SCALE), &number);
    if (usable <= 0)
        return usable;
    if (number < 0 || number > MAX_INT64_DIGITS)
        return 0;
    side->scale = (long)number;
    if ((usable = as_int64(SLOT(ladder, ladder_offsets, L_SIGN), &number)) <= 0)
        return usable;
    if (number != 1 && number != -1)
        return 0;
    side->sign = (long)number;

    PyObject *value = SLOT(ladder, ladder_offsets, L_BEST_KEY);
    side->has_best = value != Py_None;
    if (side->has_best) {
        usable = as_int64(value, &side->best_key);
        if (usable <= 0)
            return usable;
    }
    side->ladder = ladder;
    side->keys = Py_NewRef(SLOT(ladder, ladder_offsets, L_KEYS));
    side->levels = Py_NewRef(SLOT(ladder, ladder_offsets, L_LEVELS));
    side->prices = Py_NewRef(SLOT(ladder, ladder_offsets, L_PRICES));
    side->dead = Py_NewRef(SLOT(ladder, ladder_offsets, L_DEAD));
    return 1;
}

static void
side_release(Side *side)
{
    Py_CLEAR(side->keys);
    Py_CLEAR(side->levels);
    Py_CLEAR(side->prices);
    Py_CLEAR(side->dead);
}

/* The bound of orderbook.protocol.decimals: digits before and after the point. */
#define MAX_INTEGER_DIGITS 20
#define MAX_DECIMALS 18

/* ASCII digits with at most one '.', at least one digit, within the bound:
 * the Python is_decimal_string().  Sets *decimals to the digits after the '.'. */
static int
plain_decimal(PyObject *text, Py_ssize_t *decimals)
{
    if (!PyUnicode_IS_ASCII(text))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    if (n > MAX_INTEGER_DIGITS + 1 + MAX_DECIMALS)
        return 0;
    const char *s = (const char *)PyUnicode_DATA(text);
    Py_ssize_t digits = 0, dot = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        char c = s[i];
        if (c >= '0' && c <= '9')
            digits++;
        else if (c == '.' && dot < 0)
            dot = i;
        else
            return 0;
    }
    *decimals = dot < 0 ? 0 : n - dot - 1;
    if ((dot < 0 ? n : dot) > MAX_INTEGER_DIGITS || *decimals > MAX_DECIMALS)
        return 0;
    return digits > 0;
}

/* A validated price string -> price * 10**scale, or -1 when it does not fit
 * in an int64 (the caller declines). */
static long long
fixed_point(PyObject *text, long scale)
{
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
    const char *s = (const char *)PyUnicode_DATA(text);
    long long v = 0;
    Py_ssize_t decimals = 0;
    int after_dot = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (s[i] == '.') {
            after_dot = 1;
            continue;
        }
        if (v > (LLONG_MAX - 9) / 10)
            return -1;
        v = v * 10 + (s[i] - '0');
        decimals += after_dot;
    }
    for (; decimals < scale; decimals++) {
        if (v > (LLONG_MAX - 9) / 10)
            return -1;
        v *= 10;
    }
    return v;
}

/* Validate one side of a frame into changes[*count...].  Returns 1 when
 * every level is in the common case, 0 to decline, -1 on error. */
static int
prepare_side(PyObject *raw, Side *side, Change *changes, Py_ssize_t *count)
{
    Py_ssize_t n = PyList_GET_SIZE(raw);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *level = PyList_GET_ITEM(raw, i);
        PyObject *price, *qty;
        if (PyList_CheckExact(level) && PyList_GET_SIZE(level) == 2) {
            price = PyList_GET_ITEM(level, 0);
            qty = PyList_GET_ITEM(level, 1);
        }
        else if (PyTuple_CheckExact(level) && PyTuple_GET_SIZE(level) == 2) {
            price = PyTuple_GET_ITEM(level, 0);
            qty = PyTuple_GET_ITEM(level, 1);
        }
        else {
            return 0;
        }
        if (!PyUnicode_CheckExact(price) || !PyUnicode_CheckExact(qty))
            return 0;

        Change *change = &changes[*count];
        PyObject *key = PyDict_GetItemWithError(side->prices, price);
        if (key != NULL) {
            int usable = as_int64(key, &change->value);
            if (usable <= 0)
                return usable;
            Py_INCREF(key);
        }
        else {
            Py_ssize_t decimals;
            if (PyErr_Occurred())
                return -1;
            if (!plain_decimal(price, &decimals) || decimals > side->scale)
                return 0; /* malformed, or needs a rescale: Python's job */
            long long value = fixed_point(price, side->scale);
            if (value <= 0)
                return 0; /* zero price (an error) or too large for int64 */
            change->value = value * side->sign;
            if (!(key = PyLong_FromLongLong(change->value)))
                return -1;
            if (PyDict_GET_SIZE(side->prices) >= price_cache_limit)
                PyDict_Clear(side->prices);
            if (PyDict_SetItem(side->prices, price, key) < 0) {
                Py_DECREF(key);
                return -1;
            }
        }
        change->key = key; /* owned from here: counted for release */
        (*count)++;

        Py_ssize_t ignored;
        if (!plain_decimal(qty, &ignored))
            return 0;
        const char *q = (const char *)PyUnicode_DATA(qty);
        Py_ssize_t qn = PyUnicode_GET_LENGTH(qty);
        change->delete = 1;
        for (Py_ssize_t j = 0; j < qn; j++) {
            if (q[j] != '0' && q[j] != '.') {
                change->delete = 0;
                break;
            }
        }
        change->qty = qty;
    }
    return 1;
}

/* The sorted key list.  SortedList.add and the deletion of the first key
 * are done here while the list is in its plain state (no positional index
 * built, no sublist to split or merge), else by the SortedList methods
 * themselves.  This reads sortedcontainers' internals (_lists: sorted
 * sublists, _maxes: the last value of each, _index: the positional index,
 * empty until a position is looked up, _len, _load), which have been stable
 * through sortedcontainers 2.x; anything unexpected goes to the methods.
 * SortedList._check(), run by Ladder.check, verifies them after every step
 * of the differential tests. */

typedef struct {
    PyObject *lists, *maxes, *index, *load, *len; /* new references */
} KeyList;

static void
key_list_release(KeyList *parts)
{
    Py_CLEAR(parts->lists);
    Py_CLEAR(parts->maxes);
    Py_CLEAR(parts->index);
    Py_CLEAR(parts->load);
    Py_CLEAR(parts->len);
}

/* 1 when `keys` is a plain-state key list (parts set), 0 when the methods
 * must do the work (nothing held), -1 on error. */
static int
key_list_open(PyObject *keys, KeyList *parts)
{
    PyObject *names[5] = {s_lists, s_maxes, s_index, s_load, s_len};
    PyObject **values[5] = {&parts->lists, &parts->maxes, &parts->index, &parts->load, &parts->len};
    memset(parts, 0, sizeof *parts);
    if (Py_TYPE(keys) != key_list_type)
        return 0;
    for (int i = 0; i < 5; i++) {
        *values[i] = PyObject_GetAttr(keys, names[i]);
        if (*values[i] == NULL) {
            key_list_release(parts);
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return -1;
            PyErr_Clear();
            return 0;
        }
    }
    if (parts->lists && parts->maxes && parts->index && parts->load && parts->len &&
        PyList_CheckExact(parts->lists) && PyList_CheckExact(parts->maxes) &&
        PyList_CheckExact(parts->index) && PyLong_CheckExact(parts->load) &&
        PyLong_CheckExact(parts->len) && PyList_GET_SIZE(parts->index) == 0 &&
        PyList_GET_SIZE(parts->lists) == PyList_GET_SIZE(parts->maxes))
        return 1;
    key_list_release(parts);
    return 0;
}

/* bisect.bisect_right: the index after the last item <= value, or -1. */
static Py_ssize_t
bisect_right(PyObject *list, PyObject *value)
{
    Py_ssize_t low = 0, high = PyList_GET_SIZE(list);
    while (low < high) {
        Py_ssize_t mid = (low + high) / 2;
        int less = PyObject_RichCompareBool(value, PyList_GET_ITEM(list, mid), Py_LT);
        if (less < 0)
            return -1;
        if (less)
            high = mid;
        else
            low = mid + 1;
    }
    return low;
}

static int
key_list_add_len(PyObject *keys, KeyList *parts, long delta)
{
    PyObject *len = PyLong_FromSsize_t(PyLong_AsSsize_t(parts->len) + delta);
    if (len == NULL)
        return -1;
    int status = PyObject_SetAttr(keys, s_len, len);
    Py_DECREF(len);
    return status;
}

/* keys.add(key).  0, or -1 on error. */
static int
key_list_add(PyObject *keys, PyObject *key)
{
    KeyList parts;
    int plain = key_list_open(keys, &parts);
    if (plain < 0)
        return -1;
    Py_ssize_t count = plain ? PyList_GET_SIZE(parts.maxes) : 0;
    Py_ssize_t pos = count ? bisect_right(parts.maxes, key) : 0;
    if (pos < 0)
        goto error;
    int new_maximum = pos == count;
    if (new_maximum)
        pos--;
    PyObject *sublist = count ? PyList_GET_ITEM(parts.lists, pos) : NULL;
    if (sublist == NULL || !PyList_CheckExact(sublist)) { /* empty, or not plain: SortedList.add */
        key_list_release(&parts);
        PyObject *done = PyObject_CallMethodOneArg(keys, s_add, key);
        Py_XDECREF(done);
        return done == NULL ? -1 : 0;
    }
    /* SortedList.add: a new maximum goes at the end of the last sublist, any
     * other key into the first sublist whose maximum exceeds it */
    if (new_maximum) {
        if (PyList_Append(sublist, key) < 0 || PyList_SetItem(parts.maxes, pos, Py_NewRef(key)) < 0)
            goto error;
    }
    else {
        Py_ssize_t at = bisect_right(sublist, key);
        if (at < 0 || PyList_Insert(sublist, at, key) < 0)
            goto error;
    }
    long load = PyLong_AsLong(parts.load);
    if (load == -1 && PyErr_Occurred())
        goto error;
    if (PyList_GET_SIZE(sublist) > 2 * load) { /* SortedList._expand splits it */
        PyObject *where = PyLong_FromSsize_t(pos);
        if (where == NULL)
            goto error;
        PyObject *done = PyObject_CallMethodOneArg(keys, s_expand, where);
        Py_DECREF(where);
        if (done == NULL)
            goto error;
        Py_DECREF(done);
    }
    if (key_list_add_len(keys, &parts, 1) < 0)
        goto error;
    key_list_release(&parts);
    return 0;
error:
    key_list_release(&parts);
    return -1;
}

/* del keys[0] on a non-empty list.  0, or -1 on error. */
static int
key_list_drop_first(PyObject *keys)
{
    KeyList parts;
    int plain = key_list_open(keys, &parts);
    if (plain < 0)
        return -1;
    if (plain && PyList_GET_SIZE(parts.lists) > 0) {
        PyObject *first = PyList_GET_ITEM(parts.lists, 0);
        long load = PyLong_AsLong(parts.load);
        if (load == -1 && PyErr_Occurred()) {
            key_list_release(&parts);
            return -1;
        }
        /* SortedList._delete without a merge: the sublist keeps more than
         * load/2 values and its last value (its entry in _maxes) */
        if (PyList_CheckExact(first) && PyList_GET_SIZE(first) - 1 > (load >> 1)) {
            int status = PyList_SetSlice(first, 0, 1, NULL);
            if (status == 0)
                status = key_list_add_len(keys, &parts, -1);
            key_list_release(&parts);
            return status;
        }
    }
    key_list_release(&parts);
    return PySequence_DelItem(keys, 0);
}

/* Store validated changes into a side, as Ladder.apply does before it
 * refreshes the best.  Sets *touched as Ladder.apply's return value (a
 * change at or before the best key, or no best) and *best to what became
 * of the best level (BEST_*; *best_change is then the index of the change
 * that holds it).  Returns 0, or -1 on error. */
static int
apply_side(Side *side, Change *changes, Py_ssize_t count, int *touched, int *best, Py_ssize_t *best_change)
{
    long long best_value = side->best_key;
    *touched = !side->has_best;
    *best = side->has_best ? BEST_KEPT : BEST_UNKNOWN;
    for (Py_ssize_t i = 0; i < count; i++) {
        Change *change = &changes[i];
        PyObject *stored;
        if (change->delete) {
            stored = PyDict_GetItemWithError(side->levels, change->key);
            if (stored != NULL) {
                if (PyDict_DelItem(side->levels, change->key) < 0)
                    return -1;
                if (PySet_Add(side->dead, change->key) < 0)
                    return -1;
            }
            else if (PyErr_Occurred()) {
                return -1;
            }
        }
        else {
            int present = PyDict_Contains(side->levels, change->key);
            if (present < 0)
                return -1;
            if (!present) {
                int revived = PySet_Discard(side->dead, change->key);
                if (revived < 0)
                    return -1;
                if (!revived) {
                    if (key_list_add(side->keys, change->key) < 0)
                        return -1;
                }
            }
            if (PyDict_SetItem(side->levels, change->key, change->qty) < 0)
                return -1;
        }
        if (side->has_best && change->value <= side->best_key)
            *touched = 1;
        /* Every live key is >= best_value (the first key is live), so a key
         * set below it is the new best; deleting the best leaves it to the
         * sorted list. */
        if (*best != BEST_UNKNOWN && change->value <= best_value) {
            if (change->delete) {
                if (change->value == best_value)
                    *best = BEST_UNKNOWN;
            }
            else {
                *best = BEST_KNOWN;
                *best_change = i;
                best_value = change->value;
            }
        }
    }
    return 0;
}

/* Ladder.price_of: the exact price of a key, Decimal(f"{key * sign}E-{scale}").
 * A new reference, or NULL on error. */
static PyObject *
price_of(Side *side, long long value)
{
    PyObject *text = PyUnicode_FromFormat("%lldE-%ld", value * side->sign, side->scale);
    if (text == NULL)
        return NULL;
    PyObject *price = PyObject_CallOneArg(decimal_type, text);
    Py_DECREF(text);
    return price;
}

/* The level tuple (price, Decimal(qty_text)), stealing `price` (NULL passes
 * an earlier error on).  A new reference, or NULL on error. */
static PyObject *
level_of(PyObject *price, PyObject *qty_text)
{
    PyObject *qty = price ? PyObject_CallOneArg(decimal_type, qty_text) : NULL;
    PyObject *level = qty ? PyTuple_New(2) : NULL;
    if (level == NULL) {
        Py_XDECREF(price);
        Py_XDECREF(qty);
        return NULL;
    }
    PyTuple_SET_ITEM(level, 0, price);
    PyTuple_SET_ITEM(level, 1, qty);
    return level;
}

/* The end of Ladder.refresh_best: `key` (whose value is `value`), the first
 * key, holds the quantity string `qty`; store its level tuple and make it the
 * best.  Returns 0, or -1 on error. */
static int
set_best(Side *side, PyObject *key, long long value, PyObject *qty_text)
{
    PyObject *touch_prices = SLOT(side->ladder, ladder_offsets, L_TOUCH_PRICES);
    PyObject *price = PyDict_GetItemWithError(touch_prices, key);
    if (price != NULL) {
        Py_INCREF(price);
    }
    else {
        if (PyErr_Occurred())
            return -1;
        if ((price = price_of(side, value)) == NULL)
            return -1;
        if (PyDict_GET_SIZE(touch_prices) >= price_cache_limit)
            PyDict_Clear(touch_prices);
        if (PyDict_SetItem(touch_prices, key, price) < 0) {
            Py_DECREF(price);
            return -1;
        }
    }
    PyObject *level = level_of(price, qty_text);
    if (level == NULL)
        return -1;
    if (PyDict_SetItem(side->levels, key, level) < 0) {
        Py_DECREF(level);
        return -1;
    }
    set_slot(side->ladder, ladder_offsets[L_BEST], level);
    set_slot(side->ladder, ladder_offsets[L_BEST_KEY], Py_NewRef(key));
    return 0;
}

/* Ladder.refresh_best: drop dead keys from the front of the sorted list,
 * then make the first key the best (None when the side is empty).  Anything
 * unusual (a key list not in its plain state, a key beyond int64) goes to
 * the method itself.  Returns 0, or -1 on error. */
static int
refresh_best(Side *side)
{
    for (;;) {
        KeyList parts;
        int plain = key_list_open(side->keys, &parts);
        if (plain < 0)
            return -1;
        if (!plain)
            break;
        if (PyList_GET_SIZE(parts.lists) == 0) {
            key_list_release(&parts);
            set_slot(side->ladder, ladder_offsets[L_BEST], Py_NewRef(Py_None));
            set_slot(side->ladder, ladder_offsets[L_BEST_KEY], Py_NewRef(Py_None));
            return 0;
        }
        PyObject *sublist = PyList_GET_ITEM(parts.lists, 0);
        PyObject *key = PyList_CheckExact(sublist) && PyList_GET_SIZE(sublist) > 0
                            ? Py_NewRef(PyList_GET_ITEM(sublist, 0))
                            : NULL;
        key_list_release(&parts);
        if (key == NULL)
            break;
        PyObject *stored = PyDict_GetItemWithError(side->levels, key);
        int status = 0;
        if (stored == NULL && !PyErr_Occurred()) { /* a dead key reached the front: drop it */
            status = PySet_Discard(side->dead, key);
            if (status == 1)
                status = key_list_drop_first(side->keys);
            else if (status == 0) { /* not listed as dead: the method raises */
                Py_DECREF(key);
                break;
            }
            Py_DECREF(key);
            if (status < 0)
                return -1;
            continue;
        }
        if (stored == NULL) {
            Py_DECREF(key);
            return -1;
        }
        if (PyTuple_CheckExact(stored)) {
            set_slot(side->ladder, ladder_offsets[L_BEST], Py_NewRef(stored));
            set_slot(side->ladder, ladder_offsets[L_BEST_KEY], key);
            return 0;
        }
        long long value;
        int usable = as_int64(key, &value);
        if (usable < 0) {
            Py_DECREF(key);
            return -1;
        }
        if (!usable || !PyUnicode_CheckExact(stored)) {
            Py_DECREF(key);
            break;
        }
        Py_INCREF(stored); /* (set_best replaces it in the dict) */
        status = set_best(side, key, value, stored);
        Py_DECREF(stored);
        Py_DECREF(key);
        return status;
    }
    PyObject *done = PyObject_CallMethodNoArgs(side->ladder, s_refresh_best);
    Py_XDECREF(done);
    return done == NULL ? -1 : 0;
}

/* After storing: refresh the best and compact dead keys, as Ladder.apply. */
static int
finish_side(Side *side, Change *change, int best)
{
    if (best == BEST_KNOWN) {
        if (set_best(side, change->key, change->value, change->qty) < 0)
            return -1;
    }
    else if (best == BEST_UNKNOWN) {
        if (refresh_best(side) < 0)
            return -1;
    }
    if (PySet_GET_SIZE(side->dead) > PyDict_GET_SIZE(side->levels) / 2 + dead_slack) {
        PyObject *done = PyObject_CallMethodNoArgs(side->ladder, s_compact);
        if (done == NULL)
            return -1;
        Py_DECREF(done);
    }
    return 0;
}

/* The book continues with this frame: bridged, same symbol, U == last + 1.
 * 1 yes, 0 decline, -1 error. */
static int
continues_book(PyObject *book, PyObject *event)
{
    if (SLOT(book, book_offsets, B_BRIDGED) != Py_True)
        return 0;
    PyObject *last = SLOT(book, book_offsets, B_LAST), *first = SLOT(event, event_offsets, E_FIRST);
    long long last_id, first_id;
    int usable;
    if (last == NULL || first == NULL)
        return 0;
    if ((usable = as_int64(last, &last_id)) <= 0 || (usable = as_int64(first, &first_id)) <= 0)
        return usable;
    if (last_id == LLONG_MAX || first_id != last_id + 1)
        return 0;
    PyObject *ours = SLOT(book, book_offsets, B_SYMBOL), *theirs = SLOT(event, event_offsets, E_SYMBOL);
    if (ours == NULL || theirs == NULL)
        return 0;
    if (ours == theirs)
        return 1;
    if (!PyUnicode_CheckExact(ours) || !PyUnicode_CheckExact(theirs))
        return 0;
    return PyUnicode_Compare(ours, theirs) == 0 ? 1 : (PyErr_Occurred() ? -1 : 0);
}

static PyObject *
apply_delta(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "apply_delta(book, event)");
        return NULL;
    }
    PyObject *book = args[0], *event = args[1];
    if (book_type == NULL || Py_TYPE(book) != book_type || depth_event_type == NULL ||
        Py_TYPE(event) != (PyTypeObject *)depth_event_type)
        Py_RETURN_NONE;
    for (int i = 0; i < EVENT_FIELDS; i++)
        if (SLOT(event, event_offsets, i) == NULL)
            Py_RETURN_NONE;
    int status = continues_book(book, event);
    if (status <= 0)
        return status < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *raws[2] = {SLOT(event, event_offsets, E_BIDS), SLOT(event, event_offsets, E_ASKS)};
    PyObject *ladders[2] = {SLOT(book, book_offsets, B_BIDS), SLOT(book, book_offsets, B_ASKS)};
    if (!PyList_CheckExact(raws[0]) || !PyList_CheckExact(raws[1]) || ladders[0] == NULL ||
        ladders[1] == NULL)
        Py_RETURN_NONE;

    Side sides[2] = {{0}, {0}};
    Py_ssize_t total = PyList_GET_SIZE(raws[0]) + PyList_GET_SIZE(raws[1]);
    Change small[16];
    Change *changes = total <= 16 ? small : PyMem_New(Change, total);
    Py_ssize_t counts[2] = {0, 0};
    PyObject *result = NULL;
    int touched = 0;

    if (changes == NULL)
        return PyErr_NoMemory();
    /* validate everything first: nothing changes unless the whole frame is good */
    for (int s = 0; s < 2 && status == 1; s++) {
        if (PyList_GET_SIZE(raws[s]) == 0)
            continue;
        status = side_load(ladders[s], &sides[s]);
        if (status == 1)
            status = prepare_side(raws[s], &sides[s], changes + counts[0] * s, &counts[s]);
    }
    if (status == 0) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (status < 0)
        goto done;
    /* from here on the frame is applied whole (short of running out of memory) */
    int best[2] = {BEST_KEPT, BEST_KEPT}, side_touched[2] = {0, 0};
    Py_ssize_t best_change[2] = {0, 0};
    for (int s = 0; s < 2; s++) {
        if (counts[s] == 0)
            continue;
        if (apply_side(&sides[s], changes + counts[0] * s, counts[s], &side_touched[s], &best[s],
                       &best_change[s]) < 0)
            goto done;
    }
    for (int s = 0; s < 2; s++) {
        if (counts[s] == 0)
            continue;
        /* (an untouched side has best == BEST_KEPT: no change reached its best key) */
        if (finish_side(&sides[s], changes + counts[0] * s + best_change[s], best[s]) < 0)
            goto done;
        touched |= side_touched[s];
    }
    set_slot(book, book_offsets[B_LAST], Py_NewRef(SLOT(event, event_offsets, E_LAST)));
    set_slot(book, book_offsets[B_TIMESTAMP], Py_NewRef(SLOT(event, event_offsets, E_ENGINE_TIME)));
    result = Py_NewRef(touched ? Py_True : Py_False);
done:
    for (Py_ssize_t i = 0; i < counts[0] + counts[1]; i++)
        Py_DECREF(changes[i].key);
    if (changes != small)
        PyMem_Free(changes);
    side_release(&sides[0]);
    side_release(&sides[1]);
    return result;
}

/* ------------------------------------------------------------------ view */

/* view(ladder, n) is Ladder.view: the best n levels (all for None) as
 * (Decimal price, Decimal qty) tuples, skipping dead keys; a level still
 * stored as its quantity string is converted, and the tuple kept in the
 * dict for the best `remembered_depth` levels.  None (nothing changed) when
 * the ladder or a key is unusual; the Python method then does the work. */
static Py_ssize_t remembered_depth = 100;

static PyObject *
view(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "view(ladder, n)");
        return NULL;
    }
    PyObject *ladder = args[0];
    Py_ssize_t wanted = PY_SSIZE_T_MAX;
    if (args[1] != Py_None) {
        if (!PyLong_CheckExact(args[1]))
            Py_RETURN_NONE;
        wanted = PyLong_AsSsize_t(args[1]);
        if (wanted == -1 && PyErr_Occurred())
            return NULL;
        if (wanted < 0)
            Py_RETURN_NONE;
    }
    Side side = {0};
    int status = side_load(ladder, &side);
    if (status <= 0)
        return status < 0 ? NULL : Py_NewRef(Py_None);
    KeyList parts = {0};
    PyObject *out = NULL;
    /* _lists alone is needed: iteration does not use the positional index */
    parts.lists = PyObject_GetAttr(side.keys, s_lists);
    if (parts.lists == NULL && PyErr_ExceptionMatches(PyExc_AttributeError))
        PyErr_Clear(); /* not the sortedcontainers we know: the method does it */
    else if (parts.lists == NULL)
        goto done;
    if (Py_TYPE(side.keys) != key_list_type || parts.lists == NULL || !PyList_CheckExact(parts.lists)) {
        status = 0;
        goto done;
    }
    if (!(out = PyList_New(0)))
        goto done;
    Py_ssize_t count = PyList_GET_SIZE(parts.lists);
    for (Py_ssize_t i = 0; i < count && PyList_GET_SIZE(out) < wanted; i++) {
        PyObject *sublist = PyList_GET_ITEM(parts.lists, i);
        if (!PyList_CheckExact(sublist)) {
            status = 0;
            goto done;
        }
        for (Py_ssize_t j = 0; j < PyList_GET_SIZE(sublist) && PyList_GET_SIZE(out) < wanted; j++) {
            PyObject *key = PyList_GET_ITEM(sublist, j);
            PyObject *stored = PyDict_GetItemWithError(side.levels, key);
            if (stored == NULL) {
                if (PyErr_Occurred())
                    goto done;
                continue; /* a dead key */
            }
            if (PyTuple_CheckExact(stored)) {
                if (PyList_Append(out, stored) < 0)
                    goto done;
                continue;
            }
            long long value;
            int usable = as_int64(key, &value);
            if (usable < 0)
                goto done;
            if (!usable || !PyUnicode_CheckExact(stored)) {
                status = 0;
                goto done;
            }
            /* Ladder.convert: (price_of(key), Decimal(qty)) */
            PyObject *level = level_of(price_of(&side, value), stored);
            if (level == NULL)
                goto done;
            int failed = PyList_Append(out, level) < 0 ||
                         (PyList_GET_SIZE(out) <= remembered_depth &&
                          PyDict_SetItem(side.levels, key, level) < 0);
            Py_DECREF(level);
            if (failed)
                goto done;
        }
    }
    status = 1;
done:
    Py_XDECREF(parts.lists);
    side_release(&side);
    if (status == 0) { /* declined: the only change is conversions stored, as Python stores them */
        Py_XDECREF(out);
        return Py_NewRef(Py_None);
    }
    if (PyErr_Occurred()) {
        Py_XDECREF(out);
        return NULL;
    }
    return out;
}

/* ------------------------------------------------------------- configure */

/* The byte offsets of object slots `names` of `cls` (each must be a
 * __slots__ member).  0, or -1 with TypeError. */
static int
slot_offsets(PyObject *cls, const char **names, int count, Py_ssize_t *offsets)
{
    if (!PyType_Check(cls)) {
        PyErr_Format(PyExc_TypeError, "expected a class, got %R", cls);
        return -1;
    }
    for (int i = 0; i < count; i++) {
        PyObject *descr = PyObject_GetAttrString(cls, names[i]);
        if (descr == NULL)
            return -1;
        int is_slot = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                      ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        if (is_slot)
            offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!is_slot) {
            PyErr_Format(PyExc_TypeError, "%R.%s is not a slot", cls, names[i]);
            return -1;
        }
    }
    return 0;
}

static PyObject *
set_event_type(PyObject *module, PyObject *cls)
{
    Py_ssize_t offsets[EVENT_FIELDS];
    if (slot_offsets(cls, event_field_names, EVENT_FIELDS, offsets) < 0)
        return NULL;
    memcpy(event_offsets, offsets, sizeof offsets);
    Py_XSETREF(depth_event_type, Py_NewRef(cls));
    Py_RETURN_NONE;
}

static PyObject *
configure(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyType_Check(args[2]) || !PyType_Check(args[3]) ||
        !PyLong_CheckExact(args[4]) || !PyLong_CheckExact(args[5]) || !PyLong_CheckExact(args[6])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure(Ladder, OrderBook, key list class, Decimal, price_cache_limit: int, "
                        "dead_slack: int, remembered_depth: int)");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[4]);
    Py_ssize_t slack = PyLong_AsSsize_t(args[5]);
    Py_ssize_t depth = PyLong_AsSsize_t(args[6]);
    if ((limit == -1 || slack == -1 || depth == -1) && PyErr_Occurred())
        return NULL;
    if (limit < 1 || slack < 0 || depth < 0) {
        PyErr_SetString(PyExc_ValueError, "configure needs a limit >= 1, a slack >= 0 and a depth >= 0");
        return NULL;
    }
    Py_ssize_t ladder[LADDER_SLOTS], book[BOOK_SLOTS];
    if (slot_offsets(args[0], ladder_slot_names, LADDER_SLOTS, ladder) < 0 ||
        slot_offsets(args[1], book_slot_names, BOOK_SLOTS, book) < 0)
        return NULL;
    memcpy(ladder_offsets, ladder, sizeof ladder);
    memcpy(book_offsets, book, sizeof book);
    Py_XSETREF(ladder_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_XSETREF(book_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(key_list_type, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(decimal_type, Py_NewRef(args[3]));
    price_cache_limit = limit;
    dead_slack = slack;
    remembered_depth = depth;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_event_type", set_event_type, METH_O,
     "set_event_type(DepthEvent): the class depth_frame() builds (orderbook.wire sets it)."},
    {"configure", (PyCFunction)(void (*)(void))configure, METH_FASTCALL,
     "configure(Ladder, OrderBook, key list class, Decimal, price_cache_limit, dead_slack, "
     "remembered_depth): the classes and "
     "bounds apply_delta() and view() work with (orderbook.book sets them)."},
    {"view", (PyCFunction)(void (*)(void))view, METH_FASTCALL,
     "view(ladder, n) -> Ladder.view(n), or None when the Python method must do it."},
    {"depth_frame", depth_frame, METH_O,
     "depth_frame(raw: bytes | str) -> DepthEvent, or None when the text is not a depth frame "
     "in the strict common form (the caller then decodes it with orjson and Python)."},
    {"apply_delta", (PyCFunction)(void (*)(void))apply_delta, METH_FASTCALL,
     "apply_delta(book, event) -> True/False as OrderBook.apply_delta, or None when the frame "
     "needs the Python path (nothing applied)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "orderbook._speedups",
    "Optional native fast paths for orderbook.wire and orderbook.book.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
#define INTERN(var, text) if (!(var = PyUnicode_InternFromString(text))) return NULL
    INTERN(s_add, "add");
    INTERN(s_refresh_best, "refresh_best");
    INTERN(s_compact, "compact");
    INTERN(s_expand, "_expand");
    INTERN(s_lists, "_lists");
    INTERN(s_maxes, "_maxes");
    INTERN(s_index, "_index");
    INTERN(s_load, "_load");
    INTERN(s_len, "_len");
#undef INTERN
    init_string_bytes();
    if (!(empty_tuple = PyTuple_New(0)))
        return NULL;
    return PyModule_Create(&module_def);
}
