/* transform-mask: hides the values of text columns.
 *
 * Config: {"columns": ["email"], "mode": "hash" | "mask"}.
 *   hash: each value becomes the 16 lowercase hex digits of FNV-1a 64 over its UTF-8 bytes
 *         (deterministic, so masked columns still join and group).
 *   mask: every character before the last '@' becomes '*', keeping the domain of an email;
 *         a value without '@' is masked entirely. One '*' per character (code point).
 * NULLs stay NULL; the other columns pass through unchanged.
 */
#include "../sdk/rb_plugin.h"

RB_MANIFEST({
    "name": "transform-mask",
    "version": "0.1.0",
    "kind": "transform",
    "description": "Hashes or masks text columns (e.g. emails); NULLs stay NULL",
    "config_schema": {
        "type": "object",
        "required": ["columns", "mode"],
        "additionalProperties": false,
        "properties": {
            "columns": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                        "description": "utf8 or large_utf8 columns"},
            "mode": {"enum": ["hash", "mask"]}
        }
    }
});

#define MAX_COLUMNS 64
#define HASH_HEX 16u

enum { MODE_HASH, MODE_MASK };

static struct {
    uint8_t names[MAX_COLUMNS][256];
    uint32_t name_lens[MAX_COLUMNS];
    uint32_t n_names;
    int mode;
    uint8_t *masked;  /* per schema field: 1 when the field is masked */
    uint32_t n_buffers;
    uint64_t *sizes;
    uint8_t **ptrs;
} M;

RB_EXPORT("rb_init") int32_t rb_init(const uint8_t *cfg, uint32_t len) {
    rb_json doc, key, v, item;
    uint8_t text[256];
    uint32_t text_len;
    const uint8_t *cursor = NULL;
    if (rb_json_parse(cfg, len, &doc) != RB_OK) return RB_ERR;
    if (doc.kind != RB_JSON_OBJECT) return rb_fail("config must be a JSON object");
    while (rb_json_next(&doc, &cursor, &key, &v)) {
        if (rb_json_string(&key, text, sizeof(text), &text_len) != RB_OK) return RB_ERR;
        if (!rb_bytes_eq(text, text_len, (const uint8_t *)"columns", 7) &&
            !rb_bytes_eq(text, text_len, (const uint8_t *)"mode", 4)) {
            rb_msg m = {.len = 0};
            rb_msg_str(&m, "config: unknown key '");
            rb_msg_bytes(&m, text, text_len);
            rb_msg_str(&m, "' (expected columns, mode)");
            return rb_fail_msg(&m);
        }
    }
    if (rb_json_get(&doc, "mode", &v) != 1) return rb_fail("config.mode is required (hash or mask)");
    if (rb_json_string(&v, text, sizeof(text), &text_len) != RB_OK) return RB_ERR;
    if (rb_bytes_eq(text, text_len, (const uint8_t *)"hash", 4)) M.mode = MODE_HASH;
    else if (rb_bytes_eq(text, text_len, (const uint8_t *)"mask", 4)) M.mode = MODE_MASK;
    else return rb_fail("config.mode must be hash or mask");
    if (rb_json_get(&doc, "columns", &v) != 1 || v.kind != RB_JSON_ARRAY)
        return rb_fail("config.columns must be a list of column names");
    cursor = NULL;
    M.n_names = 0;
    while (rb_json_next(&v, &cursor, NULL, &item)) {
        if (M.n_names == MAX_COLUMNS) return rb_fail("config.columns: at most 64 columns");
        if (rb_json_string(&item, M.names[M.n_names], 256, &M.name_lens[M.n_names]) != RB_OK) return RB_ERR;
        M.n_names++;
    }
    if (!M.n_names) return rb_fail("config.columns must not be empty");
    return RB_OK;
}

static int on_schema(const rb_schema *s) {
    M.masked = rb_alloc(s->n_fields + 1);
    if (!M.masked) return rb_fail("out of memory");
    rb_memset(M.masked, 0, s->n_fields);
    for (uint32_t i = 0; i < M.n_names; i++) {
        int32_t at = rb_schema_find(s, M.names[i], M.name_lens[i]);
        rb_msg m = {.len = 0};
        rb_msg_str(&m, "config.columns: '");
        rb_msg_bytes(&m, M.names[i], M.name_lens[i]);
        if (at < 0) {
            rb_msg_str(&m, "' is not a column of the stream");
            return rb_fail_msg(&m);
        }
        if (s->fields[at].type != RB_TYPE_UTF8 && s->fields[at].type != RB_TYPE_LARGE_UTF8) {
            rb_msg_str(&m, "' is not a text (utf8) column");
            return rb_fail_msg(&m);
        }
        M.masked[at] = 1;
    }
    M.n_buffers = 0;
    for (uint32_t i = 0; i < s->n_fields; i++) M.n_buffers += rb_layout_buffers(s->fields[i].layout);
    M.sizes = (uint64_t *)rb_alloc(M.n_buffers * 8u + 8u);
    M.ptrs = (uint8_t **)rb_alloc(M.n_buffers * 4u + 4u);
    if (!M.sizes || !M.ptrs) return rb_fail("out of memory");
    return RB_OK;
}

