"""The policy file (``nhiaudit.toml``, DESIGN §5): load it, validate it, hand it to the SQL.

Every key has a default, so a missing file is a valid policy. A bad file is rejected as a whole:
:func:`load_policy` collects every problem (unknown sections and keys, wrong types, bad tiers,
durations and dates) and raises one :class:`~nhiaudit.errors.PolicyError` listing them, one per
line, in the form ``nhiaudit.toml:12: unknown tier 'hgih' in [authority]. Did you mean 'high'?``.

``[sources.<name>]`` holds options for one source's ``load`` (:attr:`Policy.sources`, passed on by
``nhiaudit ingest``). Only Envoy has options today: ``fields`` maps a logical field of
:data:`nhiaudit.sources.envoy.FIELD_MAP` to the ``json_format`` key that holds it, or a list of
candidate keys (first present wins); a key starting with ``$`` is a JSON path. An entry replaces
that field's default keys; fields left out keep theirs::

    [sources.envoy]
    fields = { request_id = ["req_id", "x_request_id"], traceparent = "trace_parent", jwt_sub = "$.jwt.sub" }

The correlation and rule SQL never sees Python objects: :func:`install` writes the policy into
``policy_*`` TEMP tables, with each glob already turned into an RE2 regex for
``regexp_full_match``.

How to add a key: add it to the section's dataclass with its default and to ``_KEYS`` (which
rejects anything not listed), read it in ``_Reader.read_<section>``, and, when SQL needs it, add a
column to ``policy_params`` (or a table) in :func:`install`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, time, timezone
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

import duckdb

from nhiaudit.errors import PolicyError, did_you_mean
from nhiaudit.model import TIER_RANK, TIERS, Waiver

DEFAULT_FILE = "nhiaudit.toml"
ENV_VAR = "NHIAUDIT_POLICY"

#: Finding fields a waiver may match on (values are globs).
WAIVER_MATCH_KEYS = (
    "actor_id",
    "credential_id",
    "task_id",
    "agent_id",
    "action",
    "resource",
    "source",
    "event_id",
)

_DURATION = re.compile(r"(?:\d+[smhd])+")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_REGEX_SPECIAL = frozenset("\\.^$*+?()[]{}|")  # the metacharacters RE2 and Python re share


# --------------------------------------------------------------------------------------------------
# The policy as plain values
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Identities:
    """Principal globs. Everything that is neither a human nor a broker is a non-human identity."""

    humans: tuple[str, ...] = ()
    brokers: tuple[str, ...] = ()  # trusted credential vendors: a chain ending here is rooted


@dataclass(frozen=True)
class Risk:
    """Action globs per tier. The highest matching tier wins; an unlisted action is ``low`` when it
    is read-only and ``medium`` otherwise (:meth:`Policy.tier_for` is the reference)."""

    low: tuple[str, ...] = ()
    medium: tuple[str, ...] = ()
    high: tuple[str, ...] = ()
    critical: tuple[str, ...] = ()


@dataclass(frozen=True)
class Audit:
    min_tier: str = "medium"  # actions below this tier are not audited


@dataclass(frozen=True)
class Approval:
    required_from: str = "medium"  # audited actions at or above this tier need approval provenance
    max_age_s: int = 24 * 3600  # an approval is stale this long after its decision


@dataclass(frozen=True)
class Authority:
    """Approver roles allowed per tier. An empty list means no role may approve that tier, which is
    the safe reading of "nobody said who may"."""

    low: tuple[str, ...] = ()
    medium: tuple[str, ...] = ()
    high: tuple[str, ...] = ()
    critical: tuple[str, ...] = ()


@dataclass(frozen=True)
class Agent:
    """Standing scope of one agent. ``None`` means "not declared" (no limit on that axis); an empty
    tuple means "declared empty" (nothing is in scope)."""

    id: str
    actions: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Credentials:
    max_lifetime_s: int = 3600
    revoke_grace_s: int = 300
    static: tuple[str, ...] = ()  # credential ids known to be static API keys


@dataclass(frozen=True)
class Correlation:
    clock_skew_s: int = 120
    task_tag_keys: tuple[str, ...] = ("TaskId", "task_id", "task-id")
    task_span_attributes: tuple[str, ...] = ("nhiaudit.task.id", "task.id", "gen_ai.conversation.id")


@dataclass(frozen=True)
class RuleSettings:
    """``[rules]``: extra rule folders (resolved against the policy file's folder) and disabled ids."""

    dirs: tuple[Path, ...] = ()
    disabled: tuple[str, ...] = ()


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
        body["rules"]["dirs"] = [str(d.resolve()) for d in self.rules.dirs]
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def tier_for(self, action: str | None, read_only: bool | None) -> str:
        """The risk tier of one action, exactly as the correlation SQL computes it from
        ``policy_risk``: the highest tier with a matching glob, else ``low`` for read-only calls and
        ``medium`` for everything else (unknown read-only-ness counts as a write)."""
        for tier in reversed(TIERS):
            if action is not None and any(glob_match(p, action) for p in getattr(self.risk, tier)):
                return tier
        return "low" if read_only else "medium"


# --------------------------------------------------------------------------------------------------
# Globs
# --------------------------------------------------------------------------------------------------


def glob_to_regex(pattern: str) -> str:
    """An anchored regex equivalent to ``pattern``, valid in both RE2 (DuckDB's
    ``regexp_full_match``/``regexp_matches``) and Python ``re``.

    ``*`` is any run of characters, newlines and ``/``/``:`` included (hence ``(?s)``); ``?`` is one
    character; everything else is literal and case-sensitive. Literals are escaped by hand rather
    than with ``re.escape``, whose output (e.g. a backslash before a raw tab) is not promised to
    parse in RE2: regex metacharacters get a backslash, space and ASCII control characters become
    ``\\xHH`` (so a pattern stays readable in ``policy_*`` tables), anything else stays as is.
    """
    out = ["(?s)^"]
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ch in " \x7f":
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append("$")
    return "".join(out)


def glob_match(pattern: str, value: str) -> bool:
    """Whether ``value`` matches the glob ``pattern`` as a whole (see :func:`glob_to_regex`)."""
    return re.fullmatch(glob_to_regex(pattern), value) is not None


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
                    f"{path}: no policy file there (named by {origin}). Fix the path, or drop {origin} "
                    "to use ./nhiaudit.toml or the defaults."
                )
            return path
    candidate = (cwd / DEFAULT_FILE) if cwd is not None else Path(DEFAULT_FILE)
    return candidate if candidate.is_file() else None


