/*
 * orderbook._speedups: optional native versions of the two hottest steps.
 *
 *   depth_event(message)  a decoded frame -> DepthEvent, or None
 *   apply_levels(bids, asks, bid_levels, ask_levels) -> bits, or None
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
 * The one side effect of a declined apply_levels is entries added to a
 * ladder's price -> key cache; every entry is a true fact (the key of that
 * price at the ladder's current scale), as in the Python code.
 *
 * Reference counting: every PyObject* below is either borrowed from a
 * container the caller keeps alive for the whole call (the message, the
 * level lists, the ladders) or owned and released before returning.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <limits.h>
#include <string.h>
#include <structmember.h>

/* Set by orderbook.wire and orderbook.book when they are imported. */
static PyObject *depth_event_type = NULL;
/* Its fields' slot descriptors, in constructor order, and an empty tuple. */
#define EVENT_FIELDS 7
static const char *event_field_names[EVENT_FIELDS] = {
    "symbol", "first_id", "last_id", "event_time", "engine_time", "bids", "asks"};
static PyObject *event_fields[EVENT_FIELDS];
static PyObject *empty_tuple = NULL;
static Py_ssize_t price_cache_limit = 65536;
static Py_ssize_t dead_slack = 256;

/* Interned attribute and key names. */
static PyObject *s_stream, *s_data, *s_U, *s_u, *s_E, *s_T, *s_s, *s_b, *s_a;
static PyObject *s_add, *s_depth_prefix;

#define MAX_INT64_DIGITS 18 /* any 18-digit decimal fits an int64 */

/* ------------------------------------------------------------------ ids */

/* An id or timestamp field: a non-negative int (returned with a new
 * reference) or a string of 1-18 ASCII digits (converted).  NULL without an
 * exception set means "not the common case"; NULL with one set is an error. */
static PyObject *
as_nonnegative_int(PyObject *value)
{
    if (PyLong_CheckExact(value)) {
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (v == -1 && PyErr_Occurred())
            return NULL;
        if (overflow < 0 || (overflow == 0 && v < 0))
            return NULL;
        Py_INCREF(value);
        return value;
    }
    if (PyUnicode_CheckExact(value) && PyUnicode_IS_ASCII(value)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(value);
        const char *text = (const char *)PyUnicode_DATA(value);
        if (n < 1 || n > MAX_INT64_DIGITS)
            return NULL;
        long long v = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (text[i] < '0' || text[i] > '9')
                return NULL;
            v = v * 10 + (text[i] - '0');
        }
        return PyLong_FromLongLong(v);
    }
    return NULL;
}

/* ----------------------------------------------------------- depth_event */

/* DepthEvent(*values) without running the dataclass __init__ (a Python
 * function): allocate through the class's own tp_new and store each field
 * through its slot descriptor, exactly what __init__ does. */
static PyObject *
new_event(PyObject **values)
{
    PyTypeObject *cls = (PyTypeObject *)depth_event_type;
    PyObject *event = cls->tp_new(cls, empty_tuple, NULL);
    if (event == NULL)
        return NULL;
    for (int i = 0; i < EVENT_FIELDS; i++) {
        if (Py_TYPE(event_fields[i])->tp_descr_set(event_fields[i], event, values[i]) < 0) {
            Py_DECREF(event);
            return NULL;
        }
    }
    return event;
}

