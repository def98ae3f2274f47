/* transform-filter: keeps the rows where a numeric column satisfies a comparison.
 *
 * Config: {"column": "amount", "op": ">=", "value": 5000}. The column may be an 8- to 64-bit
 * signed integer, an 8- to 32-bit unsigned integer, float32 or float64; rows where it is
 * NULL are dropped (SQL semantics). An integer column compared with an integral value is
 * compared exactly as int64; anything else is compared as float64 (IEEE: NaN matches only
 * "!="). Every column of the batch is carried through, strings included.
 */
#include "../sdk/rb_plugin.h"

RB_MANIFEST({
    "name": "transform-filter",
    "version": "0.1.0",
    "kind": "transform",
    "description": "Keeps the rows where a numeric column satisfies a comparison",
    "config_schema": {
        "type": "object",
        "required": ["column", "op", "value"],
        "additionalProperties": false,
        "properties": {
            "column": {"type": "string", "description": "int8-64, uint8-32, float32 or float64 column"},
            "op": {"enum": ["==", "!=", "<", "<=", ">", ">="]},
            "value": {"type": "number"}
        }
    }
});

enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE };

/* Rows are widened in chunks so the comparison loop runs over one plain array type. */
#define CHUNK 2048

static struct {
    uint8_t column[256];
    uint32_t column_len;
    int op;
    int value_is_int;
    int64_t ivalue;
    double dvalue;
    int32_t index;    /* the filtered column, resolved against the schema */
    int int_compare;  /* compare as int64 rather than float64 */
    uint32_t n_buffers;
    uint64_t *sizes;  /* per output buffer, sized once per schema */
    uint8_t **ptrs;
    uint8_t *sel;     /* uint32 row indexes, grown per batch */
    uint32_t sel_cap;
} F;

static int64_t wide_i[CHUNK];
static double wide_d[CHUNK];
static uint8_t valid[CHUNK];

static int parse_op(const uint8_t *s, uint32_t n) {
    static const char *const names[] = {"==", "!=", "<", "<=", ">", ">="};
    for (int i = 0; i < 6; i++)
        if (rb_bytes_eq(s, n, (const uint8_t *)names[i], rb_strlen(names[i]))) return i;
    return -1;
}

RB_EXPORT("rb_init") int32_t rb_init(const uint8_t *cfg, uint32_t len) {
    rb_json doc, key, v;
    uint8_t text[256];
    uint32_t text_len;
    const uint8_t *cursor = NULL;
    if (rb_json_parse(cfg, len, &doc) != RB_OK) return RB_ERR;
    if (doc.kind != RB_JSON_OBJECT) return rb_fail("config must be a JSON object");
    while (rb_json_next(&doc, &cursor, &key, &v)) {
        if (rb_json_string(&key, text, sizeof(text), &text_len) != RB_OK) return RB_ERR;
        if (!rb_bytes_eq(text, text_len, (const uint8_t *)"column", 6) &&
            !rb_bytes_eq(text, text_len, (const uint8_t *)"op", 2) &&
            !rb_bytes_eq(text, text_len, (const uint8_t *)"value", 5)) {
            rb_msg m = {.len = 0};
            rb_msg_str(&m, "config: unknown key '");
            rb_msg_bytes(&m, text, text_len);
            rb_msg_str(&m, "' (expected column, op, value)");
            return rb_fail_msg(&m);
        }
    }
    if (rb_json_get(&doc, "column", &v) != 1) return rb_fail("config.column is required");
    if (rb_json_string(&v, F.column, sizeof(F.column), &F.column_len) != RB_OK) return RB_ERR;
    if (rb_json_get(&doc, "op", &v) != 1) return rb_fail("config.op is required");
    if (rb_json_string(&v, text, sizeof(text), &text_len) != RB_OK) return RB_ERR;
    if ((F.op = parse_op(text, text_len)) < 0) return rb_fail("config.op must be one of == != < <= > >=");
    if (rb_json_get(&doc, "value", &v) != 1) return rb_fail("config.value is required");
    if (v.kind != RB_JSON_NUMBER) return rb_fail("config.value must be a number");
    return rb_json_number(&v, &F.dvalue, &F.ivalue, &F.value_is_int);
}

static int on_schema(const rb_schema *s) {
    F.index = rb_schema_find(s, F.column, F.column_len);
    if (F.index < 0) {
        rb_msg m = {.len = 0};
        rb_msg_str(&m, "config.column '");
        rb_msg_bytes(&m, F.column, F.column_len);
        rb_msg_str(&m, "' is not a column of the stream");
        return rb_fail_msg(&m);
    }
    const rb_field *f = &s->fields[F.index];
    int is_int = f->type == RB_TYPE_INT && (f->is_signed || f->width < 8);
    int is_float = f->type == RB_TYPE_FLOAT && f->width >= 4;
    if (!is_int && !is_float)
        return rb_fail("config.column must be an int8-64, uint8-32, float32 or float64 column");
    F.int_compare = is_int && F.value_is_int;
    F.n_buffers = 0;
    for (uint32_t i = 0; i < s->n_fields; i++) F.n_buffers += rb_layout_buffers(s->fields[i].layout);
    F.sizes = (uint64_t *)rb_alloc(F.n_buffers * 8u + 8u);
    F.ptrs = (uint8_t **)rb_alloc(F.n_buffers * 4u + 4u);
    if (!F.sizes || !F.ptrs) return rb_fail("out of memory");
    return RB_OK;
}

