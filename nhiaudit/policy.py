"""The policy file (``nhiaudit.toml``, DESIGN §5): find it, read it, hand it to the SQL.

Every key has a default, so a missing file is a valid policy. The keys, their kinds, defaults and
docs are rows of :data:`nhiaudit.policy_schema.KEYS`; the section dataclasses below take their
defaults from there, and :class:`_Reader` reads any section with them. A bad file is rejected as a
whole: :func:`load_policy` raises one :class:`~nhiaudit.errors.PolicyError` whose ``problems`` are
every problem found, in file order, in the form
``nhiaudit.toml:12: unknown tier 'hgih' in [authority]. Did you mean 'high'?``.

``[sources.<name>]`` holds keyword arguments for one source's ``load`` (:attr:`Policy.sources`,
passed on by ``nhiaudit ingest``), declared by the source module as ``OPTIONS``. They are looked up
(importing every source) only when a file has a ``[sources]`` section, so ``trace`` starts fast.

Globs have one definition, the SQL macro ``glob_regex`` (:data:`GLOB_MACRO`). :func:`install`
creates it with the ``policy_*`` TEMP tables (their ``regex`` column is its output); the correlation
applies it at query time to approval scopes from the evidence; Python asks it too
(:func:`glob_matches`: waivers).

How to add a key: see :mod:`nhiaudit.policy_schema`; when SQL needs it, add a column to
``policy_params`` (or a table) in :func:`install`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import duckdb

from nhiaudit.errors import NhiauditError, PolicyError, did_you_mean
from nhiaudit.model import TIER_RANK, TIERS, Waiver
from nhiaudit.policy_schema import (
    BAD,
    REQUIRED,
    SECTION,
    SECTIONS,
    At,
    Key,
    default,
    keys_of,
    source_options,
    toml_type,
)

DEFAULT_FILE = "nhiaudit.toml"
ENV_VAR = "NHIAUDIT_POLICY"


# --------------------------------------------------------------------------------------------------
# Globs: one definition, in SQL
# --------------------------------------------------------------------------------------------------

#: ``glob_regex(glob)``: the anchored RE2 regex of a glob. ``*`` is any run of characters and ``?``
#: one character, ``/`` and ``:`` included but never a newline; everything else is literal and
#: case-sensitive. A value is matched field by field, so a newline in one is hostile or broken input
#: (log injection): it must not slip into a waiver, a human or broker glob or a scope by way of a
#: wildcard. A newline written in the glob itself matches one.
GLOB_MACRO = r"""
CREATE OR REPLACE TEMP MACRO glob_regex(pattern) AS
    '^' || replace(replace(regexp_replace(pattern, '([.^$+(){}\[\]|\\])', '\\\1', 'g'),
                           '*', '[^\n]*'), '?', '[^\n]') || '$'
"""


#: ``canonical_identity(name)``: the person's one name under [identities] aliases (matched without
#: regard to case), else the name as logged. Every approver, requester and self-approval check goes
#: through it (40_tasks.sql, 50_approvals.sql).
IDENTITY_MACRO = """
CREATE OR REPLACE TEMP MACRO canonical_identity(logged_name) AS
    coalesce((SELECT any_value(a.canonical) FROM policy_aliases a WHERE a.alias = lower(logged_name)), logged_name)