static uint32_t chars(const uint8_t *p, uint64_t n) {
    uint32_t count = 0;
    for (uint64_t i = 0; i < n; i++) count += (p[i] & 0xC0) != 0x80;
    return count;
}

/* Length of the local part masked: position of the last '@', or n when there is none. */
static uint64_t local_part(const uint8_t *p, uint64_t n) {
    for (uint64_t i = n; i > 0; i--)
        if (p[i - 1] == '@') return i - 1;
    return n;
}

static uint64_t masked_len(const uint8_t *p, uint64_t n) {
    if (M.mode == MODE_HASH) return HASH_HEX;
    uint64_t local = local_part(p, n);
    return chars(p, local) + (n - local);
}

/* Writes the masked form of p[0..n) at out; returns its length. */
static uint64_t mask_value(const uint8_t *p, uint64_t n, uint8_t *out) {
    if (M.mode == MODE_HASH) {
        static const char hex[] = "0123456789abcdef";
        uint64_t h = 0xcbf29ce484222325ull;
        for (uint64_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
        for (uint32_t i = 0; i < HASH_HEX; i++) out[i] = (uint8_t)hex[(h >> (60 - 4 * i)) & 15];
        return HASH_HEX;
    }
    uint64_t local = local_part(p, n), stars = chars(p, local);
    rb_memset(out, '*', stars);
    rb_memcpy(out + stars, p + local, n - local);
    return stars + n - local;
}

static void mask_column(const rb_field *f, const rb_column *c, uint32_t n, uint8_t *const *out) {
    int wide = f->layout == RB_VARBIN64;
    uint64_t pos = 0;
    if (c->validity) rb_take_bits(c->validity, NULL, n, out[0]);
    for (uint32_t r = 0; r < n; r++) {
        if (wide) rb_store_u64(out[1] + 8 * (uint64_t)r, pos);
        else rb_store_u32(out[1] + 4 * (uint64_t)r, (uint32_t)pos);
        if (!c->validity || rb_bit(c->validity, r)) {
            uint64_t start = rb_offset(f, c, r);
            pos += mask_value(c->values + start, rb_offset(f, c, r + 1) - start, out[2] + pos);
        }
    }
    if (wide) rb_store_u64(out[1] + 8 * (uint64_t)n, pos);
    else rb_store_u32(out[1] + 4 * (uint64_t)n, (uint32_t)pos);
}

static int on_batch(const rb_schema *s, const rb_batch *b, rb_writer *w) {
    uint32_t n = (uint32_t)b->length, bi = 0;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const rb_field *f = &s->fields[i];
        const rb_column *c = &b->columns[i];
        uint64_t *sizes = M.sizes + bi;
        rb_take_sizes(f, c, NULL, n, sizes);
        if (M.masked[i]) {
            uint64_t bytes = 0;
            for (uint32_t r = 0; r < n; r++) {
                if (!c->validity || rb_bit(c->validity, r)) {
                    uint64_t start = rb_offset(f, c, r);
                    bytes += masked_len(c->values + start, rb_offset(f, c, r + 1) - start);
                }
            }
            if (f->layout == RB_VARBIN32 && bytes > 0x7FFFFFFFu)
                return rb_fail("masked values exceed 2 GiB in one batch; use smaller batches");
            sizes[2] = bytes;
        }
        bi += rb_layout_buffers(f->layout);
    }
    if (rb_writer_layout(w, n, s->n_fields, M.n_buffers, M.sizes, M.ptrs) != RB_OK) return RB_ERR;
    bi = 0;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const rb_field *f = &s->fields[i];
        const rb_column *c = &b->columns[i];
        if (M.masked[i]) mask_column(f, c, n, M.ptrs + bi);
        else rb_take(f, c, NULL, n, M.ptrs + bi);
        rb_writer_node(w, i, n, c->null_count);
        bi += rb_layout_buffers(f->layout);
    }
    return rb_writer_emit(w);
}

RB_EXPORT("rb_run") int32_t rb_run(void) {
    static const rb_transform t = {on_schema, on_batch};
    return rb_transform_run(&t);
}
