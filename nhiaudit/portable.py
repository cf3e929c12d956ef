"""Portable SQL: the project's rewrite pass from DuckDB SQL to Spark SQL, and the lint of the subset.

nhiaudit's SQL is written for DuckDB. DESIGN §10 runs the same ``queries/`` on Spark: SQLGlot
parses each statement and generates Spark SQL, and this module owns what SQLGlot alone gets wrong
(``../shared/SCALE-OUT.md`` measured it: unknown functions pass through silently, an ordered
``list()`` becomes an unordered ``collect_list``, ``arg_min`` and tuple keys treat NULLs
differently, computed list indexes stay 1-based, ``strftime`` formats are mistranslated, a regex
``$`` matches before a trailing newline, a JSON path built at run time returns NULL …).

- :data:`FUNCTIONS` is the table of DuckDB functions (and the project's macros) the pass knows how
  to write for Spark, with the fix each needs; everything else a query calls must be in
  :data:`PORTABLE_FUNCTIONS`, the functions both engines define alike.
- :func:`to_spark` rewrites one parsed DuckDB query and returns its Spark SQL text.
- :func:`lint` checks a file against the portable subset (SCALE-OUT.md, "SQL that stays
  portable") and returns ``<file>:<line>: <what>. <fix>`` problems; ``nhiaudit rules --lint
  --portable`` runs it on rule folders.

Nothing here runs SQL: the Spark runner (:mod:`nhiaudit.spark_runner`) executes what it returns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlglot
from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError
from sqlglot.tokens import TokenType

try:
    from importlib.resources.abc import Traversable
except ModuleNotFoundError:  # Python 3.10
    from importlib.abc import Traversable

READ = "duckdb"
WRITE = "spark"


class PortableError(ValueError):
    """A construct the rewrite pass cannot write for Spark (``lint`` names each one)."""


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------


def parse(sql: str) -> list[exp.Expression]:
    """The statements of ``sql`` (DuckDB dialect), comments and empty statements dropped.

    DuckDB's ``len(list)`` and ``length(string)`` are one node in SQLGlot; the list one is read
    as ``array_length`` so that the pass can tell a list's length (``size``) from a string's.
    """
    dialect = Dialect.get_or_raise(READ)
    tokens = dialect.tokenize(sql)
    for token, following in zip(tokens, tokens[1:], strict=False):
        if token.text.lower() == "len" and following.token_type == TokenType.L_PAREN:
            token.text = "array_length"
    parsed = dialect.parser().parse(tokens, sql)
    return [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]


@dataclass(frozen=True)
class Macro:
    """A ``CREATE MACRO name(params) AS body``: inlined at each call by the pass."""

    name: str
    params: tuple[str, ...]
    body: exp.Expression


def macro_of(statement: exp.Expression) -> Macro | None:
    if isinstance(statement, exp.Create) and str(statement.args.get("kind", "")).upper() == "MACRO":
        udf = statement.this
        params = tuple(p.name for p in udf.expressions)
        name = udf.this.name if isinstance(udf.this, exp.Expression) else str(udf.this)
        return Macro(name.lower(), params, statement.expression)
    return None


# --------------------------------------------------------------------------------------------------
# The rewrite pass
# --------------------------------------------------------------------------------------------------


@dataclass
class Context:
    """What a rewrite may need besides the node: macros in scope and known relation columns."""

    macros: dict[str, Macro] = field(default_factory=dict)
    schemas: dict[str, list[str]] = field(default_factory=dict)


def _fn(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _lit(value: str | int | float) -> exp.Expression:
    return exp.Literal.string(value) if isinstance(value, str) else exp.Literal.number(value)


def _not_null(e: exp.Expression) -> exp.Expression:
    return exp.Not(this=exp.Is(this=e.copy(), expression=exp.Null()))


def _null_guard(value: exp.Expression, result: exp.Expression) -> exp.Expression:
    """CASE WHEN value IS NULL THEN NULL ELSE result END."""
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null())], default=result
    )


def _sort_key(key: exp.Expression) -> exp.Expression:
    """A sort key whose NULL fields sort last, as DuckDB sorts them (Spark puts NULL first):
    every field f becomes the pair (f IS NULL, f) of a struct."""
    fields = key.expressions if isinstance(key, exp.Tuple) else [key]
    parts: list[exp.Expression] = []
    for f in fields:
        parts += [exp.Is(this=exp.Paren(this=f.copy()), expression=exp.Null()), f.copy()]
    return _fn("struct", *parts)


# Java's regex `$` matches before a final line terminator; RE2's (DuckDB's) only at the end.
_DOLLAR_AT_END = re.compile(r"(?<!\\)((?:\\\\)*)\$$")


def _regex_for_java(pattern: str) -> str:
    return _DOLLAR_AT_END.sub(r"\1\\z", pattern)


def _full_match(value: exp.Expression, regex: exp.Expression) -> exp.Expression:
    """regexp_full_match: anchored at both ends (``\\z``: not before a trailing newline)."""
    if isinstance(regex, exp.Literal) and regex.is_string:
        anchored: exp.Expression = _lit("^(?:" + regex.this + r")\z")
    else:
        anchored = _fn("concat", _lit("^(?:"), regex, _lit(r")\z"))
    return exp.RegexpLike(this=value, expression=anchored)


# glob_regex (nhiaudit.policy.GLOB_MACRO) in Spark: Java's replacement syntax writes group 1 as $1.
_GLOB_SPECIAL = r"([.^$+(){}\[\]|\\])"


def _glob_regex(pattern: exp.Expression) -> exp.Expression:
    escaped = _fn("regexp_replace", pattern, _lit(_GLOB_SPECIAL), _lit(r"\\$1"))
    star = _fn("replace", escaped, _lit("*"), _lit(r"[^\n]*"))
    question = _fn("replace", star, _lit("?"), _lit(r"[^\n]"))
    return _fn("concat", _lit("^"), question, _lit("$"))


_STRFTIME = {"%Y": "yyyy", "%m": "MM", "%d": "dd", "%H": "HH", "%M": "mm", "%S": "ss", "%f": "SSSSSS"}


def java_time_format(fmt: str) -> str:
    """A strftime format as Java's DateTimeFormatter pattern; literal text is quoted."""
    out: list[str] = []
    literal = ""
    i = 0
    while i < len(fmt):
        code = fmt[i : i + 2]
        if code in _STRFTIME:
            if literal:
                out.append("'" + literal.replace("'", "''") + "'")
                literal = ""
            out.append(_STRFTIME[code])
            i += 2
        elif fmt[i] == "%":
            raise PortableError(
                f"strftime code {code!r} is not in the rewrite table (use one of {', '.join(_STRFTIME)})"
            )
        else:
            literal += fmt[i]
            i += 1
    if literal:
        out.append("'" + literal.replace("'", "''") + "'")
    return "".join(out)


