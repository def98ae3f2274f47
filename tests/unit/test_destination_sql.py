"""The Postgres destination's SQL and schema-evolution decisions, as pure functions."""
from __future__ import annotations

from types import SimpleNamespace

from rapidbyte_fast.destinations.postgres import ddl
from rapidbyte_fast.destinations.postgres.evolution import TargetColumn, evolve


def test_create_table_with_key_and_arrival_order():
    assert ddl.create_table_sql('"s"."t"', "t", [("id", "integer"), ("Na me", "text")],
                                ("id",), seq=True) == (
        'CREATE TABLE "s"."t" ("id" integer, "Na me" text, "__rbf_seq" bigserial, '
        'CONSTRAINT "t_pkey" PRIMARY KEY ("id"))')
    assert ddl.create_table_sql('"s"."t"', "t", [("a", "int8")]) == 'CREATE TABLE "s"."t" ("a" int8)'


def test_primary_key_names_stay_within_63_bytes():
    long = "x" * 63
    sql = ddl.add_primary_key_sql('"s"."x"', long, ("a", "b"))
    name = sql.split("CONSTRAINT ")[1].split(" PRIMARY")[0].strip('"')
    assert len(name.encode()) <= 63 and name.endswith("_pkey")
    assert sql.endswith('PRIMARY KEY ("a", "b")')


def test_insert_select_and_upsert():
    assert ddl.insert_select_sql("st", "tg", ["a", "b"], None) == (
        'INSERT INTO tg ("a", "b") SELECT "a", "b" FROM st')
    assert ddl.insert_select_sql("st", "tg", ["a"], '"a" < 3') == (
        'INSERT INTO tg ("a") SELECT "a" FROM st WHERE "a" < 3')
    assert ddl.upsert_sql("st", "tg", ["id", "v"], ("id",), None) == (
        'INSERT INTO tg AS "__rbf_target" ("id", "v") SELECT DISTINCT ON ("id") "id", "v" '
        'FROM st ORDER BY "id", "__rbf_seq" DESC ON CONFLICT ("id") DO UPDATE SET '
        '"v" = EXCLUDED."v" WHERE "__rbf_target" *<> EXCLUDED')
    # only key columns: nothing to update
    assert ddl.upsert_sql("st", "tg", ["id"], ("id",), "x").endswith(
        'FROM st WHERE x ORDER BY "id", "__rbf_seq" DESC ON CONFLICT ("id") DO NOTHING')


def test_swap():
    assert ddl.swap_sql('"s"."t__rbf_stage_0a"', "t__rbf_stage_0a", '"s"."t"', "t", True,
                        True) == [
        'DROP TABLE "s"."t"', 'ALTER TABLE "s"."t__rbf_stage_0a" RENAME TO "t"',
        'ALTER TABLE "s"."t" RENAME CONSTRAINT "t__rbf_stage_0a_pkey" TO "t_pkey"']
    assert ddl.swap_sql("a", "a", "b", "b", False, False) == ['ALTER TABLE a RENAME TO "b"']
    assert ddl.stage_name("orders", "0123abcd") == "orders__rbf_stage_0123abcd"


def _policy(**kw):
    base = dict(new_column="add", removed_column="ignore", type_change="fail",
                nullability_change="allow")
    return SimpleNamespace(**{**base, **kw})


TARGET = {"id": TargetColumn("integer", True), "v": TargetColumn("text", True),
          "old": TargetColumn("text", False)}


def test_evolution_adds_columns_and_drops_not_null():
    e = evolve('"s"."t"', TARGET, ("id",),
               [("id", "integer", True), ("v", "text", True), ("new", "jsonb", True)],
               _policy())
    assert e.statements == ('ALTER TABLE "s"."t" ALTER COLUMN "v" DROP NOT NULL',
                            'ALTER TABLE "s"."t" ADD COLUMN "new" jsonb')
    assert e.keep == ("id", "v", "new") and e.problems == () and e.added == ("new jsonb",)


def test_evolution_refusals_name_the_policy():
    e = evolve("t", TARGET, ("id",), [("id", "bigint", False), ("v", "text", True),
                                      ("n", "int4", True)],
               _policy(new_column="fail", removed_column="fail", nullability_change="fail"))
    assert e.problems == (
        "column id is bigint in the source but integer in the destination "
        "[schema_evolution.type_change: fail]",
        "column v is nullable in the source but NOT NULL in the destination "
        "[schema_evolution.nullability_change: fail]",
        "new column n (int4) [schema_evolution.new_column: fail]",
        "columns old are gone from the source [schema_evolution.removed_column: fail]")
    assert e.statements == ()


def test_evolution_ignore_null_and_coerce():
    fields = [("id", "bigint", False), ("v", "varchar(3)", False), ("n", "int4", True)]
    e = evolve("t", TARGET, ("id",), fields, _policy(new_column="ignore", type_change="null"))
    assert (e.keep, e.statements, e.problems) == ((), (), ())
    e = evolve("t", TARGET, ("id",), fields, _policy(type_change="coerce"))
    assert e.keep == ("id", "v", "n")