/* Widens rows [base, base + m) of the filtered column into wide_i or wide_d. */
static void widen(const rb_field *f, const uint8_t *values, uint32_t base, uint32_t m) {
    const uint8_t *p = values + (uint64_t)base * f->width;
#define WIDEN(T, OUT, W)                                                                        \
    for (uint32_t j = 0; j < m; j++) {                                                          \
        T x;                                                                                    \
        rb_memcpy(&x, p + (uint64_t)(W) * j, W);                                                \
        OUT[j] = x;                                                                             \
    }
#define WIDEN_ALL(OUT)                                                                          \
    if (f->is_float) {                                                                          \
        if (f->width == 4) { WIDEN(float, OUT, 4) } else { WIDEN(double, OUT, 8) }              \
    } else if (f->is_signed) {                                                                  \
        if (f->width == 1) { WIDEN(int8_t, OUT, 1) } else if (f->width == 2) { WIDEN(int16_t, OUT, 2) } \
        else if (f->width == 4) { WIDEN(int32_t, OUT, 4) } else { WIDEN(int64_t, OUT, 8) }      \
    } else {                                                                                    \
        if (f->width == 1) { WIDEN(uint8_t, OUT, 1) } else if (f->width == 2) { WIDEN(uint16_t, OUT, 2) } \
        else { WIDEN(uint32_t, OUT, 4) }                                                        \
    }
    if (F.int_compare) {
        WIDEN_ALL(wide_i)
    } else {
        WIDEN_ALL(wide_d)
    }
#undef WIDEN_ALL
#undef WIDEN
}

/* Branch-free selection: every row index is written, and the count advances only when the
 * row is valid and matches, so there is no data-dependent branch to mispredict. */
#define SELECT_LOOP(VALS, CMP, C)                                          \
    for (uint32_t j = 0; j < m; j++) {                                     \
        sel[k] = base + j;                                                 \
        k += (uint32_t)(VALS[j] CMP C) & valid[j];                         \
    }
#define SELECT(VALS, C)                                                    \
    switch (F.op) {                                                        \
    case OP_EQ: SELECT_LOOP(VALS, ==, C) break;                            \
    case OP_NE: SELECT_LOOP(VALS, !=, C) break;                            \
    case OP_LT: SELECT_LOOP(VALS, <, C) break;                             \
    case OP_LE: SELECT_LOOP(VALS, <=, C) break;                            \
    case OP_GT: SELECT_LOOP(VALS, >, C) break;                             \
    default: SELECT_LOOP(VALS, >=, C) break;                               \
    }

static uint32_t select_rows(const rb_field *f, const rb_column *c, uint32_t n, uint32_t *sel) {
    uint32_t k = 0;
    for (uint32_t base = 0; base < n; base += CHUNK) {
        uint32_t m = n - base < CHUNK ? n - base : CHUNK;
        if (c->validity) {
            for (uint32_t j = 0; j < m; j++) valid[j] = (uint8_t)rb_bit(c->validity, base + j);
        } else {
            rb_memset(valid, 1, m);
        }
        widen(f, c->values, base, m);
        if (F.int_compare) {
            SELECT(wide_i, F.ivalue)
        } else {
            SELECT(wide_d, F.dvalue)
        }
    }
    return k;
}

static int on_batch(const rb_schema *s, const rb_batch *b, rb_writer *w) {
    uint32_t n = (uint32_t)b->length, bi = 0;
    if (rb_reserve(&F.sel, &F.sel_cap, 4 * (uint64_t)n) != RB_OK) return RB_ERR;
    uint32_t *sel = (uint32_t *)F.sel;
    uint32_t k = select_rows(&s->fields[F.index], &b->columns[F.index], n, sel);
    if (!k) return RB_OK;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        rb_take_sizes(&s->fields[i], &b->columns[i], sel, k, F.sizes + bi);
        bi += rb_layout_buffers(s->fields[i].layout);
    }
    if (rb_writer_layout(w, k, s->n_fields, F.n_buffers, F.sizes, F.ptrs) != RB_OK) return RB_ERR;
    bi = 0;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        rb_writer_node(w, i, k, rb_take(&s->fields[i], &b->columns[i], sel, k, F.ptrs + bi));
        bi += rb_layout_buffers(s->fields[i].layout);
    }
    return rb_writer_emit(w);
}

RB_EXPORT("rb_run") int32_t rb_run(void) {
    static const rb_transform t = {on_schema, on_batch};
    return rb_transform_run(&t);
}