def spark_type(duck: str) -> str:
    """A DuckDB from_json structure (``'["VARCHAR"]'``, ``'[{"k": "VARCHAR"}]'``) as a Spark DDL type."""
    scalar = {"VARCHAR": "string", "BIGINT": "bigint", "INTEGER": "int", "DOUBLE": "double", "BOOLEAN": "boolean"}

    def convert(node: object) -> str:
        if isinstance(node, list) and len(node) == 1:
            return f"array<{convert(node[0])}>"
        if isinstance(node, dict):
            return "struct<" + ",".join(f"`{k}`:{convert(v)}" for k, v in node.items()) + ">"
        if isinstance(node, str) and node.upper() in scalar:
            return scalar[node.upper()]
        raise PortableError(f"from_json structure {duck!r} is not in the rewrite table")

    try:
        return convert(json.loads(duck))
    except json.JSONDecodeError as exc:
        raise PortableError(f"from_json structure {duck!r} is not JSON") from exc


def _json_path(path: exp.Expression) -> str | None:
    """The text of a literal JSON path, else None."""
    if isinstance(path, exp.JSONPath):
        return path.sql(dialect=READ).strip("'")
    if isinstance(path, exp.Literal) and path.is_string:
        return path.this
    return None


def _parts(e: exp.Expression) -> list[exp.Expression]:
    """The operands of a chain of ``||``."""
    if isinstance(e, exp.DPipe):
        return _parts(e.this) + _parts(e.expression)
    return [e]


def _json_text(doc: exp.Expression, path: exp.Expression) -> exp.Expression:
    """json_extract_string(doc, path) in Spark."""
    text = _json_path(path)
    if text is not None:
        if text.endswith("[*]"):
            # DuckDB returns the list of the elements' strings; Spark's get_json_object returns JSON text.
            return _fn("from_json", _fn("get_json_object", doc, _lit(text[:-3])), _lit("array<string>"))
        return _fn("get_json_object", doc, _lit(_spark_json_path(text)))
    lookup = _key_lookup(path)
    if lookup is not None:
        obj_path, key = lookup
        obj = _fn("get_json_object", doc, _lit(_spark_json_path(obj_path)))
        return exp.Bracket(this=_fn("from_json", obj, _lit("map<string,string>")), expressions=[key], offset=0)
    raise PortableError("a JSON path built at run time (use a literal path, or '$.obj.\"' || key || '\"')")


def _key_lookup(path: exp.Expression) -> tuple[str, exp.Expression] | None:
    """``'$.a."' || key || '"'`` (a key chosen at run time, a policy's attribute name, under a
    literal object path) as (the object's path, the key expression); else None."""
    parts = _parts(path)
    if (
        len(parts) == 3
        and isinstance(parts[0], exp.Literal)
        and isinstance(parts[2], exp.Literal)
        and parts[0].this.startswith("$")
        and parts[0].this.endswith('."')
        and parts[2].this == '"'
    ):
        return parts[0].this[:-2], parts[1]
    return None


