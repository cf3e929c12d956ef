"""The schema of the policy file: one :class:`Key` row per key, the :class:`Kind` of value it holds.

The rows drive everything about a key but its use: :mod:`nhiaudit.policy` reads a file with them
(types, unknown keys with the closest known one) and takes the section dataclasses' defaults from
them; :func:`template` renders a commented policy file at the defaults (for ``nhiaudit init``) and
:func:`reference` the key tables of docs/policy.md. A source with options declares its
``[sources.<name>]`` rows itself, as ``OPTIONS`` in its module (:func:`source_options`).

How to add a key: a row in :data:`KEYS` (and the attribute in its section's dataclass in
nhiaudit/policy.py), then ``pytest --update-golden`` rewrites docs/policy.md. A source option: a row
in that source's ``OPTIONS``. A new kind of value: a ``read`` function that returns the value or
``at.bad(message)``, messages in the form ``<what is wrong>. <how to fix>``.
"""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

from nhiaudit.errors import did_you_mean
from nhiaudit.model import TIER_RANK, TIERS

#: Finding fields a waiver may match on (values are globs).
WAIVER_MATCH_KEYS = ("actor_id", "credential_id", "task_id", "agent_id", "action", "resource", "source", "event_id")

BAD: Any = object()  # what a kind returns for a value it reported a problem about
REQUIRED: Any = object()  # the default of a key every entry of an array of tables must set


@dataclass(frozen=True)
class At:
    """A value being read, for its kind's messages: ``label`` names it (``approval.max_age``,
    ``agents[2].actions``), ``key`` is its key and ``folder`` the policy file's folder. :meth:`bad`
    records a problem on the line of ``key`` (or of ``inner``, a key inside the value) and returns
    :data:`BAD`."""

    label: str
    key: str
    folder: Path
    report: Callable[[str, str], None]  # (key whose line to name, message)

    def bad(self, message: str, inner: str | None = None) -> Any:
        self.report(inner or self.key, message)
        return BAD


@dataclass(frozen=True)
class Kind:
    """What a key holds: ``type`` as docs/policy.md names it, and ``read``, which turns the TOML
    value into the policy's value or reports why it cannot (``at.bad``)."""

    type: str
    read: Callable[[Any, At], Any]


@dataclass(frozen=True)
class Key:
    """One row of the schema. ``section`` is a table (``approval``), an array of tables (``agents``)
    or a source's options (``sources.envoy``). ``default`` is written as in TOML (``"24h"``); None
    means "not set", :data:`REQUIRED` that every entry sets it. ``attr`` is the attribute of the
    section's value when it is not ``name`` (``max_age`` -> ``max_age_s``); ``example`` is what the
    template shows for an entry of an array of tables or a source option, which have no default."""

    section: str
    name: str
    kind: Kind
    default: Any
    doc: str
    attr: str = ""
    example: Any = None

    @property
    def field(self) -> str:
        return self.attr or self.name


@dataclass(frozen=True)
class Section:
    name: str
    doc: str
    array: bool = False  # [[name]]: an array of tables
    keys_are: str = "key"  # "tier": the keys of [risk] and [authority] are tier names


# --------------------------------------------------------------------------------------------------
# Kinds
# --------------------------------------------------------------------------------------------------

_DURATION = re.compile(r"(?:\d+[smhd])+")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
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


def toml_type(value: Any) -> str:
    """``value``'s TOML type with its article, for messages: ``an integer``."""
    return _TOML_TYPE.get(type(value), type(value).__name__)


def parse_duration(text: str) -> int | None:
    """Seconds in ``90s``, ``5m``, ``24h``, ``7d`` or a combination such as ``1h30m``; None when the
    text is not a duration. No spaces, no fractions, lower-case units: one spelling per value."""
    if not _DURATION.fullmatch(text):
        return None
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART.findall(text))


def _string(value: Any, at: At) -> Any:
    if isinstance(value, str):
        return value
    return at.bad(f"{at.label} must be a string, not {toml_type(value)}. Quote it.")


def _strings(value: Any, at: At) -> Any:
    if isinstance(value, str):
        return at.bad(f"{at.label} must be an array of strings, not a string. Write {at.key} = {json.dumps([value])}.")
    if not isinstance(value, list):
        return at.bad(f'{at.label} must be an array of strings, not {toml_type(value)}. Write {at.key} = ["...", ...].')
    bad = [
        at.bad(f"{at.label}[{position}] must be a string, not {toml_type(item)}. Quote it.")
        for position, item in enumerate(value)
        if not isinstance(item, str)
    ]
    return BAD if bad else tuple(value)


