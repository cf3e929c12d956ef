"""The audit on Spark (DESIGN §10): the same ``queries/`` and rules, the same findings and reports.

``nhiaudit report --engine spark [--spark-remote sc://host:15002]`` runs correlation and the rules
on Spark SQL instead of DuckDB:

1. :func:`spark_session` starts Spark local (``local[2]``) or connects to a Spark Connect URL, with
   the session time zone UTC (SCALE-OUT.md, rule 12).
2. :func:`load_inputs` is the one loader: ``events``, ``evidence_files`` and the ``policy_*``
   tables (computed by :func:`nhiaudit.policy.install` on DuckDB, so globs have one definition)
   become Spark temp views. Today they come from the store; a Parquet lake can feed the same views.
3. :func:`run` parses each correlation statement with SQLGlot, applies the project's rewrite pass
   (:mod:`nhiaudit.portable`) and materialises every relation itself (a temp view over a
   checkpoint: one statement, one relation). Macros are inlined; ``WITH RECURSIVE`` is iterated by
   the runner (Spark 3.5 has no recursive CTE), bounded like the query's own depth limit. The
   rules and the ``findings`` relation are built by the same SQL :mod:`nhiaudit.evaluate` uses.
4. :func:`open_spark_audit` copies the derived relations back into an in-memory DuckDB and wraps it
   in an :class:`~nhiaudit.session.AuditSession`, so the same report writers render the same
   findings.

pyspark is an optional dependency: ``pip install "nhiaudit[spark]"`` (Java 17 needed for local).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from nhiaudit import correlate, evaluate, portable, rules, session
from nhiaudit.errors import NhiauditError
from nhiaudit.model import ListedActions, RuleInfo
from nhiaudit.policy import _TABLES as POLICY_TABLES
from nhiaudit.policy import IDENTITY_MACRO, Policy, install

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

#: The store tables correlation reads (the inputs the loader provides).
INPUT_TABLES = ("events", "evidence_files")
#: Relations the runner brings back: every derived table and the chain_links view.
OUTPUT_RELATIONS = (*correlate.DERIVED_TABLES, "chain_links")
#: Iterations of a recursive CTE at most (the queries bound their own depth at 64).
MAX_RECURSION = 200


class SparkUnavailable(NhiauditError):
    """pyspark or Java is missing."""


def spark_session(remote: str | None = None, master: str = "local[2]") -> SparkSession:
    """A Spark session with UTC as its time zone: Spark Connect at ``remote``, else Spark local."""
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise SparkUnavailable(
            'report --engine spark: pyspark is not installed. Install it with: pip install "nhiaudit[spark]"'
        ) from exc
    builder = SparkSession.builder.appName("nhiaudit")
    if remote:
        builder = builder.remote(remote)
    else:
        builder = (
            builder.master(master)
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.codegen.wholeStage", "false")
            .config("spark.driver.memory", "2g")
        )
    try:
        spark = builder.getOrCreate()
    except Exception as exc:  # Java missing, a wrong URL: one message, no traceback
        raise SparkUnavailable(f"report --engine spark: cannot start Spark ({str(exc).splitlines()[0][:200]})") from exc
    spark.conf.set("spark.sql.session.timeZone", "UTC")
    # The union of a recursion's rounds trips Spark 3.5's constraint inference ("key not found" in
    # Union.rewriteConstraints); the inference only prunes filters, so it is turned off.
    spark.conf.set("spark.sql.constraintPropagation.enabled", "false")
    if not remote:
        spark.sparkContext.setLogLevel("ERROR")
    return spark


def _active_session() -> SparkSession | None:
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def _is_connect(spark: SparkSession) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


# --------------------------------------------------------------------------------------------------
# Moving tables between DuckDB and Spark
# --------------------------------------------------------------------------------------------------


def _duck_select(con: duckdb.DuckDBPyConnection, table: str) -> str:
    """SELECT of ``table`` with JSON columns as plain strings (Spark reads no JSON type)."""
    columns = con.execute(f"DESCRIBE {table}").fetchall()
    parts = [f'"{c[0]}"::VARCHAR AS "{c[0]}"' if c[1] == "JSON" else f'"{c[0]}"' for c in columns]
    return f"SELECT {', '.join(parts)} FROM {table}"


def _to_spark(spark: SparkSession, con: duckdb.DuckDBPyConnection, table: str, scratch: Path) -> DataFrame:
    if _is_connect(spark):
        # Spark Connect: the rows travel as Arrow through the client (Spark 4 takes an Arrow table as
        # is; 3.5 takes pandas). DuckDB 1.5's .arrow() is a RecordBatchReader.
        rows = con.execute(_duck_select(con, table)).arrow()
        rows = rows.read_all() if isinstance(rows, pa.RecordBatchReader) else rows
        import pyspark
        from pyspark.sql.pandas.types import from_arrow_schema

        data = rows if int(pyspark.__version__.split(".")[0]) >= 4 else rows.to_pandas()
        return spark.createDataFrame(data, schema=from_arrow_schema(rows.schema))  # an empty table too
    target = scratch / f"{table}.parquet"
    con.execute(f"COPY ({_duck_select(con, table)}) TO '{target}' (FORMAT parquet)")
    return spark.read.parquet(str(target))


def load_inputs(spark: SparkSession, con: duckdb.DuckDBPyConnection, scratch: Path) -> None:
    """The loader: the store's ``events`` and ``evidence_files`` and the installed ``policy_*``
    tables of ``con`` as Spark temp views of the same names."""
    for table in (*INPUT_TABLES, *POLICY_TABLES):
        _materialize(_to_spark(spark, con, table, scratch), table)


def _materialize(df: DataFrame, name: str) -> DataFrame:
    """Compute ``df`` once (a checkpoint, so a second read never recomputes it differently) and
    name it."""
    if hasattr(df, "localCheckpoint") and not _is_connect(df.sparkSession):
        df = df.localCheckpoint(eager=True)
    else:
        df = df.cache()
        df.count()
    df.createOrReplaceTempView(name)
    return df


def _arrow(df: DataFrame) -> pa.Table:
    """The rows of ``df`` as Arrow (timestamps UTC)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    if hasattr(df, "toArrow"):  # Spark 4
        return df.toArrow()
    if _is_connect(df.sparkSession):
        table, _ = df._to_table()
        return table
    schema = to_arrow_schema(df.schema)
    batches = df._collect_as_arrow()
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches)