_QUOTED_KEY = re.compile(r'\."((?:[^"\\]|\\.)*)"')


def _spark_json_path(path: str) -> str:
    """DuckDB's ``$.a."b.c"`` as Spark's ``$.a['b.c']``."""
    return _QUOTED_KEY.sub(lambda m: "['" + m.group(1).replace("'", "\\'") + "']", path)


def _is_array_literal(e: exp.Expression, word: str) -> bool:
    return isinstance(e, exp.Literal) and e.is_string and e.this.upper() == word


def _arg_by(node: exp.Expression, condition: exp.Expression | None) -> exp.Expression:
    """arg_min/arg_max(v, key) [FILTER (WHERE c)] as min_by/max_by: DuckDB skips the rows whose
    value or key is NULL (Spark would return a NULL value) and sorts NULL key fields last."""
    value, key = node.this, node.expression
    name = "min_by" if isinstance(node, exp.ArgMin) else "max_by"
    keep: list[exp.Expression] = [_not_null(value)]
    if not isinstance(key, exp.Tuple):
        keep.append(_not_null(key))
    where = exp.and_(*([condition.copy()] if condition is not None else []), *keep)
    return exp.Filter(this=_fn(name, value.copy(), _sort_key(key)), expression=exp.Where(this=where))


def _ordered_list(node: exp.ArrayAgg, condition: exp.Expression | None) -> exp.Expression:
    """list([DISTINCT] x [ORDER BY k]) [FILTER (WHERE c)] in Spark: collect_list keeps no order.
    NULL when no row is aggregated, as in DuckDB (Spark gives [])."""

    def agg(call: exp.Expression) -> exp.Expression:
        return exp.Filter(this=call, expression=exp.Where(this=condition.copy())) if condition is not None else call

    inner = node.this
    keys: list[exp.Ordered] = []
    if isinstance(inner, exp.Order):
        keys = list(inner.expressions)
        inner = inner.this
    distinct = isinstance(inner, exp.Distinct)
    value = inner.expressions[0] if distinct else inner
    if any(k.args.get("desc") for k in keys):
        raise PortableError("list(… ORDER BY … DESC) is not in the rewrite table (order ascending)")
    if distinct:
        if keys and not all(k.this == value for k in keys):
            raise PortableError("list(DISTINCT x ORDER BY y) with y not x is not in the rewrite table")
        # DISTINCT over the value: collect_set drops NULLs, which list(DISTINCT) keeps once.
        return _list_or_null(_fn("array_sort", agg(_fn("collect_set", value.copy()))), condition)
    if not keys:
        raise PortableError("list() without ORDER BY has no defined order (write list(x ORDER BY k))")
    key = exp.Tuple(expressions=[k.this.copy() for k in keys])
    pairs = agg(_fn("collect_list", _fn("struct", _sort_key(key), exp.alias_(value.copy(), "v"))))
    lam = exp.Lambda(
        this=exp.Dot(this=exp.column("s"), expression=exp.to_identifier("v")), expressions=[exp.to_identifier("s")]
    )
    return _list_or_null(_fn("transform", _fn("array_sort", pairs), lam), condition)


def _list_or_null(result: exp.Expression, condition: exp.Expression | None) -> exp.Expression:
    """``result`` when the aggregate saw a row, else NULL (list() over no rows is NULL in DuckDB)."""
    count: exp.Expression = exp.Count(this=exp.Literal.number(1))
    if condition is not None:
        count = exp.Filter(this=count, expression=exp.Where(this=condition.copy()))
    return exp.Case(ifs=[exp.If(this=exp.GT(this=count, expression=exp.Literal.number(0)), true=result)])


def _list_bool_and(items: exp.Expression) -> exp.Expression:
    """list_bool_and: NULL for an empty list or one of NULLs (bool_and ignores NULLs)."""
    x = exp.to_identifier("x")
    present = _fn("filter", items.copy(), exp.Lambda(this=_not_null(exp.column("x")), expressions=[x]))
    each = exp.Lambda(this=exp.Coalesce(this=exp.column("x"), expressions=[exp.true()]), expressions=[x.copy()])
    return exp.Case(
        ifs=[
            exp.If(
                this=exp.GT(this=_fn("size", present), expression=exp.Literal.number(0)),
                true=_fn("forall", items.copy(), each),
            )
        ]
    )


def _list_slice(items: exp.Expression, start: exp.Expression, end: exp.Expression) -> exp.Expression:
    length = exp.Add(this=exp.Sub(this=end.copy(), expression=start.copy()), expression=exp.Literal.number(1))
    return _fn("slice", items, start, length)


