"""``rapidbyte_fast.read()`` imports only what a read uses: psycopg, pyarrow, the COPY
decoder and the modules that describe, cut and decode a Postgres table; never the pipeline's
config models (pydantic), YAML, the CLI, the engine, executors, destinations, transforms or
plugins, whose imports cost a fresh process more than decoding 100k rows."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration

#: third-party packages a read never needs, and hashlib (OpenSSL: 7 ms of a fresh process's
#: imports), which only derived names past Postgres's 63 bytes use
FORBIDDEN = ("pydantic", "pydantic_core", "datafusion", "wasmtime", "click", "yaml", "rich",
             "dask", "distributed", "pandas", "lz4", "zstandard", "platformdirs", "hashlib",
             "_hashlib")

#: every module of ours a read loads, whichever the implementation
OURS = {
    "rapidbyte_fast", "rapidbyte_fast._impl", "rapidbyte_fast.arrow_read",
    "rapidbyte_fast.column_plan", "rapidbyte_fast.connector", "rapidbyte_fast.copy_format",
    "rapidbyte_fast.deferred", "rapidbyte_fast.errors", "rapidbyte_fast.faults",
    "rapidbyte_fast.kernel_inputs", "rapidbyte_fast.lazy_schema", "rapidbyte_fast.load_errors",
    "rapidbyte_fast.passthrough", "rapidbyte_fast.pgconn", "rapidbyte_fast.pgtypes",
    "rapidbyte_fast.pgurl", "rapidbyte_fast.redact", "rapidbyte_fast.sources",
    "rapidbyte_fast.sources.postgres", "rapidbyte_fast.sources.postgres.catalog",
    "rapidbyte_fast.sources.postgres.ranges", "rapidbyte_fast.sources.postgres.reader",
    "rapidbyte_fast.table_facts",
}
#: the decoder of each implementation (the compiled one also loads the row scanner it
#: cimports, and the libpq symbols it reads the COPY stream with)
KERNELS = {
    "c": {"rapidbyte_fast._native", "rapidbyte_fast._native.copy_decode",
          "rapidbyte_fast._native.copy_scan", "rapidbyte_fast.libpq"},
    "python": {"rapidbyte_fast._py", "rapidbyte_fast._py.copy_decode"},
}

# a read in a fresh interpreter (projection, filter, two ranges in one snapshot); then the
# rows it got and the modules it loaded
_READ = """
import json, os, sys
import rapidbyte_fast
table = rapidbyte_fast.read(os.environ["TEST_DSN"], sys.argv[1], columns=["id", "name"],
                            where="t.id % 2 = 0", parallel=2).read_all()
print("@@ROWS@@" + json.dumps(sorted(table.to_pylist(), key=lambda r: r["id"])))
print("@@MODULES@@" + json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("impl", ["c", "python"])
def test_read_imports_only_the_reading_modules(pg_dsn, pg_conn, pg_schema, impl):
    pg_conn.execute(f'CREATE TABLE "{pg_schema}".nums (id bigint PRIMARY KEY, name text, '
                    "v double precision)")
    pg_conn.execute(f'INSERT INTO "{pg_schema}".nums SELECT i, \'n\' || i, i / 4.0 '
                    "FROM generate_series(1, 2000) i")
    pg_conn.execute(f'ANALYZE "{pg_schema}".nums')
    proc = subprocess.run([sys.executable, "-c", _READ, f"{pg_schema}.nums"],
                          capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, "TEST_DSN": pg_dsn, "RAPIDBYTE_IMPL": impl})
    assert proc.returncode == 0, proc.stderr
    found = {tag: json.loads(ln[len(tag):]) for ln in proc.stdout.splitlines()
             for tag in ("@@ROWS@@", "@@MODULES@@") if ln.startswith(tag)}
    assert found["@@ROWS@@"] == [{"id": i, "name": f"n{i}"} for i in range(2, 2001, 2)]
    modules = set(found["@@MODULES@@"])
    assert sorted({m.split(".")[0] for m in modules} & set(FORBIDDEN)) == []
    assert {m for m in modules if m.split(".")[0] == "rapidbyte_fast"} == OURS | KERNELS[impl]