def load_policy(path: Path | None, today: date | None = None) -> Policy:
    """Read and validate a policy file; ``None`` gives the defaults.

    ``today`` (default: today in UTC) decides which waivers have expired; a waiver is valid through
    the whole of its ``expires`` day. Raises one :class:`PolicyError` listing every problem.
    """
    if today is None:
        today = datetime.now(timezone.utc).date()
    if path is None:
        return Policy()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(
            f"{path}: cannot read the policy file ({exc}). Check the path and that it is UTF-8."
        ) from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(_toml_error(path, text, exc)) from exc
    reader = _Reader(path, text)
    policy = reader.read(doc, today)
    if reader.problems:
        raise PolicyError("\n".join(reader.problems))
    return policy


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


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

_KEYS: dict[str, tuple[str, ...]] = {
    "identities": ("humans", "brokers"),
    "risk": TIERS,
    "audit": ("min_tier",),
    "approval": ("required_from", "max_age"),
    "authority": TIERS,
    "agents": ("id", "actions", "resources"),
    "credentials": ("max_lifetime", "revoke_grace", "static"),
    "correlation": ("clock_skew", "task_tag_keys", "task_span_attributes"),
    "waivers": ("rule", "match", "reason", "owner", "expires"),
    "rules": ("dirs", "disabled"),
}
# [sources.<name>]: the keys of each source that has options (the section's keys are source names).
_SOURCE_KEYS: dict[str, tuple[str, ...]] = {"envoy": ("fields",)}
_KEYS["sources"] = tuple(_SOURCE_KEYS)
_ARRAY_SECTIONS = ("agents", "waivers")
_TOML_TYPE = {
    str: "a string",
    int: "an integer",
    float: "a float",
    bool: "a boolean",
    list: "an array",
    dict: "a table",
    datetime: "a datetime",
    date: "a date",
    time: "a time",
}