#: DuckDB functions and project macros the pass writes for Spark, by name, with the fix each needs.
#: ``lint`` accepts a call when its function is here or in PORTABLE_FUNCTIONS.
FUNCTIONS: dict[str, str] = {
    "arg_min": "min_by, skipping NULL values and keys; tuple keys sort NULL fields last",
    "arg_max": "max_by, as arg_min",
    "list": "ordered: transform(array_sort(collect_list(struct(key, x))), s -> s.v); NULL over no rows",
    "array_agg": "as list",
    "len": "size, NULL for NULL (Spark's size(NULL) is -1)",
    "array_length": "as len",
    "list_position": "array_position, NULL when absent (Spark: 0)",
    "list_slice": "slice(l, start, end - start + 1)",
    "list_filter": "filter",
    "list_transform": "transform",
    "list_bool_and": "forall, NULL for an empty list",
    "list_contains": "array_contains",
    "list_append": "array_append",
    "list_distinct": "array_distinct",
    "list_sort": "array_sort",
    "array_to_string": "array_join",
    "regexp_full_match": "RLIKE '^(?:…)\\z'",
    "regexp_extract": "regexp_extract, a final $ as \\z",
    "json_extract_string": (
        "get_json_object; '$.a[*]' as from_json(…, array<string>); '$.a.\"' || k || '\"' as a map lookup"
    ),
    "json_extract": "get_json_object (IS NOT NULL: the key is present)",
    "json_type": "json_type(j) = 'ARRAY' as json_array_length(j) IS NOT NULL",
    "from_json": "from_json with the structure as a Spark DDL type",
    "strftime": "date_format with the codes %Y %m %d %H %M %S %f, literal text quoted",
    "epoch": "unix_micros(t) / 1e6 (keeps fractions of a second)",
    "to_seconds": "make_dt_interval(0, 0, 0, n)",
    "unnest": "explode; with generate_subscripts(l, 1) as inline(transform(l, (v, i) -> …))",
    "generate_subscripts": "with unnest, as above",
    "glob_regex": "the glob macro of nhiaudit.policy, written with Java's replacement syntax",
    "aws_key_type": "the macro of 15_credential_types.sql, inlined",
    "canonical_identity": "the macro of nhiaudit.policy (IDENTITY_MACRO), inlined",
    "sha256": "sha2(x, 256)",
    "any_value": "any_value(x, true): skips NULLs as DuckDB's does",
}

#: Functions (and operators SQLGlot parses as functions) that DuckDB and Spark define alike.
PORTABLE_FUNCTIONS = frozenset(
    """
    and or not coalesce nullif if case cast try_cast count min max sum avg any_value bool_or bool_and
    logical_or logical_and row_number rank dense_rank concat substring substr replace lower upper trim
    length split_part chr abs greatest least array struct filter transform exists in
    array_contains array_distinct array_sort array_to_string array_append explode
    """.split()
)