static PyObject *
depth_event(PyObject *module, PyObject *message)
{
    PyObject *args[7] = {NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    PyObject *result = NULL;

    if (depth_event_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "orderbook._speedups.set_event_type() was not called");
        return NULL;
    }
    if (!PyDict_CheckExact(message))
        Py_RETURN_NONE;
    PyObject *stream = PyDict_GetItemWithError(message, s_stream);
    if (stream == NULL || !PyUnicode_CheckExact(stream))
        goto decline;
    PyObject *data = PyDict_GetItemWithError(message, s_data);
    if (data == NULL || !PyDict_CheckExact(data))
        goto decline;
    Py_ssize_t length = PyUnicode_GET_LENGTH(stream);
    Py_ssize_t starts = PyUnicode_Tailmatch(stream, s_depth_prefix, 0, length, -1);
    if (starts != 1)
        goto decline;
    Py_ssize_t dot = PyUnicode_FindChar(stream, '.', 0, length, -1);
    if (dot < 0 || dot + 1 >= length)
        goto decline;

    PyObject *first = PyDict_GetItemWithError(data, s_U);
    PyObject *last = PyDict_GetItemWithError(data, s_u);
    PyObject *bids = PyDict_GetItemWithError(data, s_b);
    PyObject *asks = PyDict_GetItemWithError(data, s_a);
    PyObject *event_time = PyDict_GetItemWithError(data, s_E);
    PyObject *engine_time = PyDict_GetItemWithError(data, s_T);
    if (!first || !last || !bids || !asks || !event_time || !engine_time)
        goto decline;
    if (!PyList_CheckExact(bids) || !PyList_CheckExact(asks))
        goto decline;
    if (!(args[1] = as_nonnegative_int(first)))
        goto decline;
    if (!(args[2] = as_nonnegative_int(last)))
        goto decline;
    int order = PyObject_RichCompareBool(args[1], args[2], Py_LE);
    if (order != 1)
        goto decline;
    if (!(args[3] = as_nonnegative_int(event_time)))
        goto decline;
    if (!(args[4] = as_nonnegative_int(engine_time)))
        goto decline;
    if (!(args[0] = PyUnicode_Substring(stream, dot + 1, length)))
        goto done;
    PyObject *named = PyDict_GetItemWithError(data, s_s);
    if (named != NULL) {
        int same = PyObject_RichCompareBool(named, args[0], Py_EQ);
        if (same != 1)
            goto decline;
    }
    args[5] = bids;
    args[6] = asks;
    Py_INCREF(bids);
    Py_INCREF(asks);
    result = new_event(args);
    goto done;

decline:
    if (!PyErr_Occurred()) {
        result = Py_None;
        Py_INCREF(result);
    }
done:
    for (int i = 0; i < 7; i++)
        Py_XDECREF(args[i]);
    return result;
}

/* ---------------------------------------------------------- apply_levels */

typedef struct { /* one Ladder's fields */
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

/* The Ladder class and the byte offsets of its slots, set by
 * configure_ladders(): reading a slot is then one load instead of an
 * attribute lookup (which costs more than the rest of a level's work). */
static PyTypeObject *ladder_type = NULL;
enum { L_KEYS, L_LEVELS, L_PRICES, L_DEAD, L_SCALE, L_SIGN, L_BEST_KEY, LADDER_SLOTS };
static const char *ladder_slot_names[LADDER_SLOTS] = {
    "keys", "levels", "prices", "dead", "scale", "sign", "best_key"};
static Py_ssize_t ladder_offsets[LADDER_SLOTS];

static PyObject *
ladder_slot(PyObject *ladder, int slot)
{
    return *(PyObject **)((char *)ladder + ladder_offsets[slot]);
}

/* Read a Ladder's fields (the four containers with new references, released
 * by side_release, so that nothing run meanwhile can free them).
 * Returns 1 when usable, 0 to decline, -1 on error. */
static int
side_load(PyObject *ladder, Side *side)
{
    int overflow = 0;
    if (ladder_type == NULL || Py_TYPE(ladder) != ladder_type)
        return 0;
    for (int i = 0; i < LADDER_SLOTS; i++)
        if (ladder_slot(ladder, i) == NULL)
            return 0; /* an unset slot */
    if (!PyDict_CheckExact(ladder_slot(ladder, L_LEVELS)) ||
        !PyDict_CheckExact(ladder_slot(ladder, L_PRICES)) ||
        !PySet_CheckExact(ladder_slot(ladder, L_DEAD)))
        return 0;

    PyObject *value = ladder_slot(ladder, L_SCALE);
    if (!PyLong_CheckExact(value))
        return 0;
    side->scale = PyLong_AsLongAndOverflow(value, &overflow);
    if (side->scale == -1 && PyErr_Occurred())
        return -1;
    if (overflow || side->scale < 0 || side->scale > MAX_INT64_DIGITS)
        return 0;

    value = ladder_slot(ladder, L_SIGN);
    if (!PyLong_CheckExact(value))
        return 0;
    side->sign = PyLong_AsLongAndOverflow(value, &overflow);
    if (side->sign == -1 && PyErr_Occurred())
        return -1;
    if (overflow || (side->sign != 1 && side->sign != -1))
        return 0;

    value = ladder_slot(ladder, L_BEST_KEY);
    side->has_best = value != Py_None;
    if (side->has_best) {
        if (!PyLong_CheckExact(value))
            return 0;
        side->best_key = PyLong_AsLongLongAndOverflow(value, &overflow);
        if (side->best_key == -1 && PyErr_Occurred())
            return -1;
        if (overflow)
            return 0;
    }
    side->keys = Py_NewRef(ladder_slot(ladder, L_KEYS));
    side->levels = Py_NewRef(ladder_slot(ladder, L_LEVELS));
    side->prices = Py_NewRef(ladder_slot(ladder, L_PRICES));
    side->dead = Py_NewRef(ladder_slot(ladder, L_DEAD));
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

/* ASCII digits with at most one '.', at least one digit: the Python
 * is_decimal_string().  Sets *decimals to the digits after the '.'. */
static int
plain_decimal(PyObject *text, Py_ssize_t *decimals)
{
    if (!PyUnicode_IS_ASCII(text))
        return 0;
    Py_ssize_t n = PyUnicode_GET_LENGTH(text);
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
        int overflow = 0;
        PyObject *key = PyDict_GetItemWithError(side->prices, price);
        if (key != NULL) {
            if (!PyLong_CheckExact(key))
                return 0;
            change->value = PyLong_AsLongLongAndOverflow(key, &overflow);
            if (change->value == -1 && PyErr_Occurred())
                return -1;
            if (overflow)
                return 0;
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

/* Store validated changes into a side.  Returns the touched flag (0/1),
 * plus 2 when the dead keys are due for compaction, or -1 on error.
 * Mirrors Ladder.apply (which also refreshes and compacts; here the caller
 * does, from the returned bits). */
static int
apply_side(Side *side, Change *changes, Py_ssize_t count)
{
    int touched = !side->has_best;
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
                    PyObject *done = PyObject_CallMethodOneArg(side->keys, s_add, change->key);
                    if (done == NULL)
                        return -1;
                    Py_DECREF(done);
                }
            }
            if (PyDict_SetItem(side->levels, change->key, change->qty) < 0)
                return -1;
        }
        if (!touched && change->value <= side->best_key)
            touched = 1;
    }
    if (PySet_GET_SIZE(side->dead) > PyDict_GET_SIZE(side->levels) / 2 + dead_slack)
        touched |= 2;
    return touched;
}

