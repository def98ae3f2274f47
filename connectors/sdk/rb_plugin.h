/* rb_plugin.h: C SDK for rapidbyte-fast WASM plugins (ABI version 1, DESIGN §7).
 *
 * A plugin is one C file that includes this header once. The header provides
 *   - the host imports of module "rapidbyte" and the SDK-owned exports rb_abi_version,
 *     rb_alloc and rb_free (the plugin writes rb_init and rb_run);
 *   - RB_MANIFEST, which stores the plugin's JSON manifest in the custom section
 *     "rapidbyte.manifest";
 *   - a power-of-two size-class allocator on linear memory;
 *   - a validating JSON reader for the config handed to rb_init;
 *   - a bounds-checked reader for Arrow IPC stream messages (schema and record batch) with
 *     flat schemas: fixed-width, boolean, utf8/binary and large_utf8/large_binary columns,
 *     no compression, no dictionaries, little-endian;
 *   - rb_take (copy a column, optionally through a row selection) and a writer for record
 *     batch messages;
 *   - rb_transform_run, the read-schema / echo-schema / batch loop of a transform.
 *
 * Every function that can fail returns RB_ERR after reporting the reason with set_error, so
 * rb_run can simply return it. Target: wasm32-freestanding with bulk-memory (no libc, no
 * WASI); connectors/build.py has the exact flags.
 */
#ifndef RB_PLUGIN_H
#define RB_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#define RB_ABI_VERSION 1
#define RB_OK 0
#define RB_ERR (-1)

/* SDK functions: a plugin uses only some of them, so unused ones must not warn. */
#define RB_API static __attribute__((unused))
#define RB_EXPORT(name) __attribute__((export_name(name), visibility("default")))
#define RB_IMPORT(name) __attribute__((import_module("rapidbyte"), import_name(name)))

/* RB_MANIFEST({"name": "...", ...}) at file scope: the JSON is written as plain tokens and
 * stringized twice into an assembler string. It goes through the assembler because clang
 * puts section-attributed variables in the data segment on wasm, not in a custom section. */
#define RB__QUOTE(x) #x
#define RB__MANIFEST_ASM(text) \
    __asm__(".section .custom_section.rapidbyte.manifest,\"\",@\n.ascii " RB__QUOTE(text) "\n.text\n")
#define RB_MANIFEST(...) RB__MANIFEST_ASM(#__VA_ARGS__)

enum { RB_LOG_ERROR = 0, RB_LOG_WARN = 1, RB_LOG_INFO = 2, RB_LOG_DEBUG = 3, RB_LOG_TRACE = 4 };

/* Host imports. next_batch copies the next IPC message into buf and returns its size; a size
 * above cap means nothing was written and the caller must retry with at least that much
 * room; -1 means end of stream. emit_batch hands one IPC message to the host (0 = accepted;
 * the host traps on an invalid message). */
RB_IMPORT("next_batch") int64_t rb_next_batch(uint8_t *buf, uint32_t cap);
RB_IMPORT("emit_batch") int32_t rb_emit_batch(const uint8_t *ptr, uint32_t len);
RB_IMPORT("log") void rb_log(int32_t level, const char *ptr, uint32_t len);
RB_IMPORT("set_error") void rb_set_error(const char *ptr, uint32_t len);

#define rb_memcpy __builtin_memcpy
#define rb_memset __builtin_memset

RB_API inline uint16_t rb_load_u16(const uint8_t *p) { uint16_t v; rb_memcpy(&v, p, 2); return v; }
RB_API inline uint32_t rb_load_u32(const uint8_t *p) { uint32_t v; rb_memcpy(&v, p, 4); return v; }
RB_API inline uint64_t rb_load_u64(const uint8_t *p) { uint64_t v; rb_memcpy(&v, p, 8); return v; }
RB_API inline void rb_store_u16(uint8_t *p, uint16_t v) { rb_memcpy(p, &v, 2); }
RB_API inline void rb_store_u32(uint8_t *p, uint32_t v) { rb_memcpy(p, &v, 4); }
RB_API inline void rb_store_u64(uint8_t *p, uint64_t v) { rb_memcpy(p, &v, 8); }
RB_API inline uint32_t rb_bit(const uint8_t *bits, uint64_t i) { return (bits[i >> 3] >> (i & 7)) & 1u; }
RB_API inline uint64_t rb_align8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

RB_API uint32_t rb_strlen(const char *s) {
    uint32_t n = 0;
    while (s[n]) n++;
    return n;
}