def _rewrite_one(node: exp.Expression, ctx: Context) -> exp.Expression:  # noqa: C901 - one table, one place
    parent = node.parent
    if isinstance(node, (exp.ArgMin, exp.ArgMax)):
        if isinstance(parent, exp.Filter):
            return node  # the Filter carries it (below)
        return _arg_by(node, None)
    if isinstance(node, exp.ArrayAgg):
        if isinstance(parent, exp.Filter):
            return node
        return _ordered_list(node, None)
    if isinstance(node, exp.Filter):
        agg, condition = node.this, node.expression.this
        if isinstance(agg, (exp.ArgMin, exp.ArgMax)):
            return _arg_by(agg, condition)
        if isinstance(agg, exp.ArrayAgg):
            return _ordered_list(agg, condition)
        return node
    if isinstance(node, exp.Window) and isinstance(node.this, exp.Count) and isinstance(node.this.this, exp.Distinct):
        # count(DISTINCT x) OVER (…): Spark has no distinct window aggregate.
        window = node.copy()
        window.set("this", _fn("collect_set", node.this.this.expressions[0].copy()))
        return _fn("size", window)
    if isinstance(node, exp.AnyValue):
        # DuckDB's any_value skips NULLs; Spark's does when told (SQLGlot's IGNORE NULLS cannot take a FILTER).
        return _fn("any_value", node.this, exp.true())
    if isinstance(node, exp.IgnoreNulls) and isinstance(node.this, exp.Anonymous) and node.this.name == "any_value":
        return node.this
    if isinstance(node, exp.Window) and isinstance(node.this, exp.RowNumber) and node.args.get("order") is None:
        # row_number() OVER (): Spark requires an order; the rows' own order is the one DuckDB uses.
        window = node.copy()
        window.set("order", exp.Order(expressions=[exp.Ordered(this=_fn("monotonically_increasing_id"))]))
        return window
    if isinstance(node, exp.ArraySize):
        return _null_guard(node.this, _fn("size", node.this.copy()))
    if isinstance(node, exp.Bracket) and not isinstance(node.this, exp.Anonymous):
        # DuckDB's list[i] is 1-based; element_at keeps it whatever i is.
        index = exp.Cast(this=node.expressions[0].copy(), to=exp.DataType.build("INT"))
        return _fn("element_at", node.this.copy(), index)
    if isinstance(node, exp.RegexpFullMatch):
        return _full_match(node.this, node.expression)
    if isinstance(node, exp.RegexpExtract):
        pattern = node.expression
        if isinstance(pattern, exp.Literal) and pattern.is_string:
            node.set("expression", _lit(_regex_for_java(pattern.this)))
        return node
    if isinstance(node, exp.JSONExtractScalar):
        return _json_text(node.this, node.expression)
    if isinstance(node, exp.JSONExtract):
        text = _json_path(node.expression)
        if text is None:
            raise PortableError("a JSON path built at run time in json_extract (use a literal path)")
        if isinstance(parent, exp.Is) and isinstance(parent.parent, exp.Not) and re.fullmatch(r"\$\.\w+", text):
            # json_extract(j, '$.k') IS NOT NULL: DuckDB says the key is present (a JSON null too).
            return _fn("__present__", node.this.copy(), _lit(text[2:]))
        return _fn("get_json_object", node.this, _lit(_spark_json_path(text)))
    if isinstance(node, exp.EQ):
        for side, other in ((node.this, node.expression), (node.expression, node.this)):
            if isinstance(side, exp.JSONType) and _is_array_literal(other, "ARRAY"):
                doc = side.this
                if side.expression is not None:
                    doc = _fn("get_json_object", doc, _lit(_spark_json_path(_json_path(side.expression) or "")))
                return _not_null(_fn("json_array_length", doc))
        return node
    if isinstance(node, exp.Not) and isinstance(node.this, exp.Is):
        present = node.this.this
        if isinstance(present, exp.Anonymous) and present.name == "__present__":
            doc, key = present.expressions
            return exp.Coalesce(
                this=_fn("array_contains", _fn("json_object_keys", doc), key), expressions=[exp.false()]
            )
        return node
    if isinstance(node, exp.JSONType) and not isinstance(parent, exp.EQ):
        raise PortableError("json_type() is in the rewrite table only as json_type(…) = 'ARRAY'")
    if isinstance(node, exp.FromJson):
        structure = node.expression
        if not (isinstance(structure, exp.Literal) and structure.is_string):
            raise PortableError("from_json with a structure built at run time")
        return _fn("from_json", node.this, _lit(spark_type(structure.this)))
    if isinstance(node, exp.TimeToStr):
        fmt = node.args.get("format")
        if not (isinstance(fmt, exp.Literal) and fmt.is_string):
            raise PortableError("strftime with a format built at run time")
        return _fn("date_format", node.this, _lit(java_time_format(fmt.this)))
    if isinstance(node, exp.TimeToUnix):
        return exp.Div(this=_fn("unix_micros", node.this), expression=exp.Literal.number("1e6"))
    if isinstance(node, exp.In) and isinstance(node.this, exp.Tuple) and node.args.get("query") is not None:
        query = node.args["query"].this
        if (
            isinstance(query, exp.Select)
            and len(query.expressions) == 1
            and isinstance(query.expressions[0], exp.Tuple)
        ):
            query.set("expressions", [e.copy() for e in query.expressions[0].expressions])
        return node
    if isinstance(node, exp.Select):
        _select_generators(node)
        _expand_star_except(node, ctx)
        return node
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        args = node.expressions
        if name == "to_seconds":
            return _fn("make_dt_interval", _lit(0), _lit(0), _lit(0), args[0])
        if name == "glob_regex":
            return _glob_regex(args[0])
        if name == "list_bool_and":
            return _list_bool_and(args[0])
        if name == "list_position":
            return exp.Nullif(this=_fn("array_position", *args), expression=_lit(0))
        if name == "list_slice":
            return _list_slice(*args)
        return node
    return node


def _select_generators(select: exp.Select) -> None:
    """``unnest(l) AS v, generate_subscripts(l, 1) AS i`` in one SELECT: one Spark generator."""
    projections = select.expressions
    unnests = {i: p for i, p in enumerate(projections) if isinstance(p, exp.Alias) and isinstance(p.this, exp.Explode)}
    for i, p in enumerate(projections):
        inner = p.this if isinstance(p, exp.Alias) else p
        if isinstance(inner, exp.Anonymous) and inner.name.lower() == "generate_subscripts":
            match = next((j for j, u in unnests.items() if u.this.this == inner.expressions[0]), None)
            if match is None:
                raise PortableError("generate_subscripts without an unnest of the same list in its SELECT")
            value_alias, index_alias = unnests[match].alias, p.alias
            lam = exp.Lambda(
                this=_fn(
                    "named_struct",
                    _lit(value_alias),
                    exp.column("v"),
                    _lit(index_alias),
                    exp.Add(this=exp.column("i"), expression=exp.Literal.number(1)),
                ),
                expressions=[exp.to_identifier("v"), exp.to_identifier("i")],
            )
            generator = _fn("inline", _fn("transform", inner.expressions[0].copy(), lam))
            kept = [q for k, q in enumerate(projections) if k not in (i, match)]
            select.set("expressions", [*kept, generator])
            return