def _bool(value: Any, at: At) -> Any:
    if isinstance(value, bool):
        return value
    return at.bad(f"{at.label} must be true or false, not {toml_type(value)}.")


def _tier(value: Any, at: At) -> Any:
    value = _string(value, at)
    if value is BAD or value in TIER_RANK:
        return value
    hint = did_you_mean(value, TIERS) or f" Use one of {', '.join(TIERS)}."
    return at.bad(f"unknown tier '{value}' for {at.label}.{hint}")


def _duration(value: Any, at: At) -> Any:
    seconds = parse_duration(value) if isinstance(value, str) else None
    if seconds is not None:
        return seconds
    shown = f"'{value}'" if isinstance(value, str) else repr(value)
    return at.bad(f"bad duration {shown} for {at.label}. Use a number and a unit: 90s, 5m, 24h, 7d.")


def _folders(value: Any, at: At) -> Any:
    entries = _strings(value, at)
    if entries is BAD:
        return BAD
    for entry in entries:
        if not (at.folder / entry).is_dir():
            at.bad(
                f"{at.label} entry '{entry}' is not a folder (looked for {at.folder / entry}). "
                "Fix the path; it is relative to the policy file."
            )
    return tuple(at.folder / entry for entry in entries)


def _date(value: Any, at: At) -> Any:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value  # a bare TOML date: expires = 2027-01-31
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        with suppress(ValueError):
            return date.fromisoformat(value)
    shown = (
        f"'{value}'" if isinstance(value, str) else value.isoformat() if isinstance(value, datetime) else repr(value)
    )
    return at.bad(
        f'bad date {shown} for {at.label}. Use an ISO date such as "2027-01-31" (the waiver holds through '
        "that day, UTC)."
    )


def _globs_by_field(value: Any, at: At) -> Any:
    if not isinstance(value, dict):
        return at.bad(f'{at.label} must be a table, not {toml_type(value)}. Write match = {{ actor_id = "..." }}.')
    if not value:
        return at.bad(
            f"{at.label} is empty, so it would waive every finding of the rule. "
            "Add a key such as actor_id, or list the rule in [rules] disabled."
        )
    bad = []
    for key, pattern in value.items():
        if key not in WAIVER_MATCH_KEYS:
            hint = did_you_mean(key, WAIVER_MATCH_KEYS) or f" Match on {', '.join(WAIVER_MATCH_KEYS)}."
            bad.append(at.bad(f"unknown match key '{key}' in {at.label}.{hint}", key))
        elif not isinstance(pattern, str):
            bad.append(at.bad(f"{at.label}.{key} must be a string glob, not {toml_type(pattern)}. Quote it.", key))
    return BAD if bad else dict(value)


def _aliases(value: Any, at: At) -> Any:
    """``canonical = ["alias", ...]``: each person's one name and the names other systems log them
    under. A name listed for two people would make one of them the other: an error."""
    if not isinstance(value, dict):
        return at.bad(
            f'{at.label} must be a table, not {toml_type(value)}. Write [identities.aliases] and under it '
            'alice = ["alice-gh", "alice@corp.example"].'
        )
    owner: dict[str, str] = {}
    pairs = []
    for canonical, names in value.items():
        inner = At(f"{at.label}.{canonical}", canonical, at.folder, at.report)
        names = _strings(names, inner)
        if names is BAD:
            continue
        for name in (canonical, *names):
            key = name.lower()
            if owner.get(key, canonical) != canonical:
                at.bad(
                    f"{at.label}: '{name}' is listed for both '{owner[key]}' and '{canonical}'. A name belongs "
                    "to one person: remove it from one of them.",
                    canonical,
                )
            owner.setdefault(key, canonical)
        pairs.append((canonical, tuple(names)))
    return tuple(pairs)


def _globs_to_strings(value: Any, at: At) -> Any:
    """``"<glob>" = "<value>"`` pairs, in file order."""
    if not isinstance(value, dict):
        return at.bad(
            f"{at.label} must be a table, not {toml_type(value)}. Write "
            f'{at.key} = {{ "arn:aws:iam::*:role/deploy-prod" = "prod" }}.'
        )
    bad = [
        at.bad(f"{at.label}.{glob} must be a string, not {toml_type(target)}. Quote it.", glob)
        for glob, target in value.items()
        if not isinstance(target, str) or not target
    ]
    return BAD if bad else tuple(value.items())