# --------------------------------------------------------------------------------------------------
# Running statements
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Runner:
    """Executes DuckDB-dialect statements on Spark, one materialised relation per statement."""

    spark: SparkSession
    ctx: portable.Context = dataclasses.field(default_factory=portable.Context)
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    on_statement: Callable[[str], None] | None = None

    def script(self, sql: str, label: str = "") -> None:
        for statement in portable.parse(sql):
            macro = portable.macro_of(statement)
            if macro is not None:
                self.ctx.macros[macro.name] = macro
                continue
            if not isinstance(statement, exp.Create) or not isinstance(statement.expression, exp.Query):
                raise NhiauditError(f"{label}: the Spark runner runs CREATE … AS SELECT statements only")
            self.relation(statement.this.name, statement.expression, label)

    def relation(self, name: str, query: exp.Query, label: str = "") -> DataFrame:
        started = time.perf_counter()
        if self.on_statement:
            self.on_statement(name)
        query = query.copy()
        if isinstance(query, exp.Select) and query.args.get("order") is not None:
            query.set("order", None)  # a stored order (clustering) means nothing to a view
        query = self._split_ctes(name, query)
        df = self.query(query, label or name)
        df = _materialize(df.toDF(*unique_names(df.columns)), name)
        self.ctx.schemas[name] = list(df.columns)
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started
        return df

    def query(self, query: exp.Expression, label: str) -> DataFrame:
        text = portable.to_spark(query, self.ctx)
        try:
            return self.spark.sql(text)
        except Exception as exc:
            raise NhiauditError(
                f"{label}: Spark refused the rewritten statement: {str(exc).splitlines()[0][:400]}\n{text}"
            ) from exc

    def _split_ctes(self, name: str, query: exp.Query) -> exp.Query:
        """Materialise the recursive and MATERIALIZED CTEs of ``query`` as relations of their own;
        the other CTEs stay in the statement (a split CTE sees the ones before it)."""
        with_ = query.args.get("with_")
        if with_ is None:
            return query
        renames: dict[str, str] = {}
        kept: list[exp.CTE] = []
        for cte in with_.expressions:
            body = _rename(cte.this, renames)
            recursive = bool(with_.args.get("recursive")) and _references(body, cte.alias)
            if not (recursive or cte.args.get("materialized")):
                kept.append(exp.CTE(this=body, alias=cte.args["alias"].copy()))
                continue
            view = f"_{name}__{cte.alias}"
            if recursive:
                self._recursive(view, cte.alias, [c.name for c in cte.args["alias"].columns], body, kept)
            else:
                self.relation(view, _with(body, kept), name)
            renames[cte.alias] = view
        query = _rename(query, renames)
        query.set("with_", exp.With(expressions=kept) if kept else None)
        return query

    def _recursive(self, view: str, alias: str, columns: list[str], union: exp.Expression, kept: list[exp.CTE]) -> None:
        """``alias(columns) AS (base UNION ALL step)``: the step runs on the previous round's rows
        until it adds none (DuckDB's semantics of a recursive CTE)."""
        if not isinstance(union, exp.Union) or union.args.get("distinct"):
            raise NhiauditError(f"{view}: a recursive CTE must be base UNION ALL step")
        frontier = f"{view}__frontier"
        base = self.query(_with(union.this, kept), view).toDF(*columns)
        rounds = [_materialize(base, f"{frontier}0")]
        for depth in range(1, MAX_RECURSION + 1):
            if rounds[-1].isEmpty():
                break
            step = _with(_rename(union.expression, {alias: f"{frontier}{depth - 1}"}), kept)
            rounds.append(_materialize(self.query(step, view).toDF(*columns), f"{frontier}{depth}"))
        else:
            raise NhiauditError(f"{view}: the recursion did not end within {MAX_RECURSION} rounds")
        everything = rounds[0]
        for more in rounds[1:]:
            everything = everything.unionAll(more)
        _materialize(everything, view)
        self.ctx.schemas[view] = columns