def _expand_star_except(select: exp.Select, ctx: Context) -> None:
    """``t.* EXCLUDE (c)``: Spark 3.5 has no EXCEPT on a star; the columns are listed instead."""
    out: list[exp.Expression] = []
    changed = False
    for p in select.expressions:
        star = p.this if isinstance(p, exp.Column) and isinstance(p.this, exp.Star) else p
        excluded = star.args.get("except_") if isinstance(star, exp.Star) else None
        if not excluded:
            out.append(p)
            continue
        qualifier = p.table if isinstance(p, exp.Column) else ""
        sources = [select.args.get("from_"), *(select.args.get("joins") or [])]
        tables = [
            s.this
            for s in sources
            if s is not None and isinstance(s.this, exp.Table) and (not qualifier or s.this.alias_or_name == qualifier)
        ]
        if len(tables) != 1 or tables[0].name not in ctx.schemas:
            raise PortableError("* EXCLUDE (…) over a relation whose columns are not known: list the columns")
        drop = {c.name for c in excluded}
        out += [exp.column(c, table=qualifier or None) for c in ctx.schemas[tables[0].name] if c not in drop]
        changed = True
    if changed:
        select.set("expressions", out)


def _inline_macros(tree: exp.Expression, macros: dict[str, Macro]) -> exp.Expression:
    def inline(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Anonymous) and node.name.lower() in macros:
            macro = macros[node.name.lower()]
            args = dict(zip(macro.params, node.expressions, strict=False))
            body = macro.body.copy().transform(
                lambda n: args[n.name].copy() if isinstance(n, exp.Column) and not n.table and n.name in args else n
            )
            return exp.Paren(this=_inline_macros(body, macros))
        return node

    return tree.transform(inline)


def _post_order(node: exp.Expression, ctx: Context) -> exp.Expression:
    for key, value in list(node.args.items()):
        if isinstance(value, exp.Expression):
            node.set(key, _post_order(value, ctx))
        elif isinstance(value, list):
            node.set(key, [_post_order(v, ctx) if isinstance(v, exp.Expression) else v for v in value])
    return _rewrite_one(node, ctx)


def rewrite(query: exp.Expression, ctx: Context | None = None) -> exp.Expression:
    """The Spark form of one DuckDB query (a copy): macros inlined, then every rule above."""
    ctx = ctx or Context()
    tree = _inline_macros(query.copy(), ctx.macros)
    # A node's parent decides some rewrites (a FILTER around an aggregate), so parents are set first.
    return _post_order(tree, ctx)


def to_spark(query: exp.Expression, ctx: Context | None = None) -> str:
    """Spark SQL text of one DuckDB query."""
    return rewrite(query, ctx).sql(dialect=WRITE, comments=False)


# --------------------------------------------------------------------------------------------------
# The lint of the portable subset
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    line: int
    what: str
    fix: str

    def render(self, where: str) -> str:
        return f"{where}:{self.line}: {self.what}. {self.fix}"


def _line(node: exp.Expression, first_line: int) -> int:
    """The file line of a node (SQLGlot keeps the line of the tokens an identifier or literal came from)."""
    for n in node.walk():
        meta = n.meta if hasattr(n, "meta") else {}
        if "line" in meta:
            return first_line + int(meta["line"]) - 1
        if isinstance(n, exp.Identifier) and n.meta.get("line"):
            return first_line + int(n.meta["line"]) - 1
    return first_line


def _function_name(node: exp.Func) -> str:
    return node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()


_ANCHORED = re.compile(r"^\^.*(\\z|\$)$", re.S)


def lint_sql(sql: str, first_line: int = 1, *, one_query: bool = True) -> list[Problem]:
    """Every construct of ``sql`` outside the portable subset (SCALE-OUT.md), with a fix.

    ``one_query``: a rule file (one SELECT); otherwise a correlation file, whose statements may
    each create one relation.
    """
    try:
        statements = parse(sql)
    except (ParseError, sqlglot.errors.TokenError) as exc:
        return [
            Problem(
                first_line,
                f"SQLGlot cannot parse the query ({str(exc).splitlines()[0][:160]})",
                "Write it in the portable subset of docs/scale-out.md",
            )
        ]
    problems: list[Problem] = []
    if one_query and len(statements) != 1:
        problems.append(Problem(first_line, f"{len(statements)} statements", "A rule is one SELECT"))
    created: set[str] = set()
    for statement in statements:
        problems += _lint_statement(statement, first_line, one_query, created)
    return sorted(set(problems), key=lambda p: (p.line, p.what))