BOOL = Kind("boolean", _bool)
STRING = Kind("string", _string)
STRINGS = Kind("array of strings", _strings)
GLOBS = Kind("array of globs", _strings)
TIER = Kind("tier: " + ", ".join(TIERS), _tier)
DURATION = Kind("duration: 90s, 5m, 24h, 7d, 1h30m", _duration)
FOLDERS = Kind("array of folders", _folders)
DATE = Kind("date", _date)
GLOBS_BY_FIELD = Kind("table of globs", _globs_by_field)
ALIASES = Kind("table: name = array of strings", _aliases)
GLOB_TO_STRING = Kind("table: glob = string", _globs_to_strings)


# --------------------------------------------------------------------------------------------------
# The rows
# --------------------------------------------------------------------------------------------------

SECTIONS = (
    Section("identities", "Principal globs. Everything that is neither a human nor a broker is a non-human identity."),
    Section(
        "risk",
        "Normalized action globs per tier. The highest matching tier wins; an unlisted action is low when it "
        "is read-only and medium otherwise.",
        keys_are="tier",
    ),
    Section("audit", "Which actions are audited."),
    Section("approval", "Which audited actions need approval provenance, and for how long an approval holds."),
    Section(
        "authority",
        "Approver roles (exact names) allowed per tier. Once any tier lists a role, a tier without roles "
        "cannot be approved by anyone; while none does, approver authority is not checked.",
        keys_are="tier",
    ),
    Section("agents", "The standing scope of each agent, whatever an approval says.", array=True),
    Section("credentials", "Credential lifetimes and static keys."),
    Section("correlation", "How events of different sources are tied together."),
    Section(
        "waivers",
        "Accepted findings: a waiver suppresses the findings of its rule whose fields match every glob of "
        "its match table, through its expiry day. An expired waiver suppresses nothing, and the report "
        "says so.",
        array=True,
    ),
    Section("rules", "Which rules run."),
)
SECTION = {section.name: section for section in SECTIONS}

# fmt: off
KEYS: tuple[Key, ...] = (
    Key("identities", "humans", GLOBS, [], "Principals that are people; their actions are not audited."),
    Key("identities", "brokers", GLOBS, [], "Trusted credential vendors: a credential chain ending at one is rooted."),
    Key("identities", "aliases", ALIASES, {}, "One person under the names other systems log them by (GitHub login, "
        "corporate email, Teleport user, Entra UPN), as the table [identities.aliases] with one line per person: "
        "the name to use, then the array of the other names (matched without regard to case). Every approver, "
        "requester and self-approval check uses the first; trace shows both."),
    *(Key("risk", tier, GLOBS, [], f"Actions of the {tier} tier.") for tier in TIERS),
    Key("risk", "builtin", BOOL, True, "Also use the built-in catalogue of well-known critical and high actions "
        "(nhiaudit/queries/correlate/55_risk_catalogue.sql). A glob above that matches an action decides its tier "
        "instead, so a policy can lower an entry too."),
    Key("audit", "min_tier", TIER, "medium", "Actions below this tier are not audited."),
    Key("approval", "required_from", TIER, "medium", "Audited actions at or above this tier need an approval."),
    Key("approval", "max_age", DURATION, "24h", "An approval is stale this long after its decision.", "max_age_s"),
    Key("approval", "protected_roles", GLOB_TO_STRING, {}, "Role globs that only a protected GitHub environment may "
        "assume, each mapped to that environment, as in { \"arn:aws:iam::*:role/deploy-prod\" = \"prod\" }. An "
        "AssumeRoleWithWebIdentity of such a role whose OIDC subject lacks environment:<name> bypassed its reviewers "
        "(rule unprotected-role-path); one that names it proves the gate was passed."),
    *(Key("authority", tier, STRINGS, [], f"Approver roles that may approve {tier} actions.") for tier in TIERS),
    Key("agents", "id", STRING, REQUIRED, "The agent's id, as task records name it.", example="report-bot"),
    Key("agents", "actions", GLOBS, None, "Actions the agent may perform. Not set: no limit; an empty array: none.",
        example=["s3:GetObject", "s3:PutObject*"]),
    Key("agents", "resources", GLOBS, None, "Resources the agent may act on. Not set: no limit; an empty array: "
        "none.", example=["arn:aws:s3:::reports-*"]),
    Key("credentials", "max_lifetime", DURATION, "1h", "The longest a credential should live; rules read it as "
        "policy_params.max_lifetime_s (no built-in rule does yet).", "max_lifetime_s"),
    Key("credentials", "revoke_grace", DURATION, "5m", "A credential acting longer than this after its task ended "
        "outlived the task.", "revoke_grace_s"),
    Key("credentials", "static", STRINGS, [], "Credential ids known to be static API keys."),
    Key("correlation", "clock_skew", DURATION, "120s", "How far the clocks of two sources may disagree when their "
        "times are compared.", "clock_skew_s"),
    Key("correlation", "task_tag_keys", STRINGS, ["TaskId", "task_id", "task-id"],
        "Session tag keys that carry a task id, the first present winning."),
    Key("correlation", "task_span_attributes", STRINGS, ["nhiaudit.task.id", "task.id", "gen_ai.conversation.id"],
        "OpenTelemetry span attributes that carry a task id, the first present winning."),
    Key("waivers", "rule", STRING, REQUIRED, "The rule whose findings are waived.", example="long-lived-credential"),
    Key("waivers", "match", GLOBS_BY_FIELD, REQUIRED, "A glob per finding field, all of which must match; fields: "
        f"{', '.join(WAIVER_MATCH_KEYS)}.", example={"actor_id": "arn:aws:iam::111111111111:user/legacy-etl"}),
    Key("waivers", "reason", STRING, REQUIRED, "Why the findings are accepted.",
        example="Migration to JIT in CHG0040001"),
    Key("waivers", "owner", STRING, REQUIRED, "Who answers for the waiver.", example="platform-team@example.com"),
    Key("waivers", "expires", DATE, REQUIRED, "The last day (UTC) the waiver holds, ISO.", example="2027-01-31"),
    Key("rules", "dirs", FOLDERS, [], "Extra rule folders, relative to the policy file."),
    Key("rules", "disabled", STRINGS, [], "Ids of rules not to run."),
)
# fmt: on


