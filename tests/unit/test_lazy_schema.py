"""LazySchema: what a passthrough plan carries instead of an Arrow schema; built, it is
exactly the schema the Arrow path gets, and it survives pickling (Dask ships plans)."""
from __future__ import annotations

import json
import pickle

import pyarrow as pa

from rapidbyte_fast.column_plan import Kind
from rapidbyte_fast.lazy_schema import LazySchema, arrow, rebuilt
from rapidbyte_fast.pgtypes import PgColumn, PgTable, primary_key_of
from rapidbyte_fast.state.progress import columns_fingerprint
from rapidbyte_fast.table_facts import TableFacts, attach, facts_of

TABLE = PgTable("s", "t", (
    PgColumn("id", "bigint", "int8", "b", True, Kind.INT8),
    PgColumn("n", "numeric(12,2)", "numeric", "b", False, Kind.NUMERIC, 12, 2),
    PgColumn("m", "s.mood", "s.mood", "e", False, Kind.TEXT, as_text=True,
             type_defs=({"ref": "s.mood", "kind": "enum", "labels": ["a"]},)),
    PgColumn("tags", "text[]", "_text", "b", False, Kind.ARRAY, elem_kind=int(Kind.TEXT),
             elem_oid=25),
), ("id",))


def test_built_schema_is_the_arrow_schema():
    lazy = TABLE.lazy_schema()
    assert arrow(lazy).equals(TABLE.arrow_schema(), check_metadata=True)
    assert lazy.names == ["id", "n", "m", "tags"] and len(lazy) == 4
    assert [f.nullable for f in lazy] == [False, True, True, True]
    assert primary_key_of(lazy) == ("id",)
    assert columns_fingerprint(lazy) == columns_fingerprint(TABLE.arrow_schema())


def test_facts_metadata_and_selected_fields_reach_the_built_schema():
    facts = TableFacts({"id": "bigint"}, comment="hi")
    lazy = attach(TABLE.lazy_schema(), facts)
    eager = attach(TABLE.arrow_schema(), facts)
    assert facts_of(lazy) == facts_of(eager)
    assert arrow(lazy).equals(eager, check_metadata=True)
    renamed = lazy.field("m").with_metadata({b"pg_type": b"t.mood"})
    picked = rebuilt(lazy, [lazy.field("tags"), renamed])
    assert isinstance(picked, LazySchema)
    assert arrow(picked).equals(pa.schema(
        [eager.field("tags"), eager.field("m").with_metadata({b"pg_type": b"t.mood"})],
        metadata=eager.metadata), check_metadata=True)
    assert json.loads(arrow(picked).metadata[b"table_facts"])["comment"] == "hi"


def test_pickles_without_its_built_schema():
    lazy = TABLE.lazy_schema()
    built = lazy.arrow
    back = pickle.loads(pickle.dumps(lazy))
    assert back == lazy and back._arrow == []
    assert back.arrow.equals(built, check_metadata=True)
    assert arrow(built) is built   # an Arrow schema is its own