def _lint_statement(statement: exp.Expression, first: int, one_query: bool, created: set[str]) -> list[Problem]:
    out: list[Problem] = []

    def add(node: exp.Expression, what: str, fix: str) -> None:
        out.append(Problem(_line(node, first), what, fix))

    if isinstance(statement, exp.Create):
        kind = str(statement.args.get("kind", "")).upper()
        macro = macro_of(statement)
        if macro is not None and not one_query and macro.name in FUNCTIONS:
            # A project macro the pass inlines (FUNCTIONS names it): its body must be portable.
            _lint_nodes(statement.expression, first, add, out)
            return out
        if kind == "MACRO" or one_query:
            add(statement, f"CREATE {kind} in engine-run SQL", "Write one SELECT; the runner owns materialisation")
            return out
        name = statement.this.name if isinstance(statement.this, exp.Table) else ""
        reads = {t.name for t in statement.expression.find_all(exp.Table)} if statement.expression else set()
        if name in reads or name in created:
            add(
                statement,
                f"{name} is replaced by a query that reads it (or created twice)",
                "Name the stages: one statement creates one new relation",
            )
        created.add(name)
        query = statement.expression
    elif isinstance(statement, exp.Query):
        query = statement
    else:
        add(statement, f"a {type(statement).__name__} statement", "Engine-run SQL is SELECT (or CREATE … AS SELECT)")
        return out
    if query is not None:
        _lint_nodes(query, first, add, out)
    return out


def _lint_nodes(
    query: exp.Expression, first: int, add: Callable[[exp.Expression, str, str], None], out: list[Problem]
) -> None:
    """Every construct under ``query`` outside the subset, added to ``out``."""
    for node in query.walk():
        if isinstance(node, (exp.Placeholder, exp.Parameter)):
            add(
                node,
                "a parameter in engine-run SQL",
                "Pass policy values as tables (policy_*); the runner adds single-action filters",
            )
        elif isinstance(node, exp.Select) and not _named_by_cte(node):
            # the names a SELECT gives its columns (an unaliased literal has none of its own)
            names = [p.alias_or_name.lower() for p in node.expressions if isinstance(p, (exp.Alias, exp.Column))]
            dupes = sorted({n for n in names if names.count(n) > 1 and n != "*"})
            if dupes:
                add(node, f"duplicate output column(s) {', '.join(dupes)}", "Give every output column a unique name")
        elif isinstance(node, exp.Star) and node.args.get("except_"):
            add(node, "* EXCLUDE (…)", "List the columns")
        elif isinstance(node, exp.Star) and node.args.get("replace"):
            add(node, "* REPLACE (…)", "Spark has no star REPLACE: add the new value as a column of its own")
        elif (
            isinstance(node, exp.Window)
            and isinstance(node.this, exp.Count)
            and isinstance(node.this.this, exp.Distinct)
        ):
            add(node, "count(DISTINCT …) OVER", "Aggregate in a subquery and join it")
        elif isinstance(node, exp.Bracket) and not all(isinstance(e, exp.Literal) for e in node.expressions):
            add(node, "a computed list index", "Use a CASE, or a literal index")
        elif isinstance(node, (exp.ArgMin, exp.ArgMax)):
            condition = node.parent.expression.this if isinstance(node.parent, exp.Filter) else None
            guarded = _never_null(node.this) or (
                condition is not None
                and any(
                    isinstance(n, exp.Is) and isinstance(n.parent, exp.Not) and n.this == node.this
                    for n in condition.walk()
                )
            )
            if not guarded:
                add(
                    node,
                    f"{_function_name(node)} without explicit NULL handling",
                    f"Add FILTER (WHERE {node.this.sql(READ)} IS NOT NULL): DuckDB skips a NULL value, "
                    "Spark returns it",
                )
        elif isinstance(node, exp.ArrayAgg):
            inner = node.this
            if not isinstance(inner, exp.Order) and not isinstance(inner, exp.Distinct):
                add(node, "list() without ORDER BY", "Write list(x ORDER BY k): engines keep no order otherwise")
        elif (
            isinstance(node, (exp.JSONExtract, exp.JSONExtractScalar))
            and _json_path(node.expression) is None
            and not (isinstance(node, exp.JSONExtractScalar) and _key_lookup(node.expression) is not None)
        ):
            add(
                node,
                "a JSON path built at run time",
                "Use a literal path (or json_extract_string(j, '$.obj.\"' || key || '\"')); "
                "resolve policy-chosen keys at ingest",
            )
        elif isinstance(node, (exp.RegexpLike, exp.RegexpExtract, exp.RegexpReplace, exp.RegexpILike)):
            out += _lint_regex(node, first)
        elif isinstance(node, exp.TimeToUnix):
            add(node, "epoch()", "Compare timestamps, not epochs (ts + n * INTERVAL 1 SECOND)")
        elif isinstance(node, exp.Unnest) or isinstance(node, exp.Explode) and not isinstance(node.parent, exp.Alias):
            add(node, "unnest() outside a SELECT list", "Unnest in a SELECT list (one per SELECT) or join a relation")
        elif isinstance(node, exp.Func) and not isinstance(node, (exp.Filter, exp.Window)):
            name = _function_name(node)
            if name not in FUNCTIONS and name not in PORTABLE_FUNCTIONS and not _builtin_ok(node):
                add(
                    node,
                    f"{name}() is DuckDB-only and not in the rewrite pass's table",
                    "Use a portable function (docs/scale-out.md) or add it to nhiaudit/portable.py FUNCTIONS",
                )


