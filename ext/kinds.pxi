# Column kind codes: a C mirror of rapidbyte_fast.column_plan.Kind.
# tests/unit/test_kinds_mirror.py compares kinds_dict() (exposed as KINDS) with the IntEnum.

cdef enum:
    K_BOOL = 1
    K_INT2 = 2
    K_INT4 = 3
    K_INT8 = 4
    K_FLOAT4 = 5
    K_FLOAT8 = 6
    K_TEXT = 7
    K_BYTEA = 8
    K_DATE = 9
    K_TIME = 10
    K_TIMESTAMP = 11
    K_TIMESTAMPTZ = 12
    K_INTERVAL = 13
    K_UUID = 14
    K_NUMERIC = 15
    K_NUMERIC_TEXT = 16
    K_JSONB = 17
    K_ARRAY = 18


cdef inline dict kinds_dict():
    return {
        "BOOL": K_BOOL, "INT2": K_INT2, "INT4": K_INT4, "INT8": K_INT8,
        "FLOAT4": K_FLOAT4, "FLOAT8": K_FLOAT8, "TEXT": K_TEXT, "BYTEA": K_BYTEA,
        "DATE": K_DATE, "TIME": K_TIME, "TIMESTAMP": K_TIMESTAMP,
        "TIMESTAMPTZ": K_TIMESTAMPTZ, "INTERVAL": K_INTERVAL, "UUID": K_UUID,
        "NUMERIC": K_NUMERIC, "NUMERIC_TEXT": K_NUMERIC_TEXT, "JSONB": K_JSONB,
        "ARRAY": K_ARRAY,
    }