RB_API int rb_bytes_eq(const uint8_t *a, uint32_t an, const uint8_t *b, uint32_t bn) {
    if (an != bn) return 0;
    for (uint32_t i = 0; i < an; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

/* ---- messages and errors ------------------------------------------------------------ */

/* A bounded text buffer for error and log messages; text past its size is dropped. */
typedef struct {
    char text[512];
    uint32_t len;
} rb_msg;

RB_API void rb_msg_bytes(rb_msg *m, const void *p, uint32_t n) {
    const uint8_t *s = (const uint8_t *)p;
    for (uint32_t i = 0; i < n && m->len < sizeof(m->text); i++) m->text[m->len++] = (char)s[i];
}

RB_API void rb_msg_str(rb_msg *m, const char *s) { rb_msg_bytes(m, s, rb_strlen(s)); }

RB_API void rb_msg_u64(rb_msg *m, uint64_t v) {
    char digits[20];
    uint32_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) rb_msg_bytes(m, &digits[--n], 1);
}

RB_API int rb_fail_msg(const rb_msg *m) {
    rb_set_error(m->text, m->len);
    return RB_ERR;
}

RB_API int rb_fail(const char *s) {
    rb_set_error(s, rb_strlen(s));
    return RB_ERR;
}

RB_API void rb_log_str(int32_t level, const char *s) { rb_log(level, s, rb_strlen(s)); }

/* ---- allocator ---------------------------------------------------------------------- */

/* Blocks are powers of two from 16 bytes to 2 GiB, each behind a 16-byte header holding a
 * magic word and its class, so rb_free needs no size, payloads stay 16-byte aligned, and a
 * freed block is reused by the next request of its class (batches of similar size recycle
 * the same blocks). Memory is never returned to the host: wasm cannot shrink. */
#define RB__HDR 16u
#define RB__MIN_CLASS 4u
#define RB__MAX_CLASS 31u
#define RB__LIVE 0x6b4c4252u /* "RBLk" */
#define RB__FREE 0x65724652u /* "RFre" */

extern uint8_t __heap_base;
static uint8_t *rb__free_lists[RB__MAX_CLASS + 1];
static uint32_t rb__brk;

RB_EXPORT("rb_abi_version") int32_t rb_abi_version(void) { return RB_ABI_VERSION; }

/* Returns a 16-byte aligned block of at least size bytes, or NULL when memory is exhausted. */
RB_EXPORT("rb_alloc") uint8_t *rb_alloc(uint32_t size) {
    if (size > (1u << RB__MAX_CLASS) - RB__HDR) return NULL;
    uint32_t total = size + RB__HDR;
    uint32_t cls = total <= (1u << RB__MIN_CLASS) ? RB__MIN_CLASS : 32u - (uint32_t)__builtin_clz(total - 1);
    uint8_t *block = rb__free_lists[cls];
    if (block) {
        rb__free_lists[cls] = (uint8_t *)(uintptr_t)rb_load_u32(block + 8);
    } else {
        if (!rb__brk) rb__brk = ((uint32_t)(uintptr_t)&__heap_base + 15u) & ~15u;
        uint64_t end = (uint64_t)rb__brk + ((uint64_t)1 << cls);
        uint64_t have = (uint64_t)__builtin_wasm_memory_size(0) * 65536u;
        if (end >= ((uint64_t)1 << 32)) return NULL;
        if (end > have && __builtin_wasm_memory_grow(0, (size_t)((end - have + 65535u) / 65536u)) == (size_t)-1)
            return NULL;
        block = (uint8_t *)(uintptr_t)rb__brk;
        rb__brk = (uint32_t)end;
    }
    rb_store_u32(block, RB__LIVE);
    rb_store_u32(block + 4, cls);
    return block + RB__HDR;
}

/* Frees a block from rb_alloc; NULL is ignored, anything else that is not a live block traps. */
RB_EXPORT("rb_free") void rb_free(uint8_t *ptr) {
    if (!ptr) return;
    uint8_t *block = ptr - RB__HDR;
    uint32_t cls = rb_load_u32(block + 4);
    if (rb_load_u32(block) != RB__LIVE || cls < RB__MIN_CLASS || cls > RB__MAX_CLASS) __builtin_trap();
    rb_store_u32(block, RB__FREE);
    rb_store_u32(block + 8, (uint32_t)(uintptr_t)rb__free_lists[cls]);
    rb__free_lists[cls] = block;
}

/* Makes *buf hold at least need bytes (contents are not kept). */
RB_API int rb_reserve(uint8_t **buf, uint32_t *cap, uint64_t need) {
    if (need <= *cap) return RB_OK;
    if (need > 0xFFFFFFFFu) return rb_fail("out of memory: buffer above 4 GiB");
    rb_free(*buf);
    *cap = 0;
    *buf = rb_alloc((uint32_t)need);
    if (!*buf) return rb_fail("out of memory");
    *cap = (uint32_t)need;
    return RB_OK;
}

/* ---- JSON config -------------------------------------------------------------------- */

enum { RB_JSON_NULL = 1, RB_JSON_BOOL, RB_JSON_NUMBER, RB_JSON_STRING, RB_JSON_ARRAY, RB_JSON_OBJECT };

/* One JSON value: its kind and its raw text [start, end). rb_json_parse validates the whole
 * document first, so the accessors below walk text that is known to be well formed. */
typedef struct {
    int kind;
    const uint8_t *start;
    const uint8_t *end;
} rb_json;

RB_API const uint8_t *rb__ws(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

RB_API int rb__hex(uint8_t c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

RB_API const uint8_t *rb__json_string_end(const uint8_t *p, const uint8_t *end) {
    for (p++; p < end; p++) {
        if (*p == '"') return p + 1;
        if (*p < 0x20) return NULL;
        if (*p == '\\') {
            if (++p >= end) return NULL;
            if (*p == 'u') {
                if (end - p < 5) return NULL;
                for (int i = 1; i <= 4; i++)
                    if (rb__hex(p[i]) < 0) return NULL;
                p += 4;
            } else if (*p != '"' && *p != '\\' && *p != '/' && *p != 'b' && *p != 'f' && *p != 'n' &&
                       *p != 'r' && *p != 't') {
                return NULL;
            }
        }
    }
    return NULL;
}

RB_API const uint8_t *rb__digits(const uint8_t *p, const uint8_t *end) {
    const uint8_t *q = p;
    while (q < end && *q >= '0' && *q <= '9') q++;
    return q > p ? q : NULL;
}

RB_API const uint8_t *rb__json_number_end(const uint8_t *p, const uint8_t *end) {
    if (p < end && *p == '-') p++;
    if (p < end && *p == '0') {
        p++;
    } else if (!(p = rb__digits(p, end))) {
        return NULL;
    }
    if (p < end && *p == '.' && !(p = rb__digits(p + 1, end))) return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (!(p = rb__digits(p, end))) return NULL;
    }
    return p;
}

RB_API const uint8_t *rb__literal_end(const uint8_t *p, const uint8_t *end, const char *word) {
    uint32_t n = rb_strlen(word);
    if ((uint64_t)(end - p) < n || !rb_bytes_eq(p, n, (const uint8_t *)word, n)) return NULL;
    return p + n;
}

/* Parses the value at p (no leading space); returns the end of its text or NULL. */
RB_API const uint8_t *rb__json_value(const uint8_t *p, const uint8_t *end, int depth, rb_json *out) {
    if (p >= end || depth > 64) return NULL;
    const uint8_t *q;
    int kind;
    if (*p == '{' || *p == '[') {
        uint8_t close = *p == '{' ? '}' : ']';
        kind = *p == '{' ? RB_JSON_OBJECT : RB_JSON_ARRAY;
        q = rb__ws(p + 1, end);
        if (q < end && *q == close) {
            q++;
        } else {
            for (;;) {
                rb_json item;
                if (kind == RB_JSON_OBJECT) {
                    if (q >= end || *q != '"' || !(q = rb__json_string_end(q, end))) return NULL;
                    q = rb__ws(q, end);
                    if (q >= end || *q != ':') return NULL;
                    q = rb__ws(q + 1, end);
                }
                if (!(q = rb__json_value(q, end, depth + 1, &item))) return NULL;
                q = rb__ws(q, end);
                if (q < end && *q == ',') {
                    q = rb__ws(q + 1, end);
                } else if (q < end && *q == close) {
                    q++;
                    break;
                } else {
                    return NULL;
                }
            }
        }
    } else if (*p == '"') {
        kind = RB_JSON_STRING;
        q = rb__json_string_end(p, end);
    } else if (*p == 't' || *p == 'f') {
        kind = RB_JSON_BOOL;
        q = rb__literal_end(p, end, *p == 't' ? "true" : "false");
    } else if (*p == 'n') {
        kind = RB_JSON_NULL;
        q = rb__literal_end(p, end, "null");
    } else {
        kind = RB_JSON_NUMBER;
        q = rb__json_number_end(p, end);
    }
    if (!q) return NULL;
    out->kind = kind;
    out->start = p;
    out->end = q;
    return q;
}

/* Parses a whole JSON document. */
RB_API int rb_json_parse(const uint8_t *text, uint32_t len, rb_json *out) {
    const uint8_t *end = text + len;
    const uint8_t *q = rb__json_value(rb__ws(text, end), end, 0, out);
    if (!q || rb__ws(q, end) != end) return rb_fail("config is not valid JSON");
    return RB_OK;
}

/* Steps through the items of an array or the members of an object: *cursor starts NULL;
 * returns 1 with the next item (and, for objects, its key) or 0 after the last one. */
RB_API int rb_json_next(const rb_json *v, const uint8_t **cursor, rb_json *key, rb_json *item) {
    const uint8_t *p = *cursor ? rb__ws(*cursor, v->end) : rb__ws(v->start + 1, v->end);
    if (*p == ',') p = rb__ws(p + 1, v->end);
    if (*p == ']' || *p == '}') return 0;
    if (v->kind == RB_JSON_OBJECT) {
        p = rb__json_value(p, v->end, 0, key);
        p = rb__ws(p, v->end) + 1; /* ':' */
        p = rb__ws(p, v->end);
    }
    *cursor = rb__json_value(p, v->end, 0, item);
    return 1;
}

/* Decodes a JSON string into dst as UTF-8: 0 done, -1 dst too small, -2 lone surrogate. */
RB_API int rb__json_decode(const rb_json *v, uint8_t *dst, uint32_t cap, uint32_t *len) {
    uint32_t n = 0;
    for (const uint8_t *p = v->start + 1; p < v->end - 1; p++) {
        uint32_t cp = *p;
        int escaped = *p == '\\';
        if (escaped) {
            p++;
            switch (*p) {
            case 'b': cp = '\b'; break;
            case 'f': cp = '\f'; break;
            case 'n': cp = '\n'; break;
            case 'r': cp = '\r'; break;
            case 't': cp = '\t'; break;
            case 'u':
                cp = (uint32_t)(rb__hex(p[1]) << 12 | rb__hex(p[2]) << 8 | rb__hex(p[3]) << 4 | rb__hex(p[4]));
                p += 4;
                /* validated text: a "\u" after a high surrogate has its four digits */
                if (cp >= 0xD800 && cp < 0xDC00 && v->end - p > 2 && p[1] == '\\' && p[2] == 'u') {
                    uint32_t lo = (uint32_t)(rb__hex(p[3]) << 12 | rb__hex(p[4]) << 8 | rb__hex(p[5]) << 4 |
                                             rb__hex(p[6]));
                    if (lo >= 0xDC00 && lo < 0xE000) {
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                        p += 6;
                    }
                }
                if (cp >= 0xD800 && cp < 0xE000) return -2;
                break;
            default: cp = *p; break; /* " \ / */
            }
        }
        uint8_t enc[4];
        uint32_t k;
        if (cp < 0x80 || !escaped) { /* unescaped bytes are UTF-8 already */
            enc[0] = (uint8_t)cp;
            k = 1;
        } else if (cp < 0x800) {
            enc[0] = (uint8_t)(0xC0 | cp >> 6);
            enc[1] = (uint8_t)(0x80 | (cp & 0x3F));
            k = 2;
        } else if (cp < 0x10000) {
            enc[0] = (uint8_t)(0xE0 | cp >> 12);
            enc[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            enc[2] = (uint8_t)(0x80 | (cp & 0x3F));
            k = 3;
        } else {
            enc[0] = (uint8_t)(0xF0 | cp >> 18);
            enc[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            enc[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            enc[3] = (uint8_t)(0x80 | (cp & 0x3F));
            k = 4;
        }
        if (cap - n < k) return -1;
        rb_memcpy(dst + n, enc, k);
        n += k;
    }
    *len = n;
    return 0;
}

/* Decodes a JSON string (escapes, \u surrogate pairs) into dst as UTF-8. */
RB_API int rb_json_string(const rb_json *v, uint8_t *dst, uint32_t cap, uint32_t *len) {
    if (v->kind != RB_JSON_STRING) return rb_fail("config: expected a string");
    int r = rb__json_decode(v, dst, cap, len);
    if (r == -1) return rb_fail("config: string too long");
    if (r == -2) return rb_fail("config: lone surrogate in a string");
    return RB_OK;
}

/* Looks up key in an object: 1 found, 0 absent, RB_ERR if obj is not an object. */
RB_API int rb_json_get(const rb_json *obj, const char *key, rb_json *out) {
    uint8_t name[256];
    uint32_t name_len;
    const uint8_t *cursor = NULL;
    rb_json k;
    if (obj->kind != RB_JSON_OBJECT) return rb_fail("config: expected a JSON object");
    while (rb_json_next(obj, &cursor, &k, out)) {
        if (rb__json_decode(&k, name, sizeof(name), &name_len) == 0 &&
            rb_bytes_eq(name, name_len, (const uint8_t *)key, rb_strlen(key)))
            return 1;
    }
    return 0;
}

/* Big unsigned integers, just enough to compare a decimal with a binary midpoint exactly:
 * 80 little-endian 32-bit limbs hold 2560 bits, more than mant·10^e or (2f+1)·2^s need for
 * every exponent rb_json_number lets through. */
#define RB__LIMBS 80u

typedef struct {
    uint32_t len;
    uint32_t d[RB__LIMBS];
} rb__big;

RB_API void rb__big_set(rb__big *b, uint64_t v) {
    b->len = 0;
    for (; v; v >>= 32) b->d[b->len++] = (uint32_t)v;
}

RB_API void rb__big_mul(rb__big *b, uint32_t m) {
    uint64_t carry = 0;
    for (uint32_t i = 0; i < b->len; i++) {
        uint64_t t = (uint64_t)b->d[i] * m + carry;
        b->d[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry && b->len < RB__LIMBS) b->d[b->len++] = (uint32_t)carry;
}

RB_API void rb__big_pow10(rb__big *b, uint32_t n) {
    for (; n >= 9; n -= 9) rb__big_mul(b, 1000000000u);
    static const uint32_t small[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
    rb__big_mul(b, small[n]);
}

RB_API void rb__big_shl(rb__big *b, uint32_t bits) {
    uint32_t words = bits / 32, rem = bits % 32;
    if (!b->len) return;
    if (b->len + words + 1 > RB__LIMBS) words = RB__LIMBS - b->len - 1; /* unreachable in range */
    b->d[b->len + words] = 0;
    for (uint32_t i = b->len; i-- > 0;) {
        b->d[i + words + 1] |= rem ? b->d[i] >> (32 - rem) : 0;
        b->d[i + words] = b->d[i] << rem;
    }
    for (uint32_t i = 0; i < words; i++) b->d[i] = 0;
    b->len += words + 1;
    while (b->len && !b->d[b->len - 1]) b->len--;
}

RB_API int rb__big_cmp(const rb__big *a, const rb__big *b) {
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    for (uint32_t i = a->len; i-- > 0;)
        if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

/* Sign of mant·10^e10 minus the midpoint between finite x >= 0 and the next double up. */
RB_API int rb__cmp_midpoint(uint64_t mant, int32_t e10, double x) {
    uint64_t bits;
    rb_memcpy(&bits, &x, 8);
    int32_t biased = (int32_t)(bits >> 52);
    uint64_t f = bits & ((1ull << 52) - 1);
    int32_t q = biased ? biased - 1075 : -1074;
    if (biased) f |= 1ull << 52;
    rb__big lhs, rhs; /* mant·10^e10 against (2f + 1)·2^(q - 1) */
    rb__big_set(&lhs, mant);
    rb__big_set(&rhs, 2 * f + 1);
    if (e10 >= 0) rb__big_pow10(&lhs, (uint32_t)e10);
    else rb__big_pow10(&rhs, (uint32_t)-e10);
    if (q - 1 >= 0) rb__big_shl(&rhs, (uint32_t)(q - 1));
    else rb__big_shl(&lhs, (uint32_t)(1 - q));
    return rb__big_cmp(&lhs, &rhs);
}

RB_API double rb__step(double x, int up) {
    uint64_t bits;
    rb_memcpy(&bits, &x, 8);
    bits = up ? bits + 1 : bits - 1;
    rb_memcpy(&x, &bits, 8);
    return x;
}

/* Reads a number. *is_int is 1 when the text has no fraction or exponent and fits in int64
 * (then *i holds it exactly, -2^63 and 2^63 - 1 included). *d is the correctly rounded double (ties to even) for up to
 * 19 significant digits, which covers every double's shortest repr; longer numbers are cut
 * to 19 digits first. */
RB_API int rb_json_number(const rb_json *v, double *d, int64_t *i, int *is_int) {
    static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    if (v->kind != RB_JSON_NUMBER) return rb_fail("config: expected a number");
    const uint8_t *p = v->start;
    int neg = *p == '-';
    uint64_t mant = 0;
    int64_t exp10 = 0, exp_part = 0;
    int digits = 0, integral = 1, exp_neg = 0;
    p += neg;
    for (; p < v->end && *p != 'e' && *p != 'E'; p++) {
        if (*p == '.') {
            integral = 0;
            continue;
        }
        if (digits < 19) {
            mant = mant * 10 + (uint64_t)(*p - '0');
            if (mant) digits++;
            exp10 -= !integral;
        } else {
            exp10 += integral; /* dropped digit: scale by ten unless it is a fraction digit */
        }
    }
    if (p < v->end) {
        integral = 0;
        p++;
        exp_neg = *p == '-';
        p += *p == '-' || *p == '+';
        for (; p < v->end; p++)
            if (exp_part < 100000) exp_part = exp_part * 10 + (*p - '0');
    }
    exp10 += exp_neg ? -exp_part : exp_part;
    *is_int = integral && exp10 == 0 && mant <= (1ull << 63) - !neg;
    *i = neg ? (int64_t)(0 - mant) : (int64_t)mant;
    double x;
    if (mant == 0 || digits + exp10 < -325) {
        x = 0.0;
    } else if (digits + exp10 > 310) {
        x = __builtin_inf();
    } else if (mant < (1ull << 53) && exp10 >= -22 && exp10 <= 22) {
        /* both factors exact: one correctly rounded operation */
        x = exp10 < 0 ? (double)mant / pow10[-exp10] : (double)mant * pow10[exp10];
    } else {
        /* an estimate within a few ulps, then moved one ulp at a time to the correctly
         * rounded value by exact comparison with the midpoints around it */
        x = (double)mant;
        for (int64_t e = exp10; e < 0 && x != 0.0; e += 22) x /= pow10[-e > 22 ? 22 : -e];
        for (int64_t e = exp10; e > 0 && x < 1e308; e -= 22) x *= pow10[e > 22 ? 22 : e];
        for (;;) {
            uint64_t bits;
            rb_memcpy(&bits, &x, 8);
            if (x != __builtin_inf()) {
                int c = rb__cmp_midpoint(mant, (int32_t)exp10, x);
                if (c > 0 || (c == 0 && (bits & 1))) {
                    x = rb__step(x, 1);
                    continue;
                }
            }
            if (x != 0.0) {
                double below = rb__step(x, 0);
                int c = rb__cmp_midpoint(mant, (int32_t)exp10, below);
                if (c < 0 || (c == 0 && !((bits - 1) & 1))) {
                    x = below;
                    continue;
                }
            }
            break;
        }
    }
    *d = neg ? -x : x;
    return RB_OK;
}

/* ---- Arrow IPC ---------------------------------------------------------------------- */

/* Arrow Type union tags (Schema.fbs) and MessageHeader tags (Message.fbs). */
enum {
    RB_TYPE_INT = 2, RB_TYPE_FLOAT = 3, RB_TYPE_BINARY = 4, RB_TYPE_UTF8 = 5, RB_TYPE_BOOL = 6,
    RB_TYPE_DECIMAL = 7, RB_TYPE_DATE = 8, RB_TYPE_TIME = 9, RB_TYPE_TIMESTAMP = 10, RB_TYPE_INTERVAL = 11,
    RB_TYPE_FIXED_BINARY = 15, RB_TYPE_DURATION = 18, RB_TYPE_LARGE_BINARY = 19, RB_TYPE_LARGE_UTF8 = 20
};
enum { RB_MSG_SCHEMA = 1, RB_MSG_RECORD_BATCH = 3 };

/* How a column's buffers look: validity + values for FIXED and BOOL, validity + offsets +
 * bytes for VARBIN32 (int32 offsets) and VARBIN64 (int64 offsets). */
enum { RB_FIXED = 1, RB_BOOL, RB_VARBIN32, RB_VARBIN64 };

typedef struct {
    const uint8_t *name; /* UTF-8, not NUL-terminated; points into rb_schema.raw */
    uint32_t name_len;
    uint8_t type;        /* RB_TYPE_* */
    uint8_t layout;      /* RB_FIXED ... */
    uint8_t is_signed;   /* RB_TYPE_INT */
    uint8_t is_float;    /* RB_TYPE_FLOAT */
    uint32_t width;      /* bytes per value for RB_FIXED */
} rb_field;

typedef struct {
    uint8_t *raw; /* a copy of the whole schema message, so it can be echoed */
    uint32_t raw_len;
    uint32_t n_fields;
    rb_field *fields;
} rb_schema;

typedef struct {
    int64_t null_count;
    const uint8_t *validity; /* NULL when the column has no nulls */
    const uint8_t *values;   /* fixed-width values, boolean bits, or string bytes */
    uint64_t values_len;
    const uint8_t *offsets;  /* VARBIN layouts: length + 1 offsets, validated monotonic */
} rb_column;

typedef struct {
    int64_t length;
    uint32_t n_columns;
    rb_column *columns;
} rb_batch;

RB_API uint32_t rb_layout_buffers(uint8_t layout) { return layout >= RB_VARBIN32 ? 3 : 2; }

/* Index of the field called name, or -1. */
RB_API int32_t rb_schema_find(const rb_schema *s, const uint8_t *name, uint32_t len) {
    for (uint32_t i = 0; i < s->n_fields; i++)
        if (rb_bytes_eq(s->fields[i].name, s->fields[i].name_len, name, len)) return (int32_t)i;
    return -1;
}

/* Flatbuffers, read with every offset checked against the buffer: a table and its vtable. */
typedef struct {
    const uint8_t *b;
    uint32_t n;
} rb__fb;

typedef struct {
    uint32_t pos, vt;
    uint16_t vt_len, tbl_len;
} rb__tbl;

RB_API int rb__table(const rb__fb *fb, uint32_t pos, rb__tbl *t) {
    if (pos > fb->n || fb->n - pos < 4) return 0;
    int64_t vt = (int64_t)pos - (int32_t)rb_load_u32(fb->b + pos);
    if (vt < 0 || vt > (int64_t)fb->n - 4) return 0;
    t->pos = pos;
    t->vt = (uint32_t)vt;
    t->vt_len = rb_load_u16(fb->b + vt);
    t->tbl_len = rb_load_u16(fb->b + vt + 2);
    return t->vt_len >= 4 && !(t->vt_len & 1) && (uint64_t)vt + t->vt_len <= fb->n && t->tbl_len >= 4 &&
           (uint64_t)pos + t->tbl_len <= fb->n;
}

/* Position of field idx holding size bytes: 1 present, 0 absent, -1 out of bounds. */
RB_API int rb__field(const rb__fb *fb, const rb__tbl *t, uint32_t idx, uint32_t size, uint32_t *pos) {
    uint32_t slot = 4 + 2 * idx;
    if (slot + 2 > t->vt_len) return 0;
    uint16_t off = rb_load_u16(fb->b + t->vt + slot);
    if (!off) return 0;
    if (off < 4 || (uint32_t)off + size > t->tbl_len) return -1;
    *pos = t->pos + off;
    return 1;
}

/* Unsigned little-endian scalar of 1, 2, 4 or 8 bytes, dflt when absent; 0 on bad offsets. */
RB_API int rb__scalar(const rb__fb *fb, const rb__tbl *t, uint32_t idx, uint32_t size, uint64_t dflt, uint64_t *out) {
    uint32_t pos;
    int r = rb__field(fb, t, idx, size, &pos);
    if (r < 0) return 0;
    if (!r) {
        *out = dflt;
        return 1;
    }
    uint64_t v = 0;
    rb_memcpy(&v, fb->b + pos, size);
    *out = v;
    return 1;
}

/* Follows the offset in field idx: 1 present, 0 absent, -1 bad. */
RB_API int rb__ref(const rb__fb *fb, const rb__tbl *t, uint32_t idx, uint32_t *target) {
    uint32_t pos;
    int r = rb__field(fb, t, idx, 4, &pos);
    if (r <= 0) return r;
    uint64_t to = (uint64_t)pos + rb_load_u32(fb->b + pos);
    if (to >= fb->n) return -1;
    *target = (uint32_t)to;
    return 1;
}

/* Vector at pos: element count and start, checked to fit. */
RB_API int rb__vector(const rb__fb *fb, uint32_t pos, uint32_t elem, uint32_t *count, uint32_t *start) {
    if (pos > fb->n || fb->n - pos < 4) return 0;
    *count = rb_load_u32(fb->b + pos);
    *start = pos + 4;
    return (uint64_t)*start + (uint64_t)*count * elem <= fb->n;
}

/* Optional vector/table field: 1 present (vector count/start filled), 0 absent, -1 bad. */
RB_API int rb__vector_field(const rb__fb *fb, const rb__tbl *t, uint32_t idx, uint32_t elem, uint32_t *count,
                            uint32_t *start) {
    uint32_t at;
    int r = rb__ref(fb, t, idx, &at);
    if (r <= 0) return r;
    return rb__vector(fb, at, elem, count, start) ? 1 : -1;
}

/* Splits an encapsulated message (0xFFFFFFFF, int32 metadata size, Message flatbuffer, body)
 * and returns its header type, header table and body; RB_ERR if malformed. */
RB_API int rb__message(const uint8_t *msg, uint32_t len, rb__fb *fb, rb__tbl *header, int *type,
                       const uint8_t **body, uint64_t *body_len) {
    uint64_t hdr_type, version, blen;
    uint32_t at;
    rb__tbl m;
    if (len < 8 || rb_load_u32(msg) != 0xFFFFFFFFu) return rb_fail("IPC message lacks the continuation marker");
    uint32_t meta = rb_load_u32(msg + 4);
    if (meta > len - 8) return rb_fail("IPC message metadata is truncated");
    fb->b = msg + 8;
    fb->n = meta;
    if (meta < 4 || !rb__table(fb, rb_load_u32(fb->b), &m) || !rb__scalar(fb, &m, 0, 2, 0, &version) ||
        !rb__scalar(fb, &m, 1, 1, 0, &hdr_type) || rb__ref(fb, &m, 2, &at) != 1 ||
        !rb__scalar(fb, &m, 3, 8, 0, &blen) || !rb__table(fb, at, header))
        return rb_fail("IPC message metadata is not a valid Message flatbuffer");
    if (version < 3) return rb_fail("IPC message uses a metadata version before V4");
    if (blen > (uint64_t)(len - 8 - meta)) return rb_fail("IPC message body is truncated");
    *type = (int)hdr_type;
    *body = msg + 8 + meta;
    *body_len = blen;
    return RB_OK;
}

/* Message header type of an IPC message (RB_MSG_*), or RB_ERR. */
RB_API int rb_ipc_message_type(const uint8_t *msg, uint32_t len) {
    rb__fb fb;
    rb__tbl h;
    int type;
    const uint8_t *body;
    uint64_t body_len;
    if (rb__message(msg, len, &fb, &h, &type, &body, &body_len) != RB_OK) return RB_ERR;
    return type;
}

RB_API int rb__field_fail(const uint8_t *name, uint32_t name_len, const char *what) {
    rb_msg m = {.len = 0};
    rb_msg_str(&m, "column '");
    rb_msg_bytes(&m, name, name_len);
    rb_msg_str(&m, "': ");
    rb_msg_str(&m, what);
    return rb_fail_msg(&m);
}

/* Fills f from a Field table; RB_ERR for nested, dictionary-encoded or unsupported types. */
RB_API int rb__read_field(const rb__fb *fb, uint32_t pos, rb_field *f) {
    rb__tbl t, ty = {0};
    uint64_t type, a, b;
    uint32_t at, count, start;
    if (!rb__table(fb, pos, &t) || !rb__scalar(fb, &t, 2, 1, 0, &type)) return rb_fail("schema: bad Field table");
    f->name = (const uint8_t *)"";
    f->name_len = 0;
    int r = rb__ref(fb, &t, 0, &at);
    if (r < 0 || (r == 1 && !rb__vector(fb, at, 1, &f->name_len, &start))) return rb_fail("schema: bad field name");
    if (r == 1) f->name = fb->b + start;
    if (rb__ref(fb, &t, 4, &at) != 0)
        return rb__field_fail(f->name, f->name_len, "dictionary-encoded columns are not supported");
    r = rb__vector_field(fb, &t, 5, 4, &count, &start);
    if (r < 0) return rb_fail("schema: bad field children");
    if (r == 1 && count) return rb__field_fail(f->name, f->name_len, "nested columns are not supported");
    r = rb__ref(fb, &t, 3, &at);
    if (r < 0 || (r == 1 && !rb__table(fb, at, &ty))) return rb_fail("schema: bad field type");
    if (r == 0) ty.vt_len = 4; /* no type table: every type field takes its default */
    f->type = (uint8_t)type;
    f->layout = RB_FIXED;
    f->is_signed = 0;
    f->is_float = 0;
    f->width = 0;
    switch (type) {
    case RB_TYPE_INT:
        if (!rb__scalar(fb, &ty, 0, 4, 0, &a) || !rb__scalar(fb, &ty, 1, 1, 0, &b)) return rb_fail("schema: bad Int");
        if (a != 8 && a != 16 && a != 32 && a != 64) break;
        f->width = (uint32_t)a / 8;
        f->is_signed = (uint8_t)(b != 0);
        break;
    case RB_TYPE_FLOAT:
        if (!rb__scalar(fb, &ty, 0, 2, 0, &a) || a > 2) return rb_fail("schema: bad FloatingPoint");
        f->width = 2u << a;
        f->is_float = 1;
        break;
    case RB_TYPE_BOOL: f->layout = RB_BOOL; break;
    case RB_TYPE_BINARY:
    case RB_TYPE_UTF8: f->layout = RB_VARBIN32; break;
    case RB_TYPE_LARGE_BINARY:
    case RB_TYPE_LARGE_UTF8: f->layout = RB_VARBIN64; break;
    case RB_TYPE_DECIMAL:
        if (!rb__scalar(fb, &ty, 2, 4, 128, &a)) return rb_fail("schema: bad Decimal");
        if (a == 32 || a == 64 || a == 128 || a == 256) f->width = (uint32_t)a / 8;
        break;
    case RB_TYPE_DATE:
        if (!rb__scalar(fb, &ty, 0, 2, 1, &a)) return rb_fail("schema: bad Date");
        f->width = a == 0 ? 4 : 8;
        break;
    case RB_TYPE_TIME:
        if (!rb__scalar(fb, &ty, 1, 4, 32, &a)) return rb_fail("schema: bad Time");
        if (a == 32 || a == 64) f->width = (uint32_t)a / 8;
        break;
    case RB_TYPE_TIMESTAMP:
    case RB_TYPE_DURATION: f->width = 8; break;
    case RB_TYPE_INTERVAL:
        if (!rb__scalar(fb, &ty, 0, 2, 0, &a) || a > 2) return rb_fail("schema: bad Interval");
        f->width = a == 0 ? 4 : a == 1 ? 8 : 16;
        break;
    case RB_TYPE_FIXED_BINARY:
        if (!rb__scalar(fb, &ty, 0, 4, 0, &a)) return rb_fail("schema: bad FixedSizeBinary");
        if (a > 0 && a <= 0x10000) f->width = (uint32_t)a;
        break;
    default: break;
    }
    if (f->layout == RB_FIXED && !f->width) return rb__field_fail(f->name, f->name_len, "unsupported Arrow type");
    return RB_OK;
}

/* Parses a schema message, keeping a copy of it in s->raw (free with rb_schema_free). */
RB_API int rb_ipc_read_schema(const uint8_t *msg, uint32_t len, rb_schema *s) {
    rb__fb fb;
    rb__tbl h;
    int type;
    const uint8_t *body;
    uint64_t body_len, endianness;
    uint32_t count, start;
    s->raw = rb_alloc(len);
    s->fields = NULL;
    s->n_fields = 0;
    if (!s->raw) return rb_fail("out of memory copying the schema");
    rb_memcpy(s->raw, msg, len);
    s->raw_len = len;
    if (rb__message(s->raw, len, &fb, &h, &type, &body, &body_len) != RB_OK) return RB_ERR;
    if (type != RB_MSG_SCHEMA) return rb_fail("expected a schema message first");
    if (!rb__scalar(&fb, &h, 0, 2, 0, &endianness)) return rb_fail("schema: bad Schema table");
    if (endianness != 0) return rb_fail("schema: big-endian data is not supported");
    int r = rb__vector_field(&fb, &h, 1, 4, &count, &start);
    if (r < 0) return rb_fail("schema: bad fields vector");
    if (r == 0) count = 0;
    if (count > 0xFFFFu) return rb_fail("schema: too many fields");
    s->fields = (rb_field *)rb_alloc(count * (uint32_t)sizeof(rb_field) + 1);
    if (!s->fields) return rb_fail("out of memory reading the schema");
    for (uint32_t i = 0; i < count; i++) {
        uint64_t at = start + 4 * (uint64_t)i, field = at + rb_load_u32(fb.b + at);
        if (field >= fb.n) return rb_fail("schema: bad field offset");
        if (rb__read_field(&fb, (uint32_t)field, &s->fields[i]) != RB_OK) return RB_ERR;
    }
    s->n_fields = count;
    return RB_OK;
}

RB_API void rb_schema_free(rb_schema *s) {
    rb_free(s->raw);
    rb_free((uint8_t *)s->fields);
    s->raw = NULL;
    s->fields = NULL;
}

RB_API int rb__column_fail(const rb_field *f, const char *what) {
    return rb__field_fail(f->name, f->name_len, what);
}

/* Parses a record batch message of schema s into b; b->columns must hold s->n_fields
 * entries. Checks that every buffer lies inside the body and is big enough, and that
 * string offsets are monotonic and inside their data, so callers can index freely. */
RB_API int rb_ipc_read_batch(const uint8_t *msg, uint32_t len, const rb_schema *s, rb_batch *b) {
    rb__fb fb;
    rb__tbl h;
    int type;
    const uint8_t *body;
    uint64_t body_len, length;
    uint32_t n_nodes, nodes, n_bufs, bufs, at;
    if (rb__message(msg, len, &fb, &h, &type, &body, &body_len) != RB_OK) return RB_ERR;
    if (type != RB_MSG_RECORD_BATCH) return rb_fail("expected a record batch message");
    if (!rb__scalar(&fb, &h, 0, 8, 0, &length) || rb__vector_field(&fb, &h, 1, 16, &n_nodes, &nodes) != 1 ||
        rb__vector_field(&fb, &h, 2, 16, &n_bufs, &bufs) != 1)
        return rb_fail("record batch: bad RecordBatch table");
    if (rb__ref(&fb, &h, 3, &at) != 0) return rb_fail("record batch: compressed IPC bodies are not supported");
    if (length > 0x7FFFFFFFu) return rb_fail("record batch: more than 2^31 - 1 rows");
    if (n_nodes != s->n_fields) return rb_fail("record batch: field count differs from the schema");
    uint32_t buf_i = 0;
    for (uint32_t i = 0; i < s->n_fields; i++) {
        const rb_field *f = &s->fields[i];
        rb_column *c = &b->columns[i];
        uint32_t nb = rb_layout_buffers(f->layout);
        uint64_t node_len = rb_load_u64(fb.b + nodes + 16 * i);
        uint64_t nulls = rb_load_u64(fb.b + nodes + 16 * i + 8);
        const uint8_t *ptr[3];
        uint64_t size[3];
        if (node_len != length || nulls > length) return rb__column_fail(f, "bad field node");
        if (buf_i + nb > n_bufs) return rb_fail("record batch: fewer buffers than the schema needs");
        for (uint32_t k = 0; k < nb; k++) {
            uint64_t off = rb_load_u64(fb.b + bufs + 16 * (buf_i + k));
            size[k] = rb_load_u64(fb.b + bufs + 16 * (buf_i + k) + 8);
            if (off > body_len || size[k] > body_len - off) return rb__column_fail(f, "buffer outside the body");
            ptr[k] = body + off;
        }
        buf_i += nb;
        c->null_count = (int64_t)nulls;
        c->validity = nulls ? ptr[0] : NULL;
        if (nulls && size[0] < (length + 7) / 8) return rb__column_fail(f, "validity bitmap too short");
        c->offsets = NULL;
        if (f->layout == RB_FIXED) {
            if (length > size[1] / f->width) return rb__column_fail(f, "values buffer too short");
        } else if (f->layout == RB_BOOL) {
            if (size[1] < (length + 7) / 8) return rb__column_fail(f, "values bitmap too short");
        } else if (length) {
            uint32_t w = f->layout == RB_VARBIN32 ? 4 : 8;
            const uint8_t *o = ptr[1];
            if (size[1] / w < length + 1) return rb__column_fail(f, "offsets buffer too short");
            int64_t prev = w == 4 ? (int32_t)rb_load_u32(o) : (int64_t)rb_load_u64(o);
            uint64_t bad = prev < 0;
            for (uint64_t r = 1; r <= length; r++) {
                int64_t cur = w == 4 ? (int32_t)rb_load_u32(o + 4 * r) : (int64_t)rb_load_u64(o + 8 * r);
                bad |= cur < prev;
                prev = cur;
            }
            if (bad || (uint64_t)prev > size[2]) return rb__column_fail(f, "string offsets out of order or range");
            c->offsets = o;
        }
        c->values = ptr[nb - 1];
        c->values_len = size[nb - 1];
    }
    if (buf_i != n_bufs) return rb_fail("record batch: more buffers than the schema needs");
    b->length = (int64_t)length;
    b->n_columns = s->n_fields;
    return RB_OK;
}

/* Offset r of a VARBIN column (int32 or int64 offsets). */
RB_API inline uint64_t rb_offset(const rb_field *f, const rb_column *c, uint64_t r) {
    return f->layout == RB_VARBIN32 ? rb_load_u32(c->offsets + 4 * r) : rb_load_u64(c->offsets + 8 * r);
}

/* ---- take: copy a column through a row selection ------------------------------------ */

/* Gathers bits src[sel[j]] (or src[j] when sel is NULL) for j < k into dst, whose trailing
 * bits end up zero; returns the number of set bits. */
RB_API uint64_t rb_take_bits(const uint8_t *src, const uint32_t *sel, uint32_t k, uint8_t *dst) {
    uint64_t ones = 0;
    if (!sel) {
        uint32_t full = k / 8;
        rb_memcpy(dst, src, full);
        for (uint32_t i = 0; i < full; i++) ones += (uint64_t)__builtin_popcount(dst[i]);
        if (k & 7) {
            dst[full] = (uint8_t)(src[full] & ((1u << (k & 7)) - 1));
            ones += (uint64_t)__builtin_popcount(dst[full]);
        }
        return ones;
    }
    for (uint32_t j = 0; j < k; j += 8) {
        uint32_t byte = 0, m = k - j < 8 ? k - j : 8;
        for (uint32_t t = 0; t < m; t++) byte |= rb_bit(src, sel[j + t]) << t;
        dst[j >> 3] = (uint8_t)byte;
        ones += (uint64_t)__builtin_popcount(byte);
    }
    return ones;
}

/* Output buffer sizes of column c restricted to k selected rows (sel NULL: the first k). */
RB_API void rb_take_sizes(const rb_field *f, const rb_column *c, const uint32_t *sel, uint32_t k, uint64_t *sizes) {
    sizes[0] = c->validity ? (k + 7u) / 8u : 0;
    if (f->layout == RB_FIXED) {
        sizes[1] = (uint64_t)k * f->width;
    } else if (f->layout == RB_BOOL) {
        sizes[1] = (k + 7u) / 8u;
    } else {
        uint64_t bytes = 0;
        if (!sel) {
            bytes = k ? rb_offset(f, c, k) - rb_offset(f, c, 0) : 0;
        } else {
            for (uint32_t j = 0; j < k; j++) bytes += rb_offset(f, c, sel[j] + 1) - rb_offset(f, c, sel[j]);
        }
        sizes[1] = (uint64_t)(k + 1u) * (f->layout == RB_VARBIN32 ? 4u : 8u);
        sizes[2] = bytes;
    }
}

/* Fills the buffers sized by rb_take_sizes; returns the output null count. */
RB_API int64_t rb_take(const rb_field *f, const rb_column *c, const uint32_t *sel, uint32_t k, uint8_t *const *out) {
    int64_t nulls = 0;
    if (c->validity) nulls = (int64_t)k - (int64_t)rb_take_bits(c->validity, sel, k, out[0]);
    if (f->layout == RB_BOOL) {
        rb_take_bits(c->values, sel, k, out[1]);
    } else if (f->layout == RB_FIXED) {
        uint32_t w = f->width;
        const uint8_t *src = c->values;
        uint8_t *dst = out[1];
        if (!sel) {
            rb_memcpy(dst, src, (size_t)k * w);
        } else if (w == 1) {
            for (uint32_t j = 0; j < k; j++) dst[j] = src[sel[j]];
        } else if (w == 2) {
            for (uint32_t j = 0; j < k; j++) rb_memcpy(dst + 2 * j, src + 2 * (uint64_t)sel[j], 2);
        } else if (w == 4) {
            for (uint32_t j = 0; j < k; j++) rb_memcpy(dst + 4 * j, src + 4 * (uint64_t)sel[j], 4);
        } else if (w == 8) {
            for (uint32_t j = 0; j < k; j++) rb_memcpy(dst + 8 * j, src + 8 * (uint64_t)sel[j], 8);
        } else {
            for (uint32_t j = 0; j < k; j++) rb_memcpy(dst + (uint64_t)w * j, src + (uint64_t)w * sel[j], w);
        }
    } else if (!sel) {
        uint64_t base = k ? rb_offset(f, c, 0) : 0;
        for (uint32_t j = 0; j <= k; j++) {
            uint64_t o = k ? rb_offset(f, c, j) - base : 0;
            if (f->layout == RB_VARBIN64) rb_store_u64(out[1] + 8 * (uint64_t)j, o);
            else rb_store_u32(out[1] + 4 * (uint64_t)j, (uint32_t)o);
        }
        if (k) rb_memcpy(out[2], c->values + base, rb_offset(f, c, k) - base);
    } else {
        int wide = f->layout == RB_VARBIN64;
        uint64_t pos = 0;
        for (uint32_t j = 0; j < k; j++) {
            uint32_t r = sel ? sel[j] : j;
            uint64_t start = rb_offset(f, c, r), n = rb_offset(f, c, r + 1) - start;
            if (wide) rb_store_u64(out[1] + 8 * (uint64_t)j, pos);
            else rb_store_u32(out[1] + 4 * (uint64_t)j, (uint32_t)pos);
            rb_memcpy(out[2] + pos, c->values + start, n);
            pos += n;
        }
        if (wide) rb_store_u64(out[1] + 8 * (uint64_t)k, pos);
        else rb_store_u32(out[1] + 4 * (uint64_t)k, (uint32_t)pos);
    }
    return nulls;
}

/* ---- record batch writer ------------------------------------------------------------ */

/* Builds one record batch message in a buffer reused across batches. The Message and
 * RecordBatch flatbuffers have a fixed shape, written front to back so every offset points
 * forward and every scalar is aligned to its size:
 *     0  root offset -> 16          4  Message vtable (12 bytes)
 *    16  Message table: soffset, version i16 @20, header_type u8 @22, header @24, bodyLength i64 @32
 *    40  RecordBatch vtable (10 bytes, padded to 56)
 *    56  RecordBatch table: soffset, nodes @60, length i64 @64, buffers @72
 *    76  nodes vector (u32 count, FieldNode[n] from 80)
 *    84+16n  buffers vector (u32 count, Buffer[m] from 88+16n)
 * so the metadata is 88 + 16(n + m) bytes, a multiple of 8, and the body follows with
 * every buffer starting on an 8-byte boundary. */
typedef struct {
    uint8_t *buf;
    uint32_t cap;
    uint32_t len;
    uint32_t n_nodes;
} rb_writer;

RB_API uint8_t *rb__meta(rb_writer *w) { return w->buf + 8; }

/* Lays out a message for length rows, n_nodes columns and n_buffers buffers of the given
 * sizes, zeroes the padding, and points ptrs[i] at each buffer for the caller to fill. */
RB_API int rb_writer_layout(rb_writer *w, int64_t length, uint32_t n_nodes, uint32_t n_buffers,
                            const uint64_t *sizes, uint8_t **ptrs) {
    uint64_t meta = 88 + 16 * ((uint64_t)n_nodes + n_buffers), body = 0;
    for (uint32_t i = 0; i < n_buffers; i++) body += rb_align8(sizes[i]);
    if (rb_reserve(&w->buf, &w->cap, 8 + meta + body) != RB_OK) return RB_ERR;
    w->len = (uint32_t)(8 + meta + body);
    w->n_nodes = n_nodes;
    uint8_t *m = rb__meta(w);
    rb_memset(w->buf, 0, 8 + 88);
    rb_store_u32(w->buf, 0xFFFFFFFFu);
    rb_store_u32(w->buf + 4, (uint32_t)meta);
    rb_store_u32(m + 0, 16);
    static const uint16_t msg_vt[6] = {12, 24, 4, 6, 8, 16};
    static const uint16_t rb_vt[5] = {10, 20, 8, 4, 16};
    rb_memcpy(m + 4, msg_vt, sizeof(msg_vt));
    rb_store_u32(m + 16, 16 - 4);
    rb_store_u16(m + 20, 4); /* MetadataVersion V5 */
    m[22] = RB_MSG_RECORD_BATCH;
    rb_store_u32(m + 24, 56 - 24);
    rb_store_u64(m + 32, body);
    rb_memcpy(m + 40, rb_vt, sizeof(rb_vt));
    rb_store_u32(m + 56, 56 - 40);
    rb_store_u32(m + 60, 76 - 60);
    rb_store_u64(m + 64, (uint64_t)length);
    uint32_t bufvec = 84 + 16 * n_nodes;
    rb_store_u32(m + 72, bufvec - 72);
    rb_store_u32(m + 76, n_nodes);
    rb_memset(m + 80, 0, 16 * (size_t)n_nodes + 4);
    rb_store_u32(m + bufvec, n_buffers);
    uint8_t *body_start = m + meta;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n_buffers; i++) {
        rb_store_u64(m + bufvec + 4 + 16 * i, pos);
        rb_store_u64(m + bufvec + 12 + 16 * i, sizes[i]);
        ptrs[i] = body_start + pos;
        rb_memset(body_start + pos + sizes[i], 0, rb_align8(sizes[i]) - sizes[i]);
        pos += rb_align8(sizes[i]);
    }
    return RB_OK;
}

/* Sets the FieldNode of column i (call for every column after rb_writer_layout). */
RB_API void rb_writer_node(rb_writer *w, uint32_t i, int64_t length, int64_t null_count) {
    rb_store_u64(rb__meta(w) + 80 + 16 * i, (uint64_t)length);
    rb_store_u64(rb__meta(w) + 88 + 16 * i, (uint64_t)null_count);
}

RB_API int rb_writer_emit(rb_writer *w) {
    if (rb_emit_batch(w->buf, w->len) != 0) return rb_fail("the host refused an emitted batch");
    return RB_OK;
}

/* ---- the transform loop ------------------------------------------------------------- */

typedef struct {
    uint8_t *buf;
    uint32_t cap;
    uint32_t len;
} rb_input;

/* Reads the next message into in (growing it as the host asks): 1 read, 0 end of stream,
 * RB_ERR on failure. */
RB_API int rb_read_message(rb_input *in) {
    for (;;) {
        int64_t n = rb_next_batch(in->buf, in->cap);
        if (n == -1) return 0;
        if (n < 0 || n > 0xFFFFFFFFll) return rb_fail("next_batch returned an invalid size");
        if ((uint64_t)n <= in->cap) {
            in->len = (uint32_t)n;
            return 1;
        }
        if (rb_reserve(&in->buf, &in->cap, (uint64_t)n) != RB_OK) return RB_ERR;
    }
}

typedef struct {
    /* Called once with the input schema (e.g. to resolve configured columns). */
    int (*on_schema)(const rb_schema *schema);
    /* Called per record batch; emits zero or more batches through w. */
    int (*on_batch)(const rb_schema *schema, const rb_batch *batch, rb_writer *w);
} rb_transform;

/* Runs a transform whose output schema is its input schema: reads the schema, echoes it,
 * then hands every record batch to t->on_batch until the end of the stream. */
RB_API int32_t rb_transform_run(const rb_transform *t) {
    rb_input in = {0};
    rb_schema schema;
    rb_batch batch;
    rb_writer w = {0};
    int r = rb_read_message(&in);
    if (r <= 0) return r == 0 ? rb_fail("the stream ended before its schema") : RB_ERR;
    if (rb_ipc_read_schema(in.buf, in.len, &schema) != RB_OK || t->on_schema(&schema) != RB_OK) return RB_ERR;
    if (rb_emit_batch(schema.raw, schema.raw_len) != 0) return rb_fail("the host refused the schema");
    batch.columns = (rb_column *)rb_alloc(schema.n_fields * (uint32_t)sizeof(rb_column) + 1);
    if (!batch.columns) return rb_fail("out of memory");
    while ((r = rb_read_message(&in)) == 1) {
        if (rb_ipc_read_batch(in.buf, in.len, &schema, &batch) != RB_OK) return RB_ERR;
        if (t->on_batch(&schema, &batch, &w) != RB_OK) return RB_ERR;
    }
    rb_free(in.buf);
    rb_free(w.buf);
    rb_free((uint8_t *)batch.columns);
    rb_schema_free(&schema);
    return r == 0 ? RB_OK : RB_ERR;
}

#endif /* RB_PLUGIN_H */