def _never_null(e: exp.Expression) -> bool:
    """A literal, or a coalesce whose last argument is one (the lint needs no NULL guard for it)."""
    if isinstance(e, exp.Coalesce):
        return _never_null((e.expressions or [e.this])[-1])
    return isinstance(e, exp.Literal)


def _named_by_cte(select: exp.Select) -> bool:
    """A SELECT inside ``name(columns) AS (…)``: the column list names its output."""
    cte = select.find_ancestor(exp.CTE)
    alias = cte.args.get("alias") if cte is not None else None
    return bool(alias is not None and alias.columns)


def _builtin_ok(node: exp.Expression) -> bool:
    """SQLGlot nodes that are operators or portable under another name."""
    return isinstance(
        node,
        (
            exp.Binary,
            exp.Unary,
            exp.Cast,
            exp.Case,
            exp.If,
            exp.Coalesce,
            exp.Nullif,
            exp.Count,
            exp.Min,
            exp.Max,
            exp.Sum,
            exp.Avg,
            exp.AnyValue,
            exp.LogicalOr,
            exp.LogicalAnd,
            exp.RowNumber,
            exp.Array,
            exp.Length,
            exp.Substring,
            exp.Concat,
            exp.Lower,
            exp.Upper,
            exp.Trim,
            exp.SplitPart,
            exp.Chr,
            exp.Exists,
            exp.In,
            exp.ArrayContains,
            exp.ArrayDistinct,
            exp.ArraySort,
            exp.ArrayToString,
            exp.ArrayFilter,
            exp.Transform,
            exp.Explode,
            exp.Greatest,
            exp.Least,
            exp.Abs,
            exp.TryCast,
            exp.Between,
            exp.Paren,
            exp.Interval,
            exp.CurrentTimestamp,
            exp.Tuple,
            exp.JSONExtract,
            exp.JSONExtractScalar,
            exp.JSONType,
            exp.ArraySize,
            exp.ArrayAppend,
            exp.RegexpFullMatch,
            exp.SHA2,
            exp.TimeToStr,
            exp.Struct,
            exp.Distinct,
            exp.Order,
        ),
    ) or node.__class__.__name__ in ("FromJson", "ParseJSON")


def _lint_regex(node: exp.Expression, first: int) -> list[Problem]:
    out: list[Problem] = []
    pattern = node.expression
    line = _line(node, first)
    if isinstance(node, exp.RegexpReplace):
        replacement = node.args.get("replacement")
        if isinstance(replacement, exp.Literal) and re.search(r"\\[0-9]", replacement.this):
            out.append(
                Problem(
                    line,
                    "a back-reference in a regexp_replace replacement",
                    "Engines spell back-references differently: extract, then concatenate",
                )
            )
    if node.args.get("modifiers") or node.args.get("flag") or node.args.get("parameters"):
        out.append(Problem(line, "a regex flags argument", "Put flags in the pattern ((?i)) or avoid them"))
    if isinstance(pattern, exp.Literal) and pattern.is_string:
        if not (pattern.this.startswith("^") and pattern.this.endswith(r"\z")):
            out.append(
                Problem(
                    line,
                    f"unanchored regex {pattern.this!r}",
                    r"Anchor it as '^(?:…)\z' ($ also matches before a trailing newline on Spark)",
                )
            )
    elif not isinstance(node, exp.RegexpLike):
        out.append(
            Problem(line, "a regex built at run time", "Use regexp_full_match(value, regex) for run-time regexes")
        )
    return out


def lint_file(path: Path | Traversable, *, one_query: bool = True) -> list[str]:
    """The portable-subset problems of one SQL file, as ``<file>:<line>: <what>. <fix>`` lines.
    A rule file's metadata header is skipped (the lines are still counted)."""
    text = path.read_text(encoding="utf-8")
    return [p.render(str(path)) for p in lint_sql(text, 1, one_query=one_query)]


def lint_paths(paths: Iterable[Path | Traversable], *, one_query: bool = True) -> list[str]:
    problems: list[str] = []
    for path in paths:
        problems += lint_file(path, one_query=one_query)
    return problems