def _toml_type(value: Any) -> str:
    return _TOML_TYPE.get(type(value), type(value).__name__)


class _Reader:
    """Walks the parsed document once, building the policy and collecting every problem.

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

    # -- typed readers ---------------------------------------------------------------------------

    def table(self, doc: Mapping[str, Any], section: str) -> dict[str, Any]:
        value = doc.get(section, {})
        if not isinstance(value, dict):
            self.problem_at(
                self.section_line(section),
                f"{section} must be a table, not {_toml_type(value)}. Write it as [{section}].",
            )
            return {}
        self.unknown_keys(value, section)
        return value

    def unknown_keys(
        self, table: Mapping[str, Any], section: str, index: int = 0, label: str | None = None
    ) -> None:
        known = _KEYS[section]
        where = label or f"[{section}]"
        for key in table:
            if key in known:
                continue
            if section in ("risk", "authority"):
                hint = did_you_mean(key, known) or f" Tiers are {', '.join(TIERS)}."
                self.problem(section, key, f"unknown tier '{key}' in {where}.{hint}", index)
            else:
                hint = did_you_mean(key, known) or f" Known keys: {', '.join(known)}."
                self.problem(section, key, f"unknown key '{key}' in {where}.{hint}", index)

    def strings(
        self, table: Mapping[str, Any], section: str, key: str, label: str, index: int = 0
    ) -> tuple[str, ...] | None:
        """A list of strings, or None (and a problem) when it is something else."""
        value = table[key]
        if isinstance(value, str):
            self.problem(
                section,
                key,
                f"{label} must be an array of strings, not a string. Write {key} = {json.dumps([value])}.",
                index,
            )
            return None
        if not isinstance(value, list):
            self.problem(
                section,
                key,
                f'{label} must be an array of strings, not {_toml_type(value)}. Write {key} = ["...", ...].',
                index,
            )
            return None
        ok = True
        for position, item in enumerate(value):
            if not isinstance(item, str):
                self.problem(
                    section,
                    key,
                    f"{label}[{position}] must be a string, not {_toml_type(item)}. Quote it.",
                    index,
                )
                ok = False
        return tuple(value) if ok else None

    def string(
        self, table: Mapping[str, Any], section: str, key: str, label: str, index: int = 0
    ) -> str | None:
        value = table[key]
        if isinstance(value, str):
            return value
        self.problem(section, key, f"{label} must be a string, not {_toml_type(value)}. Quote it.", index)
        return None

    def tier(self, table: Mapping[str, Any], section: str, key: str, default: str) -> str:
        if key not in table:
            return default
        value = self.string(table, section, key, f"{section}.{key}")
        if value is None:
            return default
        if value not in TIER_RANK:
            hint = did_you_mean(value, TIERS) or f" Use one of {', '.join(TIERS)}."
            self.problem(section, key, f"unknown tier '{value}' for {section}.{key}.{hint}")
            return default
        return value

    def duration(self, table: Mapping[str, Any], section: str, key: str, default: int) -> int:
        if key not in table:
            return default
        value = table[key]
        seconds = parse_duration(value) if isinstance(value, str) else None
        if seconds is None:
            shown = f"'{value}'" if isinstance(value, str) else repr(value)
            self.problem(
                section,
                key,
                f"bad duration {shown} for {section}.{key}. Use a number and a unit: 90s, 5m, 24h, 7d.",
            )
            return default
        return seconds

    # -- sections --------------------------------------------------------------------------------

    def read(self, doc: Mapping[str, Any], today: date) -> Policy:
        self.check_sections(doc)
        return Policy(
            path=self.path,
            identities=self.read_identities(doc),
            risk=Risk(**self.per_tier(doc, "risk")),
            audit=self.read_audit(doc),
            approval=self.read_approval(doc),
            authority=Authority(**self.per_tier(doc, "authority")),
            agents=self.read_agents(doc),
            credentials=self.read_credentials(doc),
            correlation=self.read_correlation(doc),
            waivers=self.read_waivers(doc, today),
            rules=self.read_rules(doc),
            sources=self.read_sources(doc),
        )

    def check_sections(self, doc: Mapping[str, Any]) -> None:
        for name, value in doc.items():
            if name in _KEYS:
                continue
            if isinstance(value, (dict, list)):
                if name in _SOURCE_KEYS:
                    hint = f" Source options go under [sources.{name}]."
                else:
                    hint = did_you_mean(name, _KEYS) or f" Known sections: {', '.join(_KEYS)}."
                self.problem_at(self.section_line(name), f"unknown section [{name}].{hint}")
            else:
                homes = [s for s, keys in _KEYS.items() if name in keys and s not in ("risk", "authority")]
                homes += [f"sources.{s}" for s, keys in _SOURCE_KEYS.items() if name in keys]
                header = [f"[[{h}]]" if h in _ARRAY_SECTIONS else f"[{h}]" for h in homes]
                fix = (
                    f" Put it under {header[0]}." if header else " Keys belong in a section such as [audit]."
                )
                self.problem(None, name, f"unknown key '{name}' at the top level.{fix}")

    def read_identities(self, doc: Mapping[str, Any]) -> Identities:
        table = self.table(doc, "identities")
        values = {}
        for key in ("humans", "brokers"):
            if key in table:
                got = self.strings(table, "identities", key, f"identities.{key}")
                if got is not None:
                    values[key] = got
        return Identities(**values)

    def per_tier(self, doc: Mapping[str, Any], section: str) -> dict[str, tuple[str, ...]]:
        table = self.table(doc, section)
        values = {}
        for tier in TIERS:
            if tier in table:
                got = self.strings(table, section, tier, f"{section}.{tier}")
                if got is not None:
                    values[tier] = got
        return values

    def read_audit(self, doc: Mapping[str, Any]) -> Audit:
        table = self.table(doc, "audit")
        return Audit(min_tier=self.tier(table, "audit", "min_tier", Audit.min_tier))

    def read_approval(self, doc: Mapping[str, Any]) -> Approval:
        table = self.table(doc, "approval")
        return Approval(
            required_from=self.tier(table, "approval", "required_from", Approval.required_from),
            max_age_s=self.duration(table, "approval", "max_age", Approval.max_age_s),
        )

    def read_credentials(self, doc: Mapping[str, Any]) -> Credentials:
        table = self.table(doc, "credentials")
        static: tuple[str, ...] = ()
        if "static" in table:
            static = self.strings(table, "credentials", "static", "credentials.static") or ()
        return Credentials(
            max_lifetime_s=self.duration(table, "credentials", "max_lifetime", Credentials.max_lifetime_s),
            revoke_grace_s=self.duration(table, "credentials", "revoke_grace", Credentials.revoke_grace_s),
            static=static,
        )

    def read_correlation(self, doc: Mapping[str, Any]) -> Correlation:
        table = self.table(doc, "correlation")
        values: dict[str, Any] = {
            "clock_skew_s": self.duration(table, "correlation", "clock_skew", Correlation.clock_skew_s)
        }
        for key in ("task_tag_keys", "task_span_attributes"):
            if key in table:
                got = self.strings(table, "correlation", key, f"correlation.{key}")
                if got is not None:
                    values[key] = got
        return Correlation(**values)

    def read_rules(self, doc: Mapping[str, Any]) -> RuleSettings:
        table = self.table(doc, "rules")
        dirs: list[Path] = []
        if "dirs" in table:
            for entry in self.strings(table, "rules", "dirs", "rules.dirs") or ():
                folder = self.path.parent / entry
                if not folder.is_dir():
                    self.problem(
                        "rules",
                        "dirs",
                        f"rules.dirs entry '{entry}' is not a folder (looked for {folder}). "
                        "Fix the path; it is relative to the policy file.",
                    )
                dirs.append(folder)
        disabled: tuple[str, ...] = ()
        if "disabled" in table:
            disabled = self.strings(table, "rules", "disabled", "rules.disabled") or ()
        return RuleSettings(dirs=tuple(dirs), disabled=disabled)

    def read_sources(self, doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        value = doc.get("sources", {})
        if not isinstance(value, dict):
            self.problem_at(
                self.section_line("sources"),
                f"sources must be a table, not {_toml_type(value)}. Write it as [sources.envoy].",
            )
            return {}
        from nhiaudit.sources import SOURCES  # here, not at the top: the sources import the world

        options: dict[str, dict[str, Any]] = {}
        for name, table in value.items():
            line = self.source_line(name)
            if name not in _SOURCE_KEYS:
                if name in SOURCES:
                    self.problem_at(
                        line,
                        f"source '{name}' has no options, so [sources.{name}] means nothing. Remove it "
                        f"(sources with options: {', '.join(_SOURCE_KEYS)}).",
                    )
                else:
                    hint = did_you_mean(name, SOURCES) or f" Known sources: {', '.join(SOURCES)}."
                    self.problem_at(line, f"unknown source '{name}' in [sources].{hint}")
                continue
            if not isinstance(table, dict):
                self.problem_at(
                    line, f"sources.{name} must be a table, not {_toml_type(table)}. Write it as [sources.{name}]."
                )
                continue
            known = _SOURCE_KEYS[name]
            for key in table:
                if key not in known:
                    hint = did_you_mean(key, known) or f" Known keys: {', '.join(known)}."
                    self.problem("sources", key, f"unknown key '{key}' in [sources.{name}].{hint}")
            options[name] = self.read_envoy(table)  # the one source with options so far
        return options

    def source_line(self, name: str) -> int | None:
        """Where ``[sources.<name>]`` is written (its header, else its key), else ``[sources]``."""
        header = re.compile(rf"^\s*\[\s*sources\s*\.\s*[\"']?{re.escape(name)}[\"']?\s*[\].]")
        for number, raw in enumerate(self.lines, start=1):
            if header.match(raw):
                return number
        return self.line_of("sources", name) or self.section_line("sources")

    def read_envoy(self, table: Mapping[str, Any]) -> dict[str, Any]:
        """``[sources.envoy]``: ``fields``, each a JSON key or an array of candidate keys."""
        from nhiaudit.sources.envoy import FIELD_MAP, key_problem  # here: see read_sources

        if "fields" not in table:
            return {}
        value = table["fields"]
        label = "sources.envoy.fields"
        if not isinstance(value, dict):
            self.problem(
                "sources",
                "fields",
                f"{label} must be a table, not {_toml_type(value)}. "
                'Write fields = { request_id = ["req_id", "x_request_id"] }.',
            )
            return {}
        fields: dict[str, tuple[str, ...]] = {}
        for name, keys in value.items():
            where = f"{label}.{name}"
            if name not in FIELD_MAP:
                hint = did_you_mean(name, FIELD_MAP) or f" Fields: {', '.join(FIELD_MAP)}."
                self.problem("sources", name, f"unknown Envoy field '{name}' in {label}.{hint}")
                continue
            if isinstance(keys, str):
                keys = [keys]
            elif not isinstance(keys, list):
                self.problem(
                    "sources",
                    name,
                    f"{where} must be a JSON key or an array of keys, not {_toml_type(keys)}. "
                    f'Write {name} = "key" or {name} = ["key", "other_key"].',
                )
                continue
            elif not keys:
                self.problem(
                    "sources",
                    name,
                    f"{where} is an empty array. Name one JSON key or more, or leave {name} out to keep "
                    f"the default ({', '.join(FIELD_MAP[name])}).",
                )
                continue
            ok = True
            for position, key in enumerate(keys):
                if not isinstance(key, str):
                    self.problem(
                        "sources", name, f"{where}[{position}] must be a string, not {_toml_type(key)}. Quote it."
                    )
                    ok = False
                elif problem := key_problem(key):
                    self.problem("sources", name, f"{where}: the key '{key}' {problem}.")
                    ok = False
            if ok:
                fields[name] = tuple(keys)
        return {"fields": fields}

    def array_of_tables(self, doc: Mapping[str, Any], section: str) -> list[dict[str, Any]]:
        value = doc.get(section, [])
        if isinstance(value, list) and all(isinstance(item, dict) for item in value):
            return value
        self.problem_at(
            self.section_line(section),
            f"{section} must be an array of tables, not {_toml_type(value)}. "
            f"Write each entry as [[{section}]].",
        )
        return []

    def read_agents(self, doc: Mapping[str, Any]) -> tuple[Agent, ...]:
        agents: list[Agent] = []
        first_index: dict[str, int] = {}
        for index, table in enumerate(self.array_of_tables(doc, "agents")):
            label = f"agents[{index + 1}]"
            self.unknown_keys(table, "agents", index, f"[[agents]] #{index + 1}")
            if "id" not in table:
                self.problem(
                    "agents", None, f'[[agents]] #{index + 1} has no id. Add id = "<agent id>".', index
                )
                continue
            agent_id = self.string(table, "agents", "id", f"{label}.id", index)
            if agent_id is None:
                continue
            if agent_id in first_index:
                self.problem(
                    "agents",
                    "id",
                    f"agent '{agent_id}' is declared twice ([[agents]] #{first_index[agent_id] + 1} and "
                    f"#{index + 1}). Merge the two entries.",
                    index,
                )
                continue
            first_index[agent_id] = index
            scope: dict[str, tuple[str, ...] | None] = {}
            for key in ("actions", "resources"):
                if key in table:
                    scope[key] = self.strings(table, "agents", key, f"{label}.{key}", index)
            agents.append(Agent(id=agent_id, **scope))
        return tuple(agents)

    def read_waivers(self, doc: Mapping[str, Any], today: date) -> tuple[Waiver, ...]:
        waivers: list[Waiver] = []
        for index, table in enumerate(self.array_of_tables(doc, "waivers")):
            label = f"waivers[{index + 1}]"
            self.unknown_keys(table, "waivers", index, f"[[waivers]] #{index + 1}")
            missing = [k for k in _KEYS["waivers"] if k not in table]
            if missing:
                self.problem(
                    "waivers",
                    None,
                    f"[[waivers]] #{index + 1} lacks {', '.join(missing)}. Every waiver needs rule, match, "
                    "reason, owner and expires.",
                    index,
                )
            text = {
                key: self.string(table, "waivers", key, f"{label}.{key}", index)
                for key in ("rule", "reason", "owner")
                if key in table
            }
            match = self.waiver_match(table, index, label) if "match" in table else None
            expires = self.waiver_expires(table, index, label) if "expires" in table else None
            if missing or None in text.values() or match is None or expires is None:
                continue
            waivers.append(
                Waiver(
                    rule=text["rule"],  # type: ignore[arg-type]
                    match=match,
                    reason=text["reason"],  # type: ignore[arg-type]
                    owner=text["owner"],  # type: ignore[arg-type]
                    expires=expires.isoformat(),
                    expired=today > expires,
                )
            )
        return tuple(waivers)

    def waiver_match(self, table: Mapping[str, Any], index: int, label: str) -> dict[str, str] | None:
        value = table["match"]
        if not isinstance(value, dict):
            self.problem(
                "waivers",
                "match",
                f"{label}.match must be a table, not {_toml_type(value)}. "
                'Write match = { actor_id = "..." }.',
                index,
            )
            return None
        if not value:
            self.problem(
                "waivers",
                "match",
                f"{label}.match is empty, so it would waive every finding of the rule. "
                "Add a key such as actor_id, or list the rule in [rules] disabled.",
                index,
            )
            return None
        ok = True
        for key, pattern in value.items():
            if key not in WAIVER_MATCH_KEYS:
                hint = did_you_mean(key, WAIVER_MATCH_KEYS) or f" Match on {', '.join(WAIVER_MATCH_KEYS)}."
                self.problem("waivers", key, f"unknown match key '{key}' in {label}.match.{hint}", index)
                ok = False
            elif not isinstance(pattern, str):
                self.problem(
                    "waivers",
                    key,
                    f"{label}.match.{key} must be a string glob, not {_toml_type(pattern)}. Quote it.",
                    index,
                )
                ok = False
        return dict(value) if ok else None

    def waiver_expires(self, table: Mapping[str, Any], index: int, label: str) -> date | None:
        value = table["expires"]
        if isinstance(value, date) and not isinstance(value, datetime):
            return value  # a bare TOML date: expires = 2027-01-31
        parsed: date | None = None
        if isinstance(value, str) and _ISO_DATE.fullmatch(value):
            try:
                parsed = date.fromisoformat(value)
            except ValueError:
                parsed = None
        if parsed is None:
            shown = (
                f"'{value}'"
                if isinstance(value, str)
                else (value.isoformat() if isinstance(value, datetime) else repr(value))
            )
            self.problem(
                "waivers",
                "expires",
                f'bad date {shown} for {label}.expires. Use an ISO date such as "2027-01-31" '
                "(the waiver holds through that day, UTC).",
                index,
            )
        return parsed


def parse_duration(text: str) -> int | None:
    """Seconds in ``90s``, ``5m``, ``24h``, ``7d`` or a combination such as ``1h30m``; None when the
    text is not a duration. No spaces, no fractions, lower-case units: one spelling per value."""
    if not _DURATION.fullmatch(text):
        return None
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


# --------------------------------------------------------------------------------------------------
# Handing the policy to SQL
# --------------------------------------------------------------------------------------------------

_TABLES = {
    "policy_identity": "kind VARCHAR, pattern VARCHAR, regex VARCHAR",
    "policy_risk": "tier VARCHAR, tier_rank INTEGER, pattern VARCHAR, regex VARCHAR",
    "policy_authority": "tier VARCHAR, tier_rank INTEGER, role VARCHAR",
    "policy_agent_scope": "agent_id VARCHAR, kind VARCHAR, pattern VARCHAR, regex VARCHAR",
    "policy_agents": "agent_id VARCHAR, has_actions BOOLEAN, has_resources BOOLEAN",
    "policy_static": "credential_id VARCHAR",
    "policy_task_keys": "kind VARCHAR, key VARCHAR, position INTEGER",
    "policy_params": (
        "audit_min_rank INTEGER, approval_required_rank INTEGER, approval_max_age_s BIGINT, "
        "max_lifetime_s BIGINT, revoke_grace_s BIGINT, clock_skew_s BIGINT"
    ),
}


def install(policy: Policy, con: duckdb.DuckDBPyConnection) -> None:
    """Write ``policy`` into the ``policy_*`` TEMP tables that correlation and rule SQL read.

    TEMP so the policy of one run never persists into the store (the store keeps only
    :attr:`Policy.fingerprint`); CREATE OR REPLACE so installing twice is harmless. Risk rows hold
    only the listed globs: SQL applies the implicit rule (read-only ``low``, else ``medium``) when
    no row matches, and the highest matching ``tier_rank`` wins. ``policy_task_keys.position`` is
    0-based; the key with the lowest position present on a record wins.
    """
    rows: dict[str, list[tuple[Any, ...]]] = {name: [] for name in _TABLES}
    for kind, patterns in (("human", policy.identities.humans), ("broker", policy.identities.brokers)):
        rows["policy_identity"] += [(kind, p, glob_to_regex(p)) for p in patterns]
    for tier in TIERS:
        rank = TIER_RANK[tier]
        rows["policy_risk"] += [(tier, rank, p, glob_to_regex(p)) for p in getattr(policy.risk, tier)]
        rows["policy_authority"] += [(tier, rank, role) for role in getattr(policy.authority, tier)]
    for agent in policy.agents:
        rows["policy_agents"].append((agent.id, agent.actions is not None, agent.resources is not None))
        for kind, patterns in (("action", agent.actions), ("resource", agent.resources)):
            rows["policy_agent_scope"] += [(agent.id, kind, p, glob_to_regex(p)) for p in patterns or ()]
    rows["policy_static"] = [(c,) for c in policy.credentials.static]
    for kind, keys in (
        ("tag", policy.correlation.task_tag_keys),
        ("span_attribute", policy.correlation.task_span_attributes),
    ):
        rows["policy_task_keys"] += [(kind, key, position) for position, key in enumerate(keys)]
    rows["policy_params"] = [
        (
            TIER_RANK[policy.audit.min_tier],
            TIER_RANK[policy.approval.required_from],
            policy.approval.max_age_s,
            policy.credentials.max_lifetime_s,
            policy.credentials.revoke_grace_s,
            policy.correlation.clock_skew_s,
        )
    ]
    for name, columns in _TABLES.items():
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} ({columns})")
        if rows[name]:
            marks = ", ".join("?" * (columns.count(",") + 1))
            con.executemany(f"INSERT INTO {name} VALUES ({marks})", rows[name])