def _with(query: exp.Expression, ctes: list[exp.CTE]) -> exp.Expression:
    """``query`` preceded by the CTEs it may read."""
    if not ctes:
        return query
    query = query.copy()
    if not isinstance(query, exp.Query):
        return query
    existing = query.args.get("with_")
    query.set("with_", exp.With(expressions=[c.copy() for c in ctes] + (existing.expressions if existing else [])))
    return query


def unique_names(columns: Sequence[str]) -> list[str]:
    """Output column names made unique as DuckDB makes them in CREATE TABLE AS (``a``, ``a_1``, …;
    names compare without case)."""
    seen: dict[str, int] = {}
    out = []
    for c in columns:
        n = seen.get(c.lower(), 0)
        seen[c.lower()] = n + 1
        out.append(c if n == 0 else f"{c}_{n}")
    return out


def _references(query: exp.Expression, name: str) -> bool:
    return any(t.name == name and not t.db for t in query.find_all(exp.Table))


def _rename(query: exp.Expression, names: dict[str, str]) -> exp.Expression:
    """``query`` with table references renamed (keeping what they were aliased as)."""

    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and not node.db and node.name in names:
            renamed = exp.table_(names[node.name], alias=node.alias or node.name)
            return renamed
        return node

    return query.transform(swap)


# --------------------------------------------------------------------------------------------------
# The audit
# --------------------------------------------------------------------------------------------------


def _rule_info(spark: SparkSession, loaded: Sequence[tuple[RuleInfo, str]], policy: Policy) -> None:
    from pyspark.sql.types import ArrayType, StringType, StructField, StructType

    schema = StructType(
        [StructField(n, StringType()) for n in ("rule_id", "severity", "title")]
        + [StructField("frameworks", ArrayType(StringType()))]
    )
    rows = [
        (info.id, info.severity, info.title, list(info.frameworks))
        for info, _ in loaded
        if info.id not in policy.rules.disabled
    ]
    _materialize(spark.createDataFrame(rows, schema), "rule_info")


def _findings(runner: Runner, policy: Policy, loaded: Sequence[tuple[RuleInfo, str]]) -> None:
    """The ``findings`` relation: every enabled rule's hits with their context, by the SQL of
    :mod:`nhiaudit.evaluate` (rule columns are read from Spark's plan of each rule)."""
    active = [(info, sql) for info, sql in loaded if info.id not in policy.rules.disabled]
    parts = []
    for info, sql in active:
        (rule_query,) = portable.parse(sql)
        columns = runner.query(rule_query, str(info.path or info.id)).columns
        parts.append(evaluate._hits_sql(info.id, sql, columns))
    _rule_info(runner.spark, loaded, policy)
    text = evaluate._FINDINGS_SQL.format(
        hits=" UNION ALL ".join(parts) or evaluate._NO_HITS, only_events="", only_chains=""
    )
    (query,) = portable.parse(text)
    runner.relation("findings", query, "findings")