static PyObject *
apply_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "apply_levels(bids, asks, bid_levels, ask_levels)");
        return NULL;
    }
    PyObject *raw_bids = args[2], *raw_asks = args[3];
    if (!PyList_CheckExact(raw_bids) || !PyList_CheckExact(raw_asks))
        Py_RETURN_NONE;

    Side sides[2] = {{0}, {0}};
    PyObject *raws[2] = {raw_bids, raw_asks};
    Py_ssize_t total = PyList_GET_SIZE(raw_bids) + PyList_GET_SIZE(raw_asks);
    Change small[16];
    Change *changes = total <= 16 ? small : PyMem_New(Change, total);
    Py_ssize_t counts[2] = {0, 0};
    PyObject *result = NULL;
    int status = 1;

    if (changes == NULL)
        return PyErr_NoMemory();
    /* validate everything first: nothing changes unless the whole frame is good */
    for (int s = 0; s < 2 && status == 1; s++) {
        if (PyList_GET_SIZE(raws[s]) == 0)
            continue;
        status = side_load(args[s], &sides[s]);
        if (status == 1)
            status = prepare_side(raws[s], &sides[s], changes + counts[0] * s, &counts[s]);
    }
    if (status == 1) {
        long touched = 0;
        for (int s = 0; s < 2; s++) {
            if (counts[s] == 0)
                continue;
            int side_touched = apply_side(&sides[s], changes + counts[0] * s, counts[s]);
            if (side_touched < 0) {
                status = -1;
                break;
            }
            touched |= (long)(side_touched & 1) << s;
            touched |= (long)(side_touched >> 1) << (s + 2);
        }
        if (status == 1)
            result = PyLong_FromLong(touched);
    }
    else if (status == 0) {
        result = Py_None;
        Py_INCREF(result);
    }
    for (Py_ssize_t i = 0; i < counts[0] + counts[1]; i++)
        Py_DECREF(changes[i].key);
    if (changes != small)
        PyMem_Free(changes);
    side_release(&sides[0]);
    side_release(&sides[1]);
    return result;
}