"""


def glob_matches(
    pairs: Iterable[tuple[str, str]], con: duckdb.DuckDBPyConnection | None = None
) -> set[tuple[str, str]]:
    """The ``(glob, value)`` pairs where the value matches the glob as a whole, decided by
    ``glob_regex`` on ``con`` (a private in-memory database when None), so that Python callers and
    the SQL cannot disagree. One query for all pairs."""
    pairs = list(pairs)
    if not pairs:
        return set()
    if con is None:
        with duckdb.connect() as own:
            return glob_matches(pairs, own)
    con.execute(GLOB_MACRO)
    rows = con.execute(
        "SELECT g, v FROM (SELECT unnest($g) AS g, unnest($v) AS v) WHERE regexp_full_match(v, glob_regex(g))",
        {"g": [g for g, _ in pairs], "v": [v for _, v in pairs]},
    ).fetchall()
    return set(rows)


#: The built-in risk catalogue, a correlation file (so the store knows its chains are stale when it changes).
RISK_CATALOGUE = "55_risk_catalogue.sql"


@cache
def risk_catalogue() -> tuple[tuple[str, str], ...]:
    """(tier, glob) of every entry of the built-in risk catalogue, read from the SQL that correlation runs."""
    sql = (resources.files("nhiaudit") / "queries" / "correlate" / RISK_CATALOGUE).read_text(encoding="utf-8")
    with duckdb.connect() as con:
        con.execute(GLOB_MACRO)
        con.execute(sql)
        return tuple(con.execute("SELECT tier, pattern FROM risk_catalogue").fetchall())


def glob_match(pattern: str, value: str, con: duckdb.DuckDBPyConnection | None = None) -> bool:
    """Whether ``value`` matches the glob ``pattern`` as a whole (see :data:`GLOB_MACRO`)."""
    return bool(glob_matches([(pattern, value)], con))


# --------------------------------------------------------------------------------------------------
# The policy as plain values
# --------------------------------------------------------------------------------------------------


def _defaults_from_keys(section: str) -> Callable[[type], type]:
    """Class decorator, applied under ``@dataclass``: the section's defaults from the schema. The
    class must have exactly one attribute per key, in the same order, so the two cannot drift."""

    def apply(cls: type) -> type:
        keys = {key.field: key for key in keys_of(section)}
        if list(keys) != list(cls.__annotations__):
            raise TypeError(f"{cls.__name__} has {list(cls.__annotations__)}, KEYS[{section}] {list(keys)}")
        for attr, key in keys.items():
            if key.default is not REQUIRED:
                setattr(cls, attr, default(key))
        return cls

    return apply


@dataclass(frozen=True)
@_defaults_from_keys("identities")
class Identities:
    humans: tuple[str, ...]
    brokers: tuple[str, ...]
    aliases: tuple[tuple[str, tuple[str, ...]], ...]  # (canonical name, the other names), file order


@dataclass(frozen=True)
@_defaults_from_keys("risk")
class Risk:
    low: tuple[str, ...]
    medium: tuple[str, ...]
    high: tuple[str, ...]
    critical: tuple[str, ...]
    builtin: bool


@dataclass(frozen=True)
@_defaults_from_keys("audit")
class Audit:
    min_tier: str


@dataclass(frozen=True)
@_defaults_from_keys("approval")
class Approval:
    required_from: str
    max_age_s: int
    protected_roles: tuple[tuple[str, str], ...]  # (role glob, GitHub environment), file order


@dataclass(frozen=True)
@_defaults_from_keys("authority")
class Authority:
    low: tuple[str, ...]
    medium: tuple[str, ...]
    high: tuple[str, ...]
    critical: tuple[str, ...]


@dataclass(frozen=True)
@_defaults_from_keys("agents")
class Agent:
    """``None`` means "not declared" (no limit on that axis); an empty tuple "declared empty"."""

    id: str
    actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None


@dataclass(frozen=True)
@_defaults_from_keys("credentials")
class Credentials:
    max_lifetime_s: int
    revoke_grace_s: int
    static: tuple[str, ...]


@dataclass(frozen=True)
@_defaults_from_keys("correlation")
class Correlation:
    clock_skew_s: int
    task_tag_keys: tuple[str, ...]
    task_span_attributes: tuple[str, ...]


@dataclass(frozen=True)
@_defaults_from_keys("rules")
class RuleSettings:
    dirs: tuple[Path, ...]  # resolved against the policy file's folder
    disabled: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    """The effective policy: the file's values over the defaults. ``path`` is None for defaults."""

    path: Path | None = None
    identities: Identities = field(default_factory=Identities)
    risk: Risk = field(default_factory=Risk)
    audit: Audit = field(default_factory=Audit)
    approval: Approval = field(default_factory=Approval)
    authority: Authority = field(default_factory=Authority)
    agents: tuple[Agent, ...] = ()
    credentials: Credentials = field(default_factory=Credentials)
    correlation: Correlation = field(default_factory=Correlation)
    waivers: tuple[Waiver, ...] = ()
    rules: RuleSettings = field(default_factory=RuleSettings)
    # [sources.<name>]: keyword arguments for that source's load(), e.g.
    # {"envoy": {"fields": {"request_id": ("req_id", "x_request_id")}}}. Only sections written in
    # the file are present.
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The file's text as read (None for the defaults): what the store remembers (audit_runs).
    text: str | None = field(default=None, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the effective policy as canonical JSON.

        The store records it next to the derived tables: a different fingerprint means they were
        built under another policy and must be rebuilt. ``path`` is left out (moving the file
        changes nothing); waiver expiry is kept in (a waiver lapsing overnight changes findings).
        ``sources`` is left out too: it decides how files are read at ingest, and the events it
        produced are in the store whatever the policy says now.
        """
        body = asdict(self)
        del body["path"]
        del body["sources"]
        del body["text"]
        body["rules"]["dirs"] = [str(d.resolve()) for d in self.rules.dirs]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def tier_for(self, action: str | None, read_only: bool | None, con: duckdb.DuckDBPyConnection | None = None) -> str:
        """The risk tier of one action, as the correlation SQL computes it from ``policy_risk``: the
        highest tier with a matching glob, else ``low`` for read-only calls and ``medium`` for
        everything else (unknown read-only-ness counts as a write)."""
        if action is None:
            return "low" if read_only else "medium"
        # the policy's globs decide when one matches; else the built-in catalogue's (60_actions.sql)
        for listed in (
            [(tier, glob) for tier in TIERS for glob in getattr(self.risk, tier)],
            list(risk_catalogue()) if self.risk.builtin else [],
        ):
            hits = glob_matches([(glob, action) for _, glob in listed], con)
            ranks = [TIER_RANK[tier] for tier, glob in listed if (glob, action) in hits]
            if ranks:
                return TIERS[max(ranks)]
        return "low" if read_only else "medium"


_TABLE_CLASSES: dict[str, type] = {
    "identities": Identities,
    "risk": Risk,
    "audit": Audit,
    "approval": Approval,
    "authority": Authority,
    "credentials": Credentials,
    "correlation": Correlation,
    "rules": RuleSettings,
}


# --------------------------------------------------------------------------------------------------
# Finding and loading the file
# --------------------------------------------------------------------------------------------------


def resolve_policy_path(
    option: Path | None, env: Mapping[str, str] = os.environ, cwd: Path | None = None
) -> Path | None:
    """Which policy file applies: ``--policy``, else ``$NHIAUDIT_POLICY``, else ``./nhiaudit.toml``
    when it exists, else None (the defaults).

    A path the user named explicitly must exist: silently falling back to defaults would audit
    under a policy nobody chose.
    """
    for explicit, origin in ((option, "--policy"), (env.get(ENV_VAR) or None, ENV_VAR)):
        if explicit is not None:
            path = Path(explicit)
            if not path.is_file():
                raise PolicyError(
                    [
                        f"{path}: no policy file there (named by {origin}). Fix the path, or drop {origin} "
                        "to use ./nhiaudit.toml or the defaults."
                    ]
                )
            return path
    candidate = (cwd / DEFAULT_FILE) if cwd is not None else Path(DEFAULT_FILE)
    return candidate if candidate.is_file() else None


def load_policy(path: Path | None, today: date | None = None) -> Policy:
    """Read and validate a policy file; ``None`` gives the defaults.

    ``today`` (default: today in UTC) decides which waivers have expired; a waiver is valid through
    the whole of its ``expires`` day. Raises one :class:`PolicyError` listing every problem.
    """
    if path is None:
        return Policy()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(
            [f"{path}: cannot read the policy file ({exc}). Check the path and that it is UTF-8."]
        ) from exc
    return loads(text, path, today)


def loads(text: str, path: Path, today: date | None = None) -> Policy:
    """The policy written in ``text``, as if read from ``path`` (messages name it; ``[rules] dirs``
    resolve against its folder). The store keeps the text of the policy it was audited with."""
    if today is None:
        today = datetime.now(timezone.utc).date()
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError([_toml_error(path, text, exc)]) from exc
    reader = _Reader(path, text)
    policy = reader.read(doc, today)
    if reader.problems:
        raise PolicyError(reader.problems)
    return replace(policy, text=text)


def _toml_error(path: Path, text: str, exc: Exception) -> str:
    """Turn tomllib's ``... (at line 3, column 5)`` into ``nhiaudit.toml:3: ...``."""
    message = str(exc)
    line = getattr(exc, "lineno", None)
    col = getattr(exc, "colno", None)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
    if m:
        line, col = int(m.group(1)), int(m.group(2))
        message = message[: m.start()]
    elif message.endswith("(at end of document)"):
        message = message[: -len("(at end of document)")].rstrip()
        line = max(1, text.count("\n") + (0 if text.endswith("\n") else 1))
    where = f"{path}:{line}" if line else str(path)
    column = f", column {col}" if col else ""
    return f"{where}: invalid TOML: {message}{column}. Fix the syntax (see https://toml.io)."


class _Reader:
    """Walks the parsed document once with the schema, building the policy and collecting every
    problem.

    Line numbers are found by scanning the text for the key inside its section: tomllib does not
    report positions of valid values, and a message without a line is still correct, just less
    precise.
    """

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()
        self._found: list[tuple[int, str]] = []

    # -- reporting -------------------------------------------------------------------------------

    def problem(self, section: str | None, key: str | None, message: str, index: int = 0) -> None:
        self.problem_at(self.line_of(section, key, index), message)

    def problem_at(self, line: int | None, message: str) -> None:
        where = f"{self.path}:{line}" if line else str(self.path)
        self._found.append((line or 0, f"{where}: {message}"))

    @property
    def problems(self) -> list[str]:
        """Every problem, in file order (problems without a line first)."""
        return [message for _, message in sorted(self._found, key=lambda item: item[0])]

    def section_line(self, name: str) -> int | None:
        """Where a section is written: ``name = ...`` at the top level, else its ``[name]`` header."""
        return self.line_of(None, name) or self.line_of(name, None)

    def source_line(self, name: str) -> int | None:
        """Where ``[sources.<name>]`` is written (its header, else its key), else ``[sources]``."""
        header = re.compile(rf"^\s*\[\s*sources\s*\.\s*[\"']?{re.escape(name)}[\"']?\s*[\].]")
        for number, raw in enumerate(self.lines, start=1):
            if header.match(raw):
                return number
        return self.line_of("sources", name) or self.section_line("sources")

    def line_of(self, section: str | None, key: str | None, index: int = 0) -> int | None:
        """1-based line of ``key`` in ``[section]`` (the ``index``-th ``[[section]]`` for arrays of
        tables), or of the section header when ``key`` is None."""
        current: str | None = None
        seen: dict[str, int] = {}
        occurrence = 0
        key_at_start = re.compile(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=") if key else None
        key_inline = re.compile(rf"(^|[{{,\s.])[\"']?{re.escape(key)}[\"']?\s*=") if key else None
        inline_hit: int | None = None
        for number, raw in enumerate(self.lines, start=1):
            stripped = raw.strip()
            if stripped.startswith("#"):
                continue
            header = re.match(r"^\[\[\s*([^\]]+?)\s*\]\]|^\[\s*([^\]]+?)\s*\]", stripped)
            if header:
                name = (header.group(1) or header.group(2)).replace('"', "").replace("'", "")
                top = name.split(".")[0].strip()
                if header.group(1) and top == name:
                    seen[top] = seen.get(top, 0) + 1
                current, occurrence = top, seen.get(top, 1) - 1
                if key is None and top == section and occurrence == index:
                    return number
                continue
            if section is None:
                in_scope = current is None
            else:
                in_scope = current == section and occurrence == index
            if key_at_start is None or key_inline is None or not in_scope:
                continue
            if key_at_start.search(raw):
                return number
            if inline_hit is None and key_inline.search(raw):
                inline_hit = number
        if inline_hit is not None:
            return inline_hit
        if section is not None:
            # Dotted keys or inline tables at the top level: `approval.max_age = "1h"`.
            target = re.compile(rf"^\s*{re.escape(section)}\s*[.=]")
            for number, raw in enumerate(self.lines, start=1):
                if target.search(raw):
                    return number
        return None

    # -- the schema at work ----------------------------------------------------------------------

    def read(self, doc: Mapping[str, Any], today: date) -> Policy:
        self.check_sections(doc)
        tables = {name: cls(**self.read_table(doc, name)) for name, cls in _TABLE_CLASSES.items()}
        return Policy(
            path=self.path,
            agents=self.read_agents(doc),
            waivers=self.read_waivers(doc, today),
            sources=self.read_sources(doc),
            **tables,
        )

    def check_sections(self, doc: Mapping[str, Any]) -> None:
        known = [section.name for section in SECTIONS] + ["sources"]
        for name, value in doc.items():
            if name in known:
                continue
            if isinstance(value, (dict, list)):
                if name in source_options():  # only on this error path: it imports every source
                    hint = f" Source options go under [sources.{name}]."
                else:
                    hint = did_you_mean(name, known) or f" Known sections: {', '.join(known)}."
                self.problem_at(self.section_line(name), f"unknown section [{name}].{hint}")
                continue
            homes = [
                f"[[{s.name}]]" if s.array else f"[{s.name}]"
                for s in SECTIONS
                if s.keys_are == "key" and any(key.name == name for key in keys_of(s.name))
            ] or [f"[{key.section}]" for keys in source_options().values() for key in keys if key.name == name]
            fix = f" Put it under {homes[0]}." if homes else " Keys belong in a section such as [audit]."
            self.problem(None, name, f"unknown key '{name}' at the top level.{fix}")

    def read_table(self, doc: Mapping[str, Any], name: str) -> dict[str, Any]:
        value = doc.get(name, {})
        if not isinstance(value, dict):
            self.problem_at(
                self.section_line(name), f"{name} must be a table, not {toml_type(value)}. Write it as [{name}]."
            )
            return {}
        return self.read_keys(value, name, keys_of(name))

    def read_keys(
        self, table: Mapping[str, Any], section: str, keys: Sequence[Key], index: int | None = None
    ) -> dict[str, Any]:
        """The valid values of ``table`` (``[section]``, or entry ``index`` of ``[[section]]``) by
        attribute, each read by its key's kind; unknown keys and bad values are reported."""
        top = section.split(".")[0]  # lines are looked up by top-level section
        where, label = (
            (f"[{section}]", section) if index is None else (f"[[{section}]] #{index + 1}", f"{section}[{index + 1}]")
        )
        entry = index or 0
        known = [key.name for key in keys]
        tiers = section in SECTION and SECTION[section].keys_are == "tier"
        for name in table:
            if name not in known:
                fallback = f" Tiers are {', '.join(TIERS)}." if tiers else f" Known keys: {', '.join(known)}."
                hint = did_you_mean(name, known) or fallback
                self.problem(top, name, f"unknown {'tier' if tiers else 'key'} '{name}' in {where}.{hint}", entry)
        values = {}
        for key in (key for key in keys if key.name in table):
            at = At(f"{label}.{key.name}", key.name, self.path.parent, lambda k, m: self.problem(top, k, m, entry))
            value = key.kind.read(table[key.name], at)
            if value is not BAD:
                values[key.field] = value
        return values

    def array_of_tables(self, doc: Mapping[str, Any], section: str) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
        """``(index, table, valid values)`` of each ``[[section]]`` entry."""
        value = doc.get(section, [])
        if not (isinstance(value, list) and all(isinstance(item, dict) for item in value)):
            self.problem_at(
                self.section_line(section),
                f"{section} must be an array of tables, not {toml_type(value)}. Write each entry as [[{section}]].",
            )
            return []
        return [
            (index, table, self.read_keys(table, section, keys_of(section), index)) for index, table in enumerate(value)
        ]

    def read_agents(self, doc: Mapping[str, Any]) -> tuple[Agent, ...]:
        agents: dict[str, tuple[int, Agent]] = {}
        for index, table, values in self.array_of_tables(doc, "agents"):
            if "id" not in table:
                self.problem("agents", None, f'[[agents]] #{index + 1} has no id. Add id = "<agent id>".', index)
            elif "id" in values and values["id"] in agents:
                self.problem(
                    "agents",
                    "id",
                    f"agent '{values['id']}' is declared twice ([[agents]] #{agents[values['id']][0] + 1} and "
                    f"#{index + 1}). Merge the two entries.",
                    index,
                )
            elif "id" in values:
                agents[values["id"]] = (index, Agent(**values))
        return tuple(agent for _, agent in agents.values())

    def read_waivers(self, doc: Mapping[str, Any], today: date) -> tuple[Waiver, ...]:
        names = [key.name for key in keys_of("waivers")]
        waivers = []
        for index, table, values in self.array_of_tables(doc, "waivers"):
            missing = [name for name in names if name not in table]
            if missing:
                self.problem(
                    "waivers",
                    None,
                    f"[[waivers]] #{index + 1} lacks {', '.join(missing)}. Every waiver needs "
                    f"{', '.join(names[:-1])} and {names[-1]}.",
                    index,
                )
            elif len(values) == len(names):
                expires = values.pop("expires")
                waivers.append(Waiver(**values, expires=expires.isoformat(), expired=today > expires))
        return tuple(waivers)

    def read_sources(self, doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        if "sources" not in doc:
            return {}
        from nhiaudit.sources import SOURCES  # here, not at the top: see source_options

        options = source_options()
        value = doc["sources"]
        if not isinstance(value, dict):
            self.problem_at(
                self.section_line("sources"),
                f"sources must be a table, not {toml_type(value)}. Write it as [sources.{next(iter(options))}].",
            )
            return {}
        result: dict[str, dict[str, Any]] = {}
        for name, table in value.items():
            line = self.source_line(name)
            if name not in options:
                if name in SOURCES:
                    self.problem_at(
                        line,
                        f"source '{name}' has no options, so [sources.{name}] means nothing. Remove it "
                        f"(sources with options: {', '.join(options)}).",
                    )
                else:
                    hint = did_you_mean(name, SOURCES) or f" Known sources: {', '.join(SOURCES)}."
                    self.problem_at(line, f"unknown source '{name}' in [sources].{hint}")
            elif not isinstance(table, dict):
                self.problem_at(
                    line, f"sources.{name} must be a table, not {toml_type(table)}. Write it as [sources.{name}]."
                )
            else:
                result[name] = self.read_keys(table, f"sources.{name}", options[name])
        return result


# --------------------------------------------------------------------------------------------------
# Handing the policy to SQL
# --------------------------------------------------------------------------------------------------

_TABLES = {
    "policy_identity": "kind VARCHAR, pattern VARCHAR, regex VARCHAR",
    # [identities] aliases: every name of a person (lower-cased; the canonical one too) -> that name
    "policy_aliases": "alias VARCHAR, name VARCHAR, canonical VARCHAR",
    # [approval] protected_roles: role glob -> the GitHub environment that alone may assume it
    "policy_protected_roles": "position INTEGER, pattern VARCHAR, regex VARCHAR, environment VARCHAR",
    "policy_risk": "tier VARCHAR, tier_rank INTEGER, pattern VARCHAR, regex VARCHAR",
    "policy_authority": "tier VARCHAR, tier_rank INTEGER, role VARCHAR",
    "policy_agent_scope": "agent_id VARCHAR, kind VARCHAR, pattern VARCHAR, regex VARCHAR",
    "policy_agents": "agent_id VARCHAR, has_actions BOOLEAN, has_resources BOOLEAN",
    "policy_static": "credential_id VARCHAR",
    "policy_task_keys": "kind VARCHAR, key VARCHAR, position INTEGER",
    # Waivers in policy order (the first live one that covers a finding is its waiver) and their
    # match globs, one row per (waiver, finding field).
    "policy_waivers": "position INTEGER, rule VARCHAR, reason VARCHAR, owner VARCHAR, expires VARCHAR, expired BOOLEAN",
    "policy_waiver_match": "position INTEGER, field VARCHAR, pattern VARCHAR, regex VARCHAR",
    "policy_params": (
        "audit_min_rank INTEGER, approval_required_rank INTEGER, approval_max_age_s BIGINT, "
        "max_lifetime_s BIGINT, revoke_grace_s BIGINT, clock_skew_s BIGINT, risk_builtin BOOLEAN"
    ),
}


def install(policy: Policy, con: duckdb.DuckDBPyConnection) -> None:
    """Create ``glob_regex`` and write ``policy`` into the ``policy_*`` TEMP tables that correlation
    and rule SQL read.

    TEMP so the policy of one run never persists into the store (the store keeps only
    :attr:`Policy.fingerprint`); CREATE OR REPLACE so installing twice is harmless. A ``regex``
    column is ``glob_regex(pattern)``. Risk rows hold only the listed globs: SQL applies the implicit
    rule (read-only ``low``, else ``medium``) when no row matches, and the highest matching
    ``tier_rank`` wins. ``policy_task_keys.position`` is 0-based; the key with the lowest position
    present on a record wins.
    """
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _TABLES}
    for kind, patterns in (("human", policy.identities.humans), ("broker", policy.identities.brokers)):
        rows["policy_identity"] += [(kind, p, None) for p in patterns]
    for canonical, names in policy.identities.aliases:
        rows["policy_aliases"] += sorted({(name.lower(), name, canonical) for name in (canonical, *names)})
    rows["policy_protected_roles"] = [
        (position, glob, None, env) for position, (glob, env) in enumerate(policy.approval.protected_roles)
    ]
    for tier in TIERS:
        rank = TIER_RANK[tier]
        rows["policy_risk"] += [(tier, rank, p, None) for p in getattr(policy.risk, tier)]
        rows["policy_authority"] += [(tier, rank, role) for role in getattr(policy.authority, tier)]
    for agent in policy.agents:
        rows["policy_agents"].append((agent.id, agent.actions is not None, agent.resources is not None))
        for kind, patterns in (("action", agent.actions), ("resource", agent.resources)):
            rows["policy_agent_scope"] += [(agent.id, kind, p, None) for p in patterns or ()]
    rows["policy_static"] = [(c,) for c in policy.credentials.static]
    for kind, keys in (
        ("tag", policy.correlation.task_tag_keys),
        ("span_attribute", policy.correlation.task_span_attributes),
    ):
        rows["policy_task_keys"] += [(kind, key, position) for position, key in enumerate(keys)]
    for position, w in enumerate(policy.waivers):
        rows["policy_waivers"].append((position, w.rule, w.reason, w.owner, w.expires, w.expired))
        rows["policy_waiver_match"] += [(position, key, glob, None) for key, glob in sorted(w.match.items())]
    rows["policy_params"] = [
        (
            TIER_RANK[policy.audit.min_tier],
            TIER_RANK[policy.approval.required_from],
            policy.approval.max_age_s,
            policy.credentials.max_lifetime_s,
            policy.credentials.revoke_grace_s,
            policy.correlation.clock_skew_s,
            policy.risk.builtin,
        )
    ]
    con.execute(GLOB_MACRO)
    for name, columns in _TABLES.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({columns})")
        if rows[name]:
            marks = ", ".join("?" * (columns.count(",") + 1))
            con.executemany(f"INSERT INTO {name} VALUES ({marks})", rows[name])
            if "regex" in columns:
                con.execute(f"UPDATE {name} SET regex = glob_regex(pattern)")
    con.execute(IDENTITY_MACRO)


# --------------------------------------------------------------------------------------------------
# A starter policy from the evidence (nhiaudit init)
# --------------------------------------------------------------------------------------------------

# Who is likely a person: signed in at a console or through SSO, is typed a person by its source
# (an IAM Identity Center user), decided an approval or requested a task. Who is likely a broker:
# issued credentials to several distinct holders. Both are guesses the user confirms.
_LIKELY_HUMANS = """
SELECT principal, string_agg(DISTINCT why, '; ' ORDER BY why) AS why FROM (
    SELECT actor_id AS principal, 'signed in at a console or by SSO (' || source || ')' AS why FROM events
    WHERE category = 'signin' AND (action IN ('signin:ConsoleLogin', 'entra:UserSignIn') OR source = 'okta')
    -- an Okta SSO to a SAML app is stored as the issuance of the assertion; the user still signed in
       OR (source = 'okta' AND action = 'okta:user.authentication.sso')
    UNION ALL SELECT actor_id, 'a person by its ' || source || ' identity type' FROM events WHERE actor_type = 'human'
    UNION ALL SELECT json_extract_string(details, '$.approver'), 'decided an approval (' || source || ')'
    FROM events WHERE category = 'approval'
    UNION ALL SELECT json_extract_string(details, '$.requested_by'), 'requested a task (' || source || ')'
    FROM events WHERE category = 'task'
) WHERE principal IS NOT NULL GROUP BY principal ORDER BY principal
"""
_LIKELY_BROKERS = """
SELECT actor_id AS principal,
       'issued credentials to ' || count(DISTINCT json_extract_string(details, '$.holder')) || ' holders' AS why
FROM events WHERE category = 'credential_issue' AND actor_id IS NOT NULL
GROUP BY actor_id HAVING count(DISTINCT json_extract_string(details, '$.holder')) >= ?
ORDER BY actor_id
"""
_PRINCIPALS = """
SELECT actor_id, arg_max(actor_type, n) AS actor_type, sum(n) AS events, string_agg(DISTINCT source, ', ') AS sources
FROM (SELECT actor_id, actor_type, source, count(*) AS n FROM events WHERE actor_id IS NOT NULL GROUP BY ALL)
GROUP BY actor_id ORDER BY events DESC, actor_id LIMIT ?
"""
BROKER_MIN_HOLDERS = 3
STARTER_PRINCIPALS = 40


def _comment_safe(value: str) -> str:
    """A log string inside a TOML comment: JSON-escaped, so a newline cannot end the comment."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def starter_policy(con: duckdb.DuckDBPyConnection) -> str:
    """The policy :func:`nhiaudit.policy_schema.template` writes, with ``[identities]`` filled from the
    store's evidence: the likely humans and brokers (each with why, for the user to confirm or
    delete) and, as comments, the principals seen with their type. A principal holding a glob
    character (``*``, ``?``) or a control character would widen the list: it is shown, not listed."""
    from nhiaudit.policy_schema import template  # noqa: PLC0415 (policy_schema imports nothing of ours back)

    def entries(rows: list[tuple[str, str]]) -> list[str]:
        lines = []
        for principal, why in rows:
            if re.search(r"[*?\x00-\x1f\x7f]", principal):
                lines.append(f"    # not listed (holds a glob or control character): {_comment_safe(principal)}")
            else:
                lines += [f"    # {_comment_safe(why)}", f"    {json.dumps(principal, ensure_ascii=False)},"]
        return lines

    humans = entries(con.execute(_LIKELY_HUMANS).fetchall())
    brokers = entries(con.execute(_LIKELY_BROKERS, [BROKER_MIN_HOLDERS]).fetchall())
    seen = [
        f"#   {_comment_safe(actor)}  ({kind}, {events} events: {_comment_safe(sources)})"
        for actor, kind, events, sources in con.execute(_PRINCIPALS, [STARTER_PRINCIPALS]).fetchall()
    ]
    text = template()
    header = "# Written by nhiaudit init from the evidence in the store: confirm every guess below.\n"
    if seen:
        header += "# Principals seen (the most active first):\n" + "\n".join(seen) + "\n"
    for key, lines in (("humans", humans), ("brokers", brokers)):
        if lines:
            text = text.replace(f"\n{key} = []\n", f"\n{key} = [\n" + "\n".join(lines) + "\n]\n", 1)
    return header + text


def write_starter_policy(db: Path | None, out: Path, force: bool = False) -> Path:
    """``nhiaudit init``: write :func:`starter_policy` of the store ``db`` (the default store when
    None) to ``out``; an existing ``out`` is kept unless ``force``."""
    from nhiaudit import store  # noqa: PLC0415 (store is not needed to read a policy)

    db_path = store.resolve_db_path(db)
    if not db_path.exists():
        raise NhiauditError(f"{db_path}: no store there. Run nhiaudit ingest first, or pass --db.")
    if out.exists() and not force:
        raise NhiauditError(f"{out}: already exists. Pass --force to overwrite it, or --output another file.")
    with store.connect(db_path, read_only=True) as con:
        text = starter_policy(con)
    out.write_text(text, encoding="utf-8")
    return out