def run(
    spark: SparkSession,
    store_con: duckdb.DuckDBPyConnection,
    policy: Policy,
    loaded: Sequence[tuple[RuleInfo, str]],
    on_statement: Callable[[str], None] | None = None,
) -> Runner:
    """Correlation and the rules on Spark over the store (or lake) behind ``store_con``, whose
    policy tables are installed. Every relation is a Spark temp view when it returns."""
    runner = Runner(spark, on_statement=on_statement)
    with tempfile.TemporaryDirectory(prefix="nhiaudit-spark-") as scratch:
        started = time.perf_counter()
        load_inputs(spark, store_con, Path(scratch))
        runner.timings["load"] = time.perf_counter() - started
        # The policy's SQL macros the correlation calls (installed on DuckDB by policy.install):
        # the pass inlines them, so they have one definition on both engines.
        runner.script(IDENTITY_MACRO, "nhiaudit.policy")
        for name, sql in correlate.sql_files():
            runner.script(sql, name)
        _findings(runner, policy, loaded)
    return runner


def collect(spark: SparkSession, names: Sequence[str] = OUTPUT_RELATIONS) -> dict[str, pa.Table]:
    """The named relations' rows as Arrow tables."""
    return {name: _arrow(spark.table(name)) for name in names}


def to_duckdb(tables: dict[str, pa.Table], con: duckdb.DuckDBPyConnection) -> None:
    for name, table in tables.items():
        con.register("_incoming", table)
        con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _incoming')
        con.unregister("_incoming")


@contextmanager
def open_spark_audit(
    db: Path | str | None,
    policy: Policy | Path | str | None,
    *,
    remote: str | None = None,
    extra_rule_dirs: Sequence[Path] = (),
    spark: SparkSession | None = None,
    on_statement: Callable[[str], None] | None = None,
) -> Iterator[session.AuditSession]:
    """An audit session whose derived tables and findings were computed on Spark.

    The store is only read. Rules of ``extra_rule_dirs`` run on Spark with the others (the session's
    policy lists them in ``[rules] dirs``, so ``report`` knows them).
    """
    with session.open_audit(db, policy, refresh=False) as stored:
        pol = stored.policy
        if extra_rule_dirs:
            pol = dataclasses.replace(
                pol, rules=dataclasses.replace(pol.rules, dirs=(*pol.rules.dirs, *extra_rule_dirs))
            )
        loaded = rules.load_rules(list(pol.rules.dirs))
        # A session this call starts is stopped when it ends (a Connect client's, too).
        own = spark is None and (bool(remote) or _active_session() is None)
        spark = spark or spark_session(remote)
        try:
            run(spark, stored.con, pol, loaded, on_statement)
            tables = collect(spark)
        finally:
            if own:
                spark.stop()
        out = duckdb.connect()
        out.execute("SET TimeZone = 'UTC'")
        out.register("_files", stored.con.execute("SELECT * FROM evidence_files").arrow())
        out.execute("CREATE TABLE evidence_files AS SELECT * FROM _files")
        out.unregister("_files")
        origin = stored.policy_origin
    to_duckdb(tables, out)
    install(pol, out)
    audit = session.AuditSession(out, pol, ":memory:", correlated=True, policy_origin=origin)
    try:
        yield audit
    finally:
        audit.close()


def spark_report(
    db: Path | str | None,
    policy: Policy | Path | str | None,
    *,
    remote: str | None = None,
    extra_rule_dirs: Sequence[Path] = (),
    **report_options: Any,
) -> tuple[Any, str]:
    """``AuditSession.report`` of a Spark-computed session, with its policy note."""
    with open_spark_audit(db, policy, remote=remote, extra_rule_dirs=extra_rule_dirs) as audit:
        result = audit.report(**report_options)
        # The session's store is gone once it closes: the actions are kept in memory, not streamed.
        return dataclasses.replace(result, actions=ListedActions(result.actions)), audit.policy_note
