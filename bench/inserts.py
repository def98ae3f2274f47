"""``python -m bench inserts``: ``load_method: insert`` against COPY and against psycopg's
``executemany``, copying the seeded bench_events table Postgres → Postgres in one run.

Every entry appends into an identical pre-created table with a primary key (truncated
before each iteration, untimed), is a separate process timed from start to exit, and is
verified like the peers (``bench/peers.py``, whose runner and table this reuses). Ours run
on the Arrow path (no passthrough); ``--batch-rows N`` adds an insert entry whose statements
are cut at N rows alone (``insert_batch_rows: N``, ``insert_batch_bytes: 1gb``).
"""
from __future__ import annotations

from typing import Callable

from .peers import Entry, _script
from .runner import URL_REF, Setup, run_tool
from .scenarios import Scenario

TABLE = "bench_events"

_EXECUTEMANY = """
import os, psycopg
url = os.environ["RAPIDBYTE_BENCH_URL"]
with psycopg.connect(url) as a, psycopg.connect(url) as b:
    with a.cursor(name="rbf_src") as src, b.cursor() as dst:
        src.itersize = 10000
        src.execute(f"SELECT * FROM {os.environ['RBF_SRC']}")
        marks = ", ".join(["%s"] * len(src.description))
        insert = f"INSERT INTO {os.environ['RBF_DST']} VALUES ({marks})"
        while rows := src.fetchmany(10000):
            dst.executemany(insert, rows)
"""


def _ours(mode: str, batch_rows: int | None) -> Callable[[Setup, str], float]:
    def run(setup: Setup, schema: str) -> float:
        pipeline = Scenario(TABLE, mode).pipeline(URL_REF, setup.source_schema, schema)
        pipeline["destination"]["write_mode"] = "append"
        if batch_rows is not None:  # rows alone cut the statements
            pipeline["destination"]["config"].update(insert_batch_rows=batch_rows,
                                                     insert_batch_bytes="1gb")
        tool = run_tool(pipeline, setup)
        if tool.returncode != 0:
            raise RuntimeError(tool.reason())
        return tool.wall_secs
    return run


def entries(setup: Setup, batch_rows: list[int]) -> list[Entry]:
    """Ours (insert at the default and at each of ``batch_rows``, then copy), then
    executemany."""
    def schema(key: str) -> str:
        return f"{setup.prefix}_ins_{key}"

    inserts = [Entry("rapidbyte-fast insert, append" + (f", {n} rows/stmt" if n else ""),
                     f"insert{n or ''}", schema(f"rbf_insert_{n or 'default'}"), ours=True,
                     precreate=True, primary_key=True, run=_ours("insert", n))
               for n in [None, *batch_rows]]
    return inserts + [
        Entry("rapidbyte-fast copy, append", "copy", schema("rbf_copy"), ours=False,
              precreate=True, primary_key=True, run=_ours("copy", None)),
        Entry("psycopg executemany", "executemany", schema("executemany"), ours=False,
              precreate=True, primary_key=True, run=_script(_EXECUTEMANY)),
    ]