def keys_of(section: str) -> tuple[Key, ...]:
    return tuple(key for key in KEYS if key.section == section)


def source_options() -> dict[str, tuple[Key, ...]]:
    """The ``[sources.<name>]`` rows: the ``OPTIONS`` of each source that declares any."""
    from nhiaudit.sources import SOURCES  # here, not at the top: it imports every log format

    return {name: module.OPTIONS for name, module in SOURCES.items() if getattr(module, "OPTIONS", ())}


def default(key: Key) -> Any:
    """``key``'s default as the policy holds it (``"24h"`` -> 86400); a bad default is a bug."""

    def report(_key: str, message: str) -> None:
        raise ValueError(f"the default of {key.section}.{key.name} is wrong: {message}")

    return None if key.default is None else key.kind.read(key.default, At(key.name, key.name, Path("."), report))


# --------------------------------------------------------------------------------------------------
# The schema as a file and as docs
# --------------------------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    """A default or example as TOML text (strings as JSON strings, which TOML reads the same)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        items = [f"{k if re.fullmatch(r'[A-Za-z0-9_-]+', k) else _toml(k)} = {_toml(v)}" for k, v in value.items()]
        return "{ " + ", ".join(items) + " }" if items else "{}"
    return json.dumps(value)


def _all_sections() -> list[tuple[str, str, bool, tuple[Key, ...]]]:
    """(header, doc, whether the template comments it out, rows) of every section, sources last."""
    out = [(f"[[{s.name}]]" if s.array else f"[{s.name}]", s.doc, s.array, keys_of(s.name)) for s in SECTIONS]
    for name, keys in source_options().items():
        out.append((f"[sources.{name}]", f"How `nhiaudit ingest` reads {name} files.", True, keys))
    return out


def template() -> str:
    """A policy file with every key at its default, under its doc, for ``nhiaudit init``. Arrays of
    tables and source options have no default entry: they are commented-out examples (a
    ``[sources]`` section would also make every command import every source)."""
    lines = ["# nhiaudit policy: every key is at its default (docs/policy.md describes them)."]
    for header, doc, commented, keys in _all_sections():
        out = "# " if commented else ""
        lines += ["", *_comment(doc + (" Example:" if commented else "")), out + header]
        for key in keys:
            shown = key.example if commented and key.example is not None else key.default
            lines += [*_comment(key.doc), f"{out}{key.name} = {_toml(shown)}"]
    return "\n".join(lines) + "\n"


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, width=98, initial_indent="# ", subsequent_indent="# ")


def reference() -> str:
    """The key tables of docs/policy.md (Markdown), one a section."""
    lines = []
    for header, doc, _, keys in _all_sections():
        lines += [f"### `{header}`", "", doc, "", "| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        for key in keys:
            shown = "required" if key.default is REQUIRED else "not set" if key.default is None else None
            lines.append(f"| `{key.name}` | {key.kind.type} | {shown or f'`{_toml(key.default)}`'} | {key.doc} |")
        lines.append("")
    return "\n".join(lines)