/* ------------------------------------------------------------- configure */

static PyObject *
set_event_type(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "set_event_type() needs the DepthEvent class");
        return NULL;
    }
    PyObject *fields[EVENT_FIELDS];
    for (int i = 0; i < EVENT_FIELDS; i++) {
        /* each field must be a slot (a data descriptor on the class) */
        fields[i] = PyObject_GetAttrString(cls, event_field_names[i]);
        if (fields[i] == NULL || Py_TYPE(fields[i])->tp_descr_set == NULL) {
            if (fields[i] != NULL)
                PyErr_Format(PyExc_TypeError, "%R.%s is not a slot", cls, event_field_names[i]);
            for (int j = 0; j <= i; j++)
                Py_XDECREF(fields[j]);
            return NULL;
        }
    }
    for (int i = 0; i < EVENT_FIELDS; i++)
        Py_XSETREF(event_fields[i], fields[i]);
    Py_INCREF(cls);
    Py_XSETREF(depth_event_type, cls);
    Py_RETURN_NONE;
}

static PyObject *
configure_ladders(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyType_Check(args[0]) || !PyLong_CheckExact(args[1]) ||
        !PyLong_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "configure_ladders(Ladder, price_cache_limit: int, dead_slack: int)");
        return NULL;
    }
    Py_ssize_t limit = PyLong_AsSsize_t(args[1]);
    Py_ssize_t slack = PyLong_AsSsize_t(args[2]);
    if ((limit == -1 || slack == -1) && PyErr_Occurred())
        return NULL;
    if (limit < 1 || slack < 0) {
        PyErr_SetString(PyExc_ValueError, "configure_ladders needs a limit >= 1 and a slack >= 0");
        return NULL;
    }
    Py_ssize_t offsets[LADDER_SLOTS];
    for (int i = 0; i < LADDER_SLOTS; i++) {
        /* each field must be an object slot: a member descriptor of the class */
        PyObject *descr = PyObject_GetAttrString(args[0], ladder_slot_names[i]);
        if (descr == NULL)
            return NULL;
        int is_slot = Py_IS_TYPE(descr, &PyMemberDescr_Type) &&
                      ((PyMemberDescrObject *)descr)->d_member->type == T_OBJECT_EX;
        if (is_slot)
            offsets[i] = ((PyMemberDescrObject *)descr)->d_member->offset;
        Py_DECREF(descr);
        if (!is_slot) {
            PyErr_Format(PyExc_TypeError, "%R.%s is not a slot", args[0], ladder_slot_names[i]);
            return NULL;
        }
    }
    memcpy(ladder_offsets, offsets, sizeof offsets);
    Py_INCREF(args[0]);
    Py_XSETREF(ladder_type, (PyTypeObject *)args[0]);
    price_cache_limit = limit;
    dead_slack = slack;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"set_event_type", set_event_type, METH_O,
     "set_event_type(DepthEvent): the class depth_event() builds (orderbook.wire sets it)."},
    {"configure_ladders", (PyCFunction)(void (*)(void))configure_ladders, METH_FASTCALL,
     "configure_ladders(Ladder, price_cache_limit, dead_slack): the class and bounds "
     "orderbook.book uses."},
    {"depth_event", depth_event, METH_O,
     "depth_event(message) -> DepthEvent, or None when the message is not a well-formed "
     "depth frame (the caller's Python path then decides and raises)."},
    {"apply_levels", (PyCFunction)(void (*)(void))apply_levels, METH_FASTCALL,
     "apply_levels(bids, asks, bid_levels, ask_levels) -> bits (1/2: the bid/ask best may "
     "have changed; 4/8: compact the bid/ask dead keys), or None when the frame needs the "
     "Python path (nothing applied)."},
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
    INTERN(s_stream, "stream");
    INTERN(s_data, "data");
    INTERN(s_U, "U");
    INTERN(s_u, "u");
    INTERN(s_E, "E");
    INTERN(s_T, "T");
    INTERN(s_s, "s");
    INTERN(s_b, "b");
    INTERN(s_a, "a");
    INTERN(s_add, "add");
    INTERN(s_depth_prefix, "depth.");
#undef INTERN
    if (!(empty_tuple = PyTuple_New(0)))
        return NULL;
    return PyModule_Create(&module_def);
}
