"""Policy loading (DESIGN §5): defaults, the full example, every error message, path resolution,
globs, the ``policy_*`` tables the SQL reads, and the schema's template and docs."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nhiaudit import policy_schema
from nhiaudit.errors import PolicyError
from nhiaudit.model import Waiver
from nhiaudit.policy import (
    GLOB_MACRO,
    Agent,
    Identities,
    Policy,
    _defaults_from_keys,
    glob_match,
    glob_matches,
    install,
    load_policy,
    resolve_policy_path,
)
from nhiaudit.policy_schema import KEYS, parse_duration, reference, template

DOCS = Path(__file__).parent.parent / "docs" / "policy.md"

DESIGN_EXAMPLE = """\
[identities]                   # principal globs; everything else is a non-human identity
humans = ["arn:aws:iam::*:user/*@*", "*@example.com"]
brokers = ["arn:aws:sts::*:assumed-role/agent-orchestrator/*"]   # trusted credential vendors
[risk]          # normalized action globs -> tier; unlisted: read-only "low", else "medium"
high = ["iam:*", "kms:*", "s3:DeleteBucket*", "ec2:TerminateInstances"]
critical = ["organizations:*", "cloudtrail:StopLogging", "cloudtrail:DeleteTrail"]
[audit]
min_tier = "medium"            # actions below are not audited
[approval]
required_from = "medium"       # audited actions at or above need approval provenance
max_age = "24h"
[authority]                    # which approver roles may approve which tier (exact lists)
medium = ["team-lead", "change-manager"]
high = ["change-manager"]
critical = ["security-officer"]
[[agents]]                     # standing scope of each agent, whatever an approval says
id = "report-bot"
actions = ["s3:GetObject", "s3:PutObject*"]
resources = ["arn:aws:s3:::reports-*"]
[credentials]
max_lifetime = "1h"
revoke_grace = "5m"
static = ["kong:3f2a"]         # credential ids known to be static API keys
[correlation]
clock_skew = "120s"
task_tag_keys = ["TaskId", "task_id", "task-id"]
task_span_attributes = ["nhiaudit.task.id", "task.id", "gen_ai.conversation.id"]
[[waivers]]
rule = "long-lived-credential"
match = { actor_id = "arn:aws:iam::111111111111:user/legacy-etl" }
reason = "Migration to JIT in CHG0040001"
owner = "platform-team@example.com"
expires = "2027-01-31"
"""

TODAY = date(2026, 11, 2)


@pytest.fixture
def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Write ``nhiaudit.toml`` in a fresh working folder and return its relative path, so error
    messages start with ``nhiaudit.toml:`` exactly as a user sees them."""
    monkeypatch.chdir(tmp_path)

    def _write(text: str) -> Path:
        path = Path("nhiaudit.toml")
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return _write


def load_error(path: Path) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(path, today=TODAY)
    return str(info.value)


# --------------------------------------------------------------------------------------------------
# Defaults and the full example
# --------------------------------------------------------------------------------------------------


def test_no_file_gives_every_default() -> None:
    policy = load_policy(None)
    assert policy.path is None
    assert policy.identities.humans == () and policy.identities.brokers == ()
    assert (policy.risk.low, policy.risk.medium, policy.risk.high, policy.risk.critical) == ((), (), (), ())
    assert policy.audit.min_tier == "medium"
    assert policy.approval.required_from == "medium"
    assert policy.approval.max_age_s == 24 * 3600
    assert (policy.authority.low, policy.authority.medium) == ((), ())
    assert (policy.authority.high, policy.authority.critical) == ((), ())
    assert policy.agents == ()
    assert policy.credentials.max_lifetime_s == 3600
    assert policy.credentials.revoke_grace_s == 300
    assert policy.credentials.static == ()
    assert policy.correlation.clock_skew_s == 120
    assert policy.correlation.task_tag_keys == ("TaskId", "task_id", "task-id")
    assert policy.correlation.task_span_attributes == (
        "nhiaudit.task.id",
        "task.id",
        "gen_ai.conversation.id",
    )
    assert policy.waivers == ()
    assert policy.rules.dirs == () and policy.rules.disabled == ()


def test_empty_file_is_the_defaults(write) -> None:
    path = write("# nothing configured\n")
    policy = load_policy(path)
    assert policy.path == path
    assert policy == Policy(path=path)
    assert policy.fingerprint == Policy().fingerprint


def test_design_example_loads(write) -> None:
    policy = load_policy(write(DESIGN_EXAMPLE), today=TODAY)
    assert policy.identities.humans == ("arn:aws:iam::*:user/*@*", "*@example.com")
    assert policy.identities.brokers == ("arn:aws:sts::*:assumed-role/agent-orchestrator/*",)
    assert policy.risk.high == ("iam:*", "kms:*", "s3:DeleteBucket*", "ec2:TerminateInstances")
    assert policy.risk.critical == ("organizations:*", "cloudtrail:StopLogging", "cloudtrail:DeleteTrail")
    assert policy.risk.low == () and policy.risk.medium == ()
    assert policy.authority.medium == ("team-lead", "change-manager")
    assert policy.authority.high == ("change-manager",)
    assert policy.authority.critical == ("security-officer",)
    assert policy.agents == (
        Agent(
            id="report-bot", actions=("s3:GetObject", "s3:PutObject*"), resources=("arn:aws:s3:::reports-*",)
        ),
    )
    assert policy.credentials.static == ("kong:3f2a",)
    assert policy.waivers == (
        Waiver(
            rule="long-lived-credential",
            match={"actor_id": "arn:aws:iam::111111111111:user/legacy-etl"},
            reason="Migration to JIT in CHG0040001",
            owner="platform-team@example.com",
            expires="2027-01-31",
            expired=False,
        ),
    )


def test_values_override_defaults(write) -> None:
    policy = load_policy(
        write("""
        [audit]
        min_tier = "low"
        [approval]
        required_from = "high"
        max_age = "1h30m"
        [risk]
        low = ["s3:PutObjectTagging"]
        medium = ["s3:GetObject"]
        [credentials]
        max_lifetime = "7d"
        revoke_grace = "0s"
        [correlation]
        clock_skew = "3m"
        task_tag_keys = ["Job"]
        task_span_attributes = []
        [rules]
        disabled = ["unknown-task"]
        """)
    )
    assert policy.audit.min_tier == "low"
    assert policy.approval.required_from == "high"
    assert policy.approval.max_age_s == 5400
    assert policy.risk.low == ("s3:PutObjectTagging",) and policy.risk.medium == ("s3:GetObject",)
    assert policy.credentials.max_lifetime_s == 7 * 86400 and policy.credentials.revoke_grace_s == 0
    assert policy.correlation.clock_skew_s == 180 and policy.correlation.task_tag_keys == ("Job",)
    assert policy.correlation.task_span_attributes == ()
    assert policy.rules.disabled == ("unknown-task",)


# --------------------------------------------------------------------------------------------------
# Durations, dates, waivers, rule folders
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("24h", 86400),
        ("7d", 604800),
        ("1h30m", 5400),
        ("1d2h3m4s", 93784),
        ("0s", 0),
    ],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "m", "5 minutes", "5M", "1.5h", "-5m", " 5m", "5m ", "1w"])
def test_parse_duration_rejects(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("today", "expired"), [(date(2027, 1, 30), False), (date(2027, 1, 31), False), (date(2027, 2, 1), True)]
)
def test_waiver_holds_through_its_expiry_day(write, today: date, expired: bool) -> None:
    policy = load_policy(write(DESIGN_EXAMPLE), today=today)
    assert policy.waivers[0].expired is expired


def test_waiver_accepts_a_toml_date(write) -> None:
    path = write("""
    [[waivers]]
    rule = "r"
    match = { credential_id = "AKIA*", source = "cloudtrail" }
    reason = "why"
    owner = "me@example.com"
    expires = 2026-11-01
    """)
    (waiver,) = load_policy(path, today=TODAY).waivers
    assert waiver.expires == "2026-11-01" and waiver.expired is True
    assert waiver.match == {"credential_id": "AKIA*", "source": "cloudtrail"}


def test_rule_dirs_are_relative_to_the_policy_file(tmp_path: Path) -> None:
    (tmp_path / "conf" / "extra").mkdir(parents=True)
    path = tmp_path / "conf" / "nhiaudit.toml"
    path.write_text('[rules]\ndirs = ["extra"]\n', encoding="utf-8")
    assert load_policy(path).rules.dirs == (tmp_path / "conf" / "extra",)


def test_agent_scope_declared_empty_differs_from_undeclared(write) -> None:
    policy = load_policy(write('[[agents]]\nid = "a"\nactions = []\n[[agents]]\nid = "b"\n'))
    assert policy.agents == (Agent(id="a", actions=(), resources=None), Agent(id="b"))


# --------------------------------------------------------------------------------------------------
# Errors: one message per problem, exact text
# --------------------------------------------------------------------------------------------------

ERRORS = [
    pytest.param(
        '[authority]\nmedium = ["team-lead"]\nhgih = ["change-manager"]\n',
        "nhiaudit.toml:3: unknown tier 'hgih' in [authority]. Did you mean 'high'?",
        id="unknown-tier-authority",
    ),
    pytest.param(
        '[risk]\nextreme = ["iam:*"]\n',
        "nhiaudit.toml:2: unknown tier 'extreme' in [risk]. Tiers are low, medium, high, critical.",
        id="unknown-tier-risk-no-suggestion",
    ),
    pytest.param(
        '[approval]\nmax_age = "5 minutes"\n',
        "nhiaudit.toml:2: bad duration '5 minutes' for approval.max_age. "
        "Use a number and a unit: 90s, 5m, 24h, 7d.",
        id="bad-duration",
    ),
    pytest.param(
        "[credentials]\nrevoke_grace = 300\n",
        "nhiaudit.toml:2: bad duration 300 for credentials.revoke_grace. "
        "Use a number and a unit: 90s, 5m, 24h, 7d.",
        id="duration-not-a-string",
    ),
    pytest.param(
        '[audit]\nmin_tier = "hihg"\n',
        "nhiaudit.toml:2: unknown tier 'hihg' for audit.min_tier. Did you mean 'high'?",
        id="bad-tier-value",
    ),
    pytest.param(
        '[approval]\nrequired_from = "everything"\n',
        "nhiaudit.toml:2: unknown tier 'everything' for approval.required_from. "
        "Use one of low, medium, high, critical.",
        id="bad-tier-value-no-suggestion",
    ),
    pytest.param(
        "[audit]\nmin_tier = 2\n",
        "nhiaudit.toml:2: audit.min_tier must be a string, not an integer. Quote it.",
        id="tier-not-a-string",
    ),
    pytest.param(
        '[approval]\nmax_agee = "1h"\n',
        "nhiaudit.toml:2: unknown key 'max_agee' in [approval]. Did you mean 'max_age'?",
        id="unknown-key",
    ),
    pytest.param(
        "[approval]\ncolour = 1\n",
        "nhiaudit.toml:2: unknown key 'colour' in [approval]. Known keys: required_from, max_age, protected_roles.",
        id="unknown-key-no-suggestion",
    ),
    pytest.param(
        '\n[authorty]\nmedium = ["x"]\n',
        "nhiaudit.toml:2: unknown section [authorty]. Did you mean 'authority'?",
        id="unknown-section",
    ),
    pytest.param(
        '[[agent]]\nid = "x"\n',
        "nhiaudit.toml:1: unknown section [agent]. Did you mean 'agents'?",
        id="unknown-array-section",
    ),
    pytest.param(
        "[zzz]\n",
        "nhiaudit.toml:1: unknown section [zzz]. Known sections: identities, risk, audit, approval, "
        "authority, agents, credentials, correlation, waivers, rules, sources.",
        id="unknown-section-no-suggestion",
    ),
    pytest.param(
        'min_tier = "high"\n',
        "nhiaudit.toml:1: unknown key 'min_tier' at the top level. Put it under [audit].",
        id="top-level-key",
    ),
    pytest.param(
        '[identities]\nhumans = "*@example.com"\n',
        "nhiaudit.toml:2: identities.humans must be an array of strings, not a string. "
        'Write humans = ["*@example.com"].',
        id="string-for-list",
    ),
    pytest.param(
        "[credentials]\nstatic = {a = 1}\n",
        "nhiaudit.toml:2: credentials.static must be an array of strings, not a table. "
        'Write static = ["...", ...].',
        id="table-for-list",
    ),
    pytest.param(
        '[correlation]\ntask_tag_keys = ["TaskId", 7]\n',
        "nhiaudit.toml:2: correlation.task_tag_keys[1] must be a string, not an integer. Quote it.",
        id="list-item-type",
    ),
    pytest.param(
        'identities = "x"\n',
        "nhiaudit.toml:1: identities must be a table, not a string. Write it as [identities].",
        id="section-type",
    ),
    pytest.param(
        '[agents]\nid = "x"\n',
        "nhiaudit.toml:1: agents must be an array of tables, not a table. Write each entry as [[agents]].",
        id="table-for-array-of-tables",
    ),
    pytest.param(
        '[[agents]]\nactions = ["s3:*"]\n',
        'nhiaudit.toml:1: [[agents]] #1 has no id. Add id = "<agent id>".',
        id="agent-without-id",
    ),
    pytest.param(
        '[[agents]]\nid = "a"\n[[agents]]\nid = "b"\nresourcez = []\n',
        "nhiaudit.toml:5: unknown key 'resourcez' in [[agents]] #2. Did you mean 'resources'?",
        id="agent-unknown-key",
    ),
    pytest.param(
        '[[agents]]\nid = "a"\n[[agents]]\nid = "a"\n',
        "nhiaudit.toml:4: agent 'a' is declared twice ([[agents]] #1 and #2). Merge the two entries.",
        id="agent-duplicate",
    ),
    pytest.param(
        '[[agents]]\nid = "a"\nactions = "s3:*"\n',
        "nhiaudit.toml:3: agents[1].actions must be an array of strings, not a string. "
        'Write actions = ["s3:*"].',
        id="agent-scope-type",
    ),
    pytest.param(
        '[[waivers]]\nrule = "r"\nmatch = { actor_id = "a" }\n',
        "nhiaudit.toml:1: [[waivers]] #1 lacks reason, owner, expires. "
        "Every waiver needs rule, match, reason, owner and expires.",
        id="waiver-missing-keys",
    ),
    pytest.param(
        '[[waivers]]\nrule = "r"\nreason = "x"\nowner = "o"\nexpires = "2027-01-01"\n'
        'match = { actor = "a" }\n',
        "nhiaudit.toml:6: unknown match key 'actor' in waivers[1].match. Did you mean 'actor_id'?",
        id="waiver-match-key",
    ),
    pytest.param(
        '[[waivers]]\nrule = "r"\nreason = "x"\nowner = "o"\nexpires = "2027-01-01"\nmatch = {}\n',
        "nhiaudit.toml:6: waivers[1].match is empty, so it would waive every finding of the rule. "
        "Add a key such as actor_id, or list the rule in [rules] disabled.",
        id="waiver-empty-match",
    ),
    pytest.param(
        '[[waivers]]\nrule = "r"\nreason = "x"\nowner = "o"\nexpires = "2027-01-01"\nmatch = "a"\n',
        "nhiaudit.toml:6: waivers[1].match must be a table, not a string. "
        'Write match = { actor_id = "..." }.',
        id="waiver-match-type",
    ),
    pytest.param(
        '[[waivers]]\nrule = "r"\nreason = "x"\nowner = "o"\nexpires = "2027-01-01"\n'
        "[waivers.match]\nactor_id = 5\n",
        "nhiaudit.toml:7: waivers[1].match.actor_id must be a string glob, not an integer. Quote it.",
        id="waiver-match-value-type",
    ),
    pytest.param(
        '[[waivers]]\nrule = "r"\nmatch = { actor_id = "a" }\nreason = "x"\nowner = "o"\n'
        'expires = "31/01/2027"\n',
        "nhiaudit.toml:6: bad date '31/01/2027' for waivers[1].expires. "
        'Use an ISO date such as "2027-01-31" (the waiver holds through that day, UTC).',
        id="bad-date-format",
    ),
    pytest.param(
        '[[waivers]]\nrule = "r"\nmatch = { actor_id = "a" }\nreason = "x"\nowner = "o"\n'
        'expires = "2027-02-30"\n',
        "nhiaudit.toml:6: bad date '2027-02-30' for waivers[1].expires. "
        'Use an ISO date such as "2027-01-31" (the waiver holds through that day, UTC).',
        id="bad-date-value",
    ),
    pytest.param(
        '[[waivers]]\nrule = 3\nmatch = { actor_id = "a" }\nreason = "x"\nowner = "o"\n'
        'expires = "2027-01-01"\n',
        "nhiaudit.toml:2: waivers[1].rule must be a string, not an integer. Quote it.",
        id="waiver-value-type",
    ),
    pytest.param(
        '[identities.aliases]\nalice = ["al"]\nbob = ["AL"]\n',
        "nhiaudit.toml:3: identities.aliases: 'AL' is listed for both 'alice' and 'bob'. A name belongs to one "
        "person: remove it from one of them.",
        id="alias-of-two-people",
    ),
    pytest.param(
        '[identities.aliases]\nalice = "al"\n',
        'nhiaudit.toml:2: identities.aliases.alice must be an array of strings, not a string. Write alice = ["al"].',
        id="alias-not-a-list",
    ),
    pytest.param(
        '[approval]\nprotected_roles = ["x"]\n',
        "nhiaudit.toml:2: approval.protected_roles must be a table, not an array. "
        'Write protected_roles = { "arn:aws:iam::*:role/deploy-prod" = "prod" }.',
        id="protected-roles-type",
    ),
    pytest.param(
        '[approval]\nprotected_roles = { "arn:*" = 3 }\n',
        "nhiaudit.toml:2: approval.protected_roles.arn:* must be a string, not an integer. Quote it.",
        id="protected-roles-value",
    ),
    pytest.param(
        '[rules]\ndirs = ["missing"]\n',
        "nhiaudit.toml:2: rules.dirs entry 'missing' is not a folder (looked for missing). "
        "Fix the path; it is relative to the policy file.",
        id="rule-dir-missing",
    ),
    pytest.param(
        "approval.max_age = 'soon'\n",
        "nhiaudit.toml:1: bad duration 'soon' for approval.max_age. "
        "Use a number and a unit: 90s, 5m, 24h, 7d.",
        id="dotted-key-line",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_error_message(write, text: str, message: str) -> None:
    assert load_error(write(text)) == message


def test_invalid_toml_reports_line_and_column(write) -> None:
    path = write('[audit]\nmin_tier = "medium"\nmax_age = \n')
    assert load_error(path) == (
        "nhiaudit.toml:3: invalid TOML: Invalid value, column 11. Fix the syntax (see https://toml.io)."
    )


def test_invalid_toml_at_end_of_document(write) -> None:
    path = write('[audit]\nmin_tier = "medium\n')
    assert load_error(path).startswith("nhiaudit.toml:2: invalid TOML: ")


def test_all_problems_are_reported_together_in_file_order(write) -> None:
    path = write("""\
        [identities]
        humans = "*@example.com"
        [approval]
        max_age = "5 minutes"
        [authority]
        hgih = ["x"]
        [[waivers]]
        rule = "r"
        match = { actor_id = "a" }
        reason = "x"
        owner = "o"
        expires = "2027-13-01"
        """)
    with pytest.raises(PolicyError) as info:
        load_policy(path, today=TODAY)
    assert str(info.value) == "\n".join(info.value.problems)
    assert info.value.problems == [
        "nhiaudit.toml:2: identities.humans must be an array of strings, not a string. "
        'Write humans = ["*@example.com"].',
        "nhiaudit.toml:4: bad duration '5 minutes' for approval.max_age. "
        "Use a number and a unit: 90s, 5m, 24h, 7d.",
        "nhiaudit.toml:6: unknown tier 'hgih' in [authority]. Did you mean 'high'?",
        "nhiaudit.toml:12: bad date '2027-13-01' for waivers[1].expires. "
        'Use an ISO date such as "2027-01-31" (the waiver holds through that day, UTC).',
    ]


def test_line_numbers_follow_the_right_array_entry(write) -> None:
    path = write("""\
        [[waivers]]
        rule = "a"
        match = { actor_id = "x" }
        reason = "x"
        owner = "o"
        expires = "2027-01-01"
        [[waivers]]
        rule = "b"
        match = { actor_id = "x" }
        reason = "x"
        owner = "o"
        expires = "tomorrow"
        """)
    assert load_error(path).startswith("nhiaudit.toml:12: bad date 'tomorrow' for waivers[2].expires.")


# --------------------------------------------------------------------------------------------------
# Which file
# --------------------------------------------------------------------------------------------------


def test_resolve_prefers_option_then_env_then_cwd(tmp_path: Path) -> None:
    option, from_env, local = tmp_path / "opt.toml", tmp_path / "env.toml", tmp_path / "nhiaudit.toml"
    for path in (option, from_env, local):
        path.write_text("", encoding="utf-8")
    env = {"NHIAUDIT_POLICY": str(from_env)}
    assert resolve_policy_path(option, env=env, cwd=tmp_path) == option
    assert resolve_policy_path(None, env=env, cwd=tmp_path) == from_env
    assert resolve_policy_path(None, env={}, cwd=tmp_path) == local
    local.unlink()
    assert resolve_policy_path(None, env={}, cwd=tmp_path) is None
    assert resolve_policy_path(None, env={"NHIAUDIT_POLICY": ""}, cwd=tmp_path) is None


def test_resolve_defaults_to_the_process_working_folder(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_policy_path(None, env={}) is None
    Path("nhiaudit.toml").write_text("", encoding="utf-8")
    assert resolve_policy_path(None, env={}) == Path("nhiaudit.toml")


def test_resolve_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "nhiaudit.toml").write_text("", encoding="utf-8")
    missing = tmp_path / "nope.toml"
    with pytest.raises(PolicyError) as info:
        resolve_policy_path(missing, env={}, cwd=tmp_path)
    assert str(info.value) == (
        f"{missing}: no policy file there (named by --policy). "
        "Fix the path, or drop --policy to use ./nhiaudit.toml or the defaults."
    )
    with pytest.raises(PolicyError, match="named by NHIAUDIT_POLICY"):
        resolve_policy_path(None, env={"NHIAUDIT_POLICY": str(missing)}, cwd=tmp_path)


# --------------------------------------------------------------------------------------------------
# Fingerprint
# --------------------------------------------------------------------------------------------------


def test_fingerprint_is_stable_and_ignores_the_location(tmp_path: Path) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    b.write_text(DESIGN_EXAMPLE.replace("[audit]", "# moved\n[audit]"), encoding="utf-8")
    fingerprint = load_policy(a, today=TODAY).fingerprint
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert load_policy(b, today=TODAY).fingerprint == fingerprint


@pytest.mark.parametrize(
    "change",
    [
        ('max_age = "24h"', 'max_age = "23h"'),
        ('"iam:*", ', ""),
        ('id = "report-bot"', 'id = "other-bot"'),
        ('expires = "2027-01-31"', 'expires = "2027-02-01"'),
    ],
)
def test_fingerprint_changes_with_the_policy(tmp_path: Path, change: tuple[str, str]) -> None:
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    b.write_text(DESIGN_EXAMPLE.replace(*change), encoding="utf-8")
    assert load_policy(a, today=TODAY).fingerprint != load_policy(b, today=TODAY).fingerprint


def test_fingerprint_changes_when_a_waiver_lapses(write) -> None:
    path = write(DESIGN_EXAMPLE)
    before = load_policy(path, today=date(2027, 1, 31)).fingerprint
    assert load_policy(path, today=date(2027, 2, 1)).fingerprint != before


# --------------------------------------------------------------------------------------------------
# Globs and tiers
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    """One in-memory database for the glob tests (hypothesis calls them hundreds of times)."""
    with duckdb.connect() as connection:
        connection.execute(GLOB_MACRO)
        yield connection


GLOB_CASES = [
    ("arn:aws:s3:::reports-*", "arn:aws:s3:::reports-prod/2026/11.csv", True),
    ("arn:aws:iam::*:user/*@*", "arn:aws:iam::111:user/bob@example.com", True),
    ("arn:aws:iam::*:user/*@*", "arn:aws:iam::111:role/bot", False),
    ("s3:Get?bject", "s3:GetObject", True),
    ("s3:Get?bject", "s3:Getbject", False),
    ("s3:GetObject", "S3:GetObject", False),  # case-sensitive
    ("s3:GetObject", "s3:GetObjectAcl", False),  # anchored at the end
    ("GetObject", "s3:GetObject", False),  # anchored at the start
    ("a.b", "axb", False),  # regex metacharacters are literal
    ("a[bc]d", "a[bc]d", True),
    ("a[bc]d", "abd", False),
    ("(x|y)+$^\\", "(x|y)+$^\\", True),
    ("a{2}", "aa", False),
    ("\\d", "1", False),
    ("*", "", True),
    ("", "", True),
    ("", "a", False),
    ("?", "", False),
    ("tab\there", "tab\there", True),
    ("caf?", "café", True),
    # A newline is never matched by a wildcard: a hostile value cannot widen a glob by carrying one.
    ("a*", "a\nb", False),
    ("*", "multi\nline", False),
    ("a?b", "a\nb", False),
    ("a*", "ab\n", False),
    ("a\nb", "a\nb", True),  # written in the glob, it is literal
    ("*\n*", "a\nb", True),
]


@pytest.mark.parametrize(("pattern", "value", "matches"), GLOB_CASES)
def test_glob_match(pattern: str, value: str, matches: bool) -> None:
    assert glob_match(pattern, value) is matches


@pytest.mark.parametrize(("pattern", "value", "matches"), GLOB_CASES)
def test_python_and_sql_globs_agree(con, pattern: str, value: str, matches: bool) -> None:
    """Every place a glob is matched gives the same answer: a waiver's match (the policy_waiver_match
    regex the findings SQL uses), the policy tables' regex (identities, risk, agent scope), Python's
    glob_match and an approval scope from the evidence, translated at query time as 80_chains.sql does."""
    waiver = Waiver("r", {"actor_id": pattern}, "why", "me", "2027-01-31")
    install(Policy(waivers=(waiver,)), con)
    (waived,) = con.execute("SELECT regexp_full_match(?, regex) FROM policy_waiver_match", [value]).fetchone()
    assert waived is matches
    assert glob_match(pattern, value) is matches
    install(Policy(identities=Identities(humans=(pattern,))), con)
    (installed,) = con.execute("SELECT regexp_full_match(?, regex) FROM policy_identity", [value]).fetchone()
    assert installed is matches
    (scope,) = con.execute(
        "SELECT len(list_filter([?], g -> regexp_full_match(?, glob_regex(g)))) > 0", [pattern, value]
    ).fetchone()
    assert scope is matches


def reference_match(pattern: str, value: str) -> bool:
    """Glob semantics spelled out as a plain recursive matcher, to check the regex translation."""
    if not pattern:
        return not value
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return any(reference_match(rest, value[i:]) for i in range(len(value) + 1) if "\n" not in value[:i])
    if not value:
        return False
    return (head == value[0] or (head == "?" and value[0] != "\n")) and reference_match(rest, value[1:])


GLOB_ALPHABET = "ab:/.*?\\[](){}|^$+- \n\té"
globs = st.text(alphabet=GLOB_ALPHABET, max_size=8)
values = st.text(alphabet=GLOB_ALPHABET.replace("*", "").replace("?", ""), max_size=10)


@given(globs, values)
def test_glob_match_agrees_with_the_reference(con, pattern: str, value: str) -> None:
    assert glob_match(pattern, value, con) is reference_match(pattern, value)


@settings(max_examples=300, deadline=None)
@given(st.one_of(globs, st.text(max_size=8)), st.one_of(values, st.text(max_size=10)))
def test_installed_regex_agrees_with_glob_match(con, pattern: str, value: str) -> None:
    install(Policy(identities=Identities(humans=(pattern,))), con)
    (matched,) = con.execute("SELECT regexp_full_match(?, regex) FROM policy_identity", [value]).fetchone()
    assert matched is glob_match(pattern, value, con) is reference_match(pattern, value)
    (searched,) = con.execute("SELECT regexp_matches(?, regex) FROM policy_identity", [value]).fetchone()
    assert searched is matched  # anchored, so an unanchored search agrees too


def test_glob_matches_answers_many_pairs_at_once(con) -> None:
    pairs = [("a*", "abc"), ("a*", "b"), ("?", "x"), ("a*", "a\nb")]
    assert glob_matches(pairs, con) == {("a*", "abc"), ("?", "x")}
    assert glob_matches([], con) == set()


def test_installed_regex_is_readable(con) -> None:
    install(Policy(identities=Identities(humans=("arn:aws:s3:::reports-*", "a.b?c d"))), con)
    assert sorted(r for (r,) in con.execute("SELECT regex FROM policy_identity").fetchall()) == [
        "^a\\.b[^\\n]c d$",
        "^arn:aws:s3:::reports-[^\\n]*$",
    ]


def test_tier_for_highest_listed_tier_wins_else_read_only_decides(write) -> None:
    policy = load_policy(
        write('[risk]\nlow = ["s3:PutObjectTagging"]\nhigh = ["iam:*"]\ncritical = ["iam:CreateAccessKey"]\n')
    )
    assert policy.tier_for("iam:CreateAccessKey", read_only=False) == "critical"
    assert policy.tier_for("iam:ListUsers", read_only=True) == "high"
    assert policy.tier_for("s3:PutObjectTagging", read_only=False) == "low"
    assert policy.tier_for("s3:GetObject", read_only=True) == "low"
    assert policy.tier_for("s3:PutObject", read_only=False) == "medium"
    assert policy.tier_for("s3:PutObject", read_only=None) == "medium"
    assert policy.tier_for(None, read_only=True) == "low"


# --------------------------------------------------------------------------------------------------
# install
# --------------------------------------------------------------------------------------------------


def rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple]:
    return con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()


def test_install_writes_every_table(write) -> None:
    policy = load_policy(write(DESIGN_EXAMPLE + '\n[[agents]]\nid = "idle-bot"\nactions = []\n'), today=TODAY)
    con = duckdb.connect()
    install(policy, con)
    assert [(k, p) for k, p, _ in rows(con, "policy_identity")] == [
        ("broker", "arn:aws:sts::*:assumed-role/agent-orchestrator/*"),
        ("human", "*@example.com"),
        ("human", "arn:aws:iam::*:user/*@*"),
    ]
    assert [(t, r, p) for t, r, p, _ in rows(con, "policy_risk")] == [
        ("critical", 3, "cloudtrail:DeleteTrail"),
        ("critical", 3, "cloudtrail:StopLogging"),
        ("critical", 3, "organizations:*"),
        ("high", 2, "ec2:TerminateInstances"),
        ("high", 2, "iam:*"),
        ("high", 2, "kms:*"),
        ("high", 2, "s3:DeleteBucket*"),
    ]
    assert rows(con, "policy_authority") == [
        ("critical", 3, "security-officer"),
        ("high", 2, "change-manager"),
        ("medium", 1, "change-manager"),
        ("medium", 1, "team-lead"),
    ]
    assert [(a, k, p) for a, k, p, _ in rows(con, "policy_agent_scope")] == [
        ("report-bot", "action", "s3:GetObject"),
        ("report-bot", "action", "s3:PutObject*"),
        ("report-bot", "resource", "arn:aws:s3:::reports-*"),
    ]
    assert rows(con, "policy_agents") == [("idle-bot", True, False), ("report-bot", True, True)]
    assert rows(con, "policy_static") == [("kong:3f2a",)]
    assert con.execute("SELECT kind, key FROM policy_task_keys ORDER BY kind, position").fetchall() == [
        ("span_attribute", "nhiaudit.task.id"),
        ("span_attribute", "task.id"),
        ("span_attribute", "gen_ai.conversation.id"),
        ("tag", "TaskId"),
        ("tag", "task_id"),
        ("tag", "task-id"),
    ]
    assert rows(con, "policy_params") == [(1, 1, 86400, 3600, 300, 120, True)]


def test_install_defaults_and_reinstall_replaces(write) -> None:
    con = duckdb.connect()
    install(load_policy(write(DESIGN_EXAMPLE), today=TODAY), con)
    install(load_policy(None), con)
    for table in (
        "policy_identity",
        "policy_risk",
        "policy_authority",
        "policy_agent_scope",
        "policy_agents",
    ):
        assert rows(con, table) == [], table
    assert rows(con, "policy_static") == []
    assert len(rows(con, "policy_task_keys")) == 6
    assert rows(con, "policy_params") == [(1, 1, 86400, 3600, 300, 120, True)]
    types = dict(con.execute("SELECT column_name, column_type FROM (DESCRIBE policy_params)").fetchall())
    assert types == {
        "audit_min_rank": "INTEGER",
        "approval_required_rank": "INTEGER",
        "approval_max_age_s": "BIGINT",
        "max_lifetime_s": "BIGINT",
        "revoke_grace_s": "BIGINT",
        "clock_skew_s": "BIGINT",
        "risk_builtin": "BOOLEAN",
    }


def test_install_tables_are_temporary(tmp_path: Path) -> None:
    db = tmp_path / "store.duckdb"
    with duckdb.connect(str(db)) as con:
        install(load_policy(None), con)
    with duckdb.connect(str(db)) as con:
        assert con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE 'policy_%'"
        ).fetchone() == (0,)


def test_install_risk_regex_classifies_actions_in_sql(write) -> None:
    """The implicit tier rule as the correlation SQL will apply it, checked against tier_for."""
    policy = load_policy(write('[risk]\nhigh = ["iam:*"]\ncritical = ["iam:CreateAccessKey"]\n'))
    con = duckdb.connect()
    install(policy, con)
    sql = """
        SELECT coalesce(max(r.tier_rank), CASE WHEN ? THEN 0 ELSE 1 END)
        FROM (SELECT ? AS action) a LEFT JOIN policy_risk r ON regexp_full_match(a.action, r.regex)
    """
    for action, read_only in [
        ("iam:CreateAccessKey", False),
        ("iam:ListUsers", True),
        ("s3:GetObject", True),
    ]:
        (rank,) = con.execute(sql, [read_only, action]).fetchone()
        assert ("low", "medium", "high", "critical")[rank] == policy.tier_for(action, read_only)


# --------------------------------------------------------------------------------------------------
# [sources.envoy]: json_format key names
# --------------------------------------------------------------------------------------------------


def test_sources_envoy_fields_map_to_json_keys(write) -> None:
    path = write("""\
        [sources.envoy]
        fields = { request_id = ["req_id", "x_request_id"], traceparent = "trace_parent", jwt_sub = "$.jwt.sub" }
        """)
    policy = load_policy(path)
    assert policy.sources == {
        "envoy": {
            "fields": {
                "request_id": ("req_id", "x_request_id"),
                "traceparent": ("trace_parent",),  # a single key becomes a one-key list
                "jwt_sub": ("$.jwt.sub",),
            }
        }
    }
    # How files are read at ingest does not make correlation stale.
    assert policy.fingerprint == Policy().fingerprint
    assert load_policy(None).sources == {}


def test_sources_envoy_fields_as_a_sub_table(write) -> None:
    path = write("""\
        [sources.envoy.fields]
        start_time = "ts"
        response_code = ["status", "code"]
        """)
    assert load_policy(path).sources["envoy"]["fields"] == {
        "start_time": ("ts",),
        "response_code": ("status", "code"),
    }


SOURCE_ERRORS = [
    pytest.param(
        '[sources.envoy]\nfields = { reqest_id = "req_id" }\n',
        "nhiaudit.toml:2: unknown Envoy field 'reqest_id' in sources.envoy.fields. Did you mean 'request_id'?",
        id="unknown-field",
    ),
    pytest.param(
        '[sources.envoy]\nfields = { colour = "c" }\n',
        "nhiaudit.toml:2: unknown Envoy field 'colour' in sources.envoy.fields. Fields: start_time, method, "
        "path, protocol, response_code, response_flags, request_id, traceparent, jwt_id, peer_uri_san, jwt_sub, "
        "client_id, authority, upstream_host, user_agent, remote_address, x_forwarded_for, bytes_received, "
        "bytes_sent, duration.",
        id="unknown-field-no-suggestion",
    ),
    pytest.param(
        '[sources.envvoy]\nfields = { request_id = "req_id" }\n',
        "nhiaudit.toml:1: unknown source 'envvoy' in [sources]. Did you mean 'envoy'?",
        id="unknown-source",
    ),
    pytest.param(
        "\n[sources.kong]\nfields = {}\n",
        "nhiaudit.toml:2: source 'kong' has no options, so [sources.kong] means nothing. "
        "Remove it (sources with options: envoy).",
        id="source-without-options",
    ),
    pytest.param(
        '[sources.envoy]\nfeilds = { request_id = "req_id" }\n',
        "nhiaudit.toml:2: unknown key 'feilds' in [sources.envoy]. Did you mean 'fields'?",
        id="unknown-key",
    ),
    pytest.param(
        "[sources.envoy]\nfields = { request_id = 7 }\n",
        "nhiaudit.toml:2: sources.envoy.fields.request_id must be a JSON key or an array of keys, not an "
        'integer. Write request_id = "key" or request_id = ["key", "other_key"].',
        id="field-not-a-string",
    ),
    pytest.param(
        '[sources.envoy]\nfields = { request_id = ["req_id", 7] }\n',
        "nhiaudit.toml:2: sources.envoy.fields.request_id[1] must be a string, not an integer. Quote it.",
        id="field-list-item-not-a-string",
    ),
    pytest.param(
        "[sources.envoy]\nfields = { request_id = [] }\n",
        "nhiaudit.toml:2: sources.envoy.fields.request_id is an empty array. Name one JSON key or more, or "
        "leave request_id out to keep the default (x_request_id, request_id).",
        id="field-empty-list",
    ),
    pytest.param(
        '[sources.envoy]\nfields = { jwt_sub = "$..sub" }\n',
        "nhiaudit.toml:2: sources.envoy.fields.jwt_sub: the key '$..sub' is not a JSON path nhiaudit reads. "
        'Write $.a.b, $."a key" or $.a[0] (no wildcards).',
        id="bad-json-path",
    ),
    pytest.param(
        '[sources.envoy]\nfields = ["request_id"]\n',
        "nhiaudit.toml:2: sources.envoy.fields must be a table, not an array. "
        'Write fields = { request_id = ["req_id", "x_request_id"] }.',
        id="fields-not-a-table",
    ),
    pytest.param(
        '[sources]\nenvoy = "custom"\n',
        "nhiaudit.toml:2: sources.envoy must be a table, not a string. Write it as [sources.envoy].",
        id="source-not-a-table",
    ),
    pytest.param(
        '[envoy]\nfields = { request_id = "req_id" }\n',
        "nhiaudit.toml:1: unknown section [envoy]. Source options go under [sources.envoy].",
        id="source-as-a-section",
    ),
    pytest.param(
        'fields = "req_id"\n',
        "nhiaudit.toml:1: unknown key 'fields' at the top level. Put it under [sources.envoy].",
        id="fields-at-top-level",
    ),
]


@pytest.mark.parametrize(("text", "message"), SOURCE_ERRORS)
def test_sources_error_message(write, text: str, message: str) -> None:
    assert load_error(write(text)) == message


# --------------------------------------------------------------------------------------------------
# The schema: template, docs, defaults
# --------------------------------------------------------------------------------------------------

COMMENTED_OUT = re.compile(r"^# (\[|[a-z_]+ = )", re.MULTILINE)  # an example line, not a doc comment


def test_template_is_the_defaults(write) -> None:
    path = write(template())
    assert load_policy(path) == Policy(path=path)


def test_template_examples_load_when_uncommented(write) -> None:
    policy = load_policy(write(COMMENTED_OUT.sub(r"\1", template())), today=TODAY)
    assert policy.agents == (
        Agent(id="report-bot", actions=("s3:GetObject", "s3:PutObject*"), resources=("arn:aws:s3:::reports-*",)),
    )
    assert [w.rule for w in policy.waivers] == ["long-lived-credential"]
    assert policy.sources["envoy"]["fields"]["request_id"] == ("req_id", "x_request_id")


def test_template_documents_every_key() -> None:
    text = template()
    for key in KEYS:
        assert re.search(rf"^(# )?{key.name} = ", text, re.MULTILINE), key


def test_docs_list_every_key_as_the_schema_renders_them(update_golden: bool) -> None:
    """docs/policy.md's key tables are reference(); pytest --update-golden rewrites them."""
    start, end = "<!-- keys: generated -->\n", "<!-- keys: end -->\n"
    head, rest = DOCS.read_text(encoding="utf-8").split(start)
    committed, tail = rest.split(end)
    for key in KEYS:
        assert f"| `{key.name}` |" in reference(), key
    if update_golden:
        DOCS.write_text(head + start + reference() + end + tail, encoding="utf-8")
    else:
        assert committed == reference(), "docs/policy.md is stale: run pytest --update-golden and review the diff"


def test_every_dataclass_attribute_is_a_key() -> None:
    """The section dataclasses take their defaults from KEYS, one attribute per row in row order
    (else import fails); the waiver rows are model.Waiver's fields but the computed ``expired``."""
    waiver_fields = [f.name for f in dataclasses.fields(Waiver)]
    assert [k.field for k in KEYS if k.section == "waivers"] + ["expired"] == waiver_fields
    with pytest.raises(TypeError, match=r"KEYS\[approval\]"):

        @dataclasses.dataclass(frozen=True)
        @_defaults_from_keys("approval")
        class Approval:
            required_from: str  # max_age_s left out


def test_defaults_are_written_as_in_toml() -> None:
    assert Policy().approval.max_age_s == parse_duration("24h")
    assert policy_schema.default(next(k for k in KEYS if k.name == "clock_skew")) == 120


def test_reading_a_policy_imports_no_source_unless_it_has_sources(tmp_path: Path) -> None:
    """``trace`` reads the policy on start-up: only a [sources.*] section may import every source."""
    plain, with_sources = tmp_path / "plain.toml", tmp_path / "sources.toml"
    plain.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    with_sources.write_text('[sources.envoy]\nfields = { request_id = "rid" }\n', encoding="utf-8")
    script = (
        "import sys; from pathlib import Path; from nhiaudit.policy import load_policy; "
        "load_policy(Path(sys.argv[1])); print('nhiaudit.sources' in sys.modules)"
    )
    for path, imported in ((plain, "False"), (with_sources, "True")):
        run = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
        assert run.stdout.strip() == imported


def test_builtin_risk_catalogue_and_its_override(write) -> None:
    """The catalogue (55_risk_catalogue.sql) tiers well-known actions; a [risk] glob that matches an
    action decides it instead (lowering too); builtin = false turns the catalogue off."""
    default = load_policy(None)
    assert default.risk.builtin is True
    assert default.tier_for("cloudtrail:StopLogging", read_only=False) == "critical"
    assert default.tier_for("iam:google.iam.admin.v1.CreateServiceAccountKey", read_only=False) == "critical"
    assert default.tier_for("k8s:create:clusterrolebindings", read_only=False) == "critical"
    assert default.tier_for("iam:AttachUserPolicy", read_only=False) == "high"
    assert default.tier_for("s3:PutObject", read_only=False) == "medium"  # not listed
    lowered = load_policy(write('[risk]\nmedium = ["cloudtrail:*"]\n'))
    assert lowered.tier_for("cloudtrail:StopLogging", read_only=False) == "medium"
    assert lowered.tier_for("iam:CreateAccessKey", read_only=False) == "critical"  # catalogue still applies
    off = load_policy(write("[risk]\nbuiltin = false\n"))
    assert off.tier_for("cloudtrail:StopLogging", read_only=False) == "medium"
    with pytest.raises(PolicyError, match="builtin must be true or false"):
        load_policy(write('[risk]\nbuiltin = "yes"\n'))


def test_correlation_tiers_actions_like_tier_for(tmp_path: Path) -> None:
    """60_actions.sql applies the catalogue and the override exactly as Policy.tier_for does."""
    from helpers import build_world

    calls = [
        {"eventVersion": "1.08", "eventID": f"e-{n}", "eventTime": f"2026-11-02T09:0{n}:00Z",
         "eventSource": f"{action.split(':')[0]}.amazonaws.com", "eventName": action.split(":")[1],
         "readOnly": False, "awsRegion": "eu-west-1", "recipientAccountId": "111122223333",
         "userIdentity": {"type": "AssumedRole", "arn": "arn:aws:sts::111122223333:assumed-role/bot/t",
                          "accessKeyId": "ASIAEXAMPLE000000001"}}
        for n, action in enumerate(("cloudtrail:StopLogging", "iam:CreateAccessKey", "s3:PutObject"))
    ]
    for n, text in enumerate(("", '[risk]\nmedium = ["cloudtrail:*"]\n', "[risk]\nbuiltin = false\n")):
        folder = tmp_path / str(n)
        folder.mkdir()
        con, policy = build_world(folder, {"ct.ndjson": calls}, text)
        tiers = dict(con.execute("SELECT action, tier FROM chains").fetchall())
        assert tiers == {a: policy.tier_for(a, read_only=False) for a in tiers}, text
        assert len(tiers) == 3


def test_init_writes_a_starter_policy_from_the_store(tmp_path: Path) -> None:
    """nhiaudit init: likely humans (a console sign-in, an approver) and brokers (issued to three
    holders) listed with why; a hostile principal is shown escaped, never listed; the file loads."""
    from helpers import invoke, write_lines

    from nhiaudit import ingest, store

    def assume(n: int, caller: str) -> dict:
        return {"eventVersion": "1.08", "eventID": f"a-{n}", "eventTime": f"2026-11-02T09:0{n}:00Z",
                "eventSource": "sts.amazonaws.com", "eventName": "AssumeRole", "recipientAccountId": "1",
                "userIdentity": {"type": "IAMUser", "arn": caller, "accessKeyId": "AKIABROKER0000000001"},
                "requestParameters": {"roleArn": f"arn:aws:iam::1:role/r{n}"},
                "responseElements": {"credentials": {"accessKeyId": f"ASIAR{n}00000000000001"},
                                     "assumedRoleUser": {"arn": f"arn:aws:sts::1:assumed-role/r{n}/s"}}}

    login = {"eventVersion": "1.05", "eventID": "l-1", "eventTime": "2026-11-02T08:00:00Z",
             "eventSource": "signin.amazonaws.com", "eventName": "ConsoleLogin", "recipientAccountId": "1",
             "userIdentity": {"type": "IAMUser", "arn": "arn:aws:iam::1:user/alice"},
             "responseElements": {"ConsoleLogin": "Success"}}
    hostile = {**login, "eventID": "l-2", "userIdentity": {"type": "IAMUser", "arn": "evil*\nhumans = [\"*\"]"}}
    broker = "arn:aws:iam::1:user/orchestrator"
    db = tmp_path / "store.duckdb"
    with store.connect(db) as con:
        records = [login, hostile, *(assume(n, broker) for n in (1, 2, 3))]
        ingest.ingest(con, [write_lines(tmp_path / "ct.ndjson", records)])
    out = tmp_path / "nhiaudit.toml"
    result = invoke(["init", "--db", str(db), "--output", str(out)])
    assert result.exit_code == 0, result.output
    policy = load_policy(out)
    assert policy.identities.humans == ("arn:aws:iam::1:user/alice",)
    assert policy.identities.brokers == (broker,)
    text = out.read_text(encoding="utf-8")
    assert "# issued credentials to 3 holders" in text
    assert '# not listed (holds a glob or control character): evil*\\nhumans = [\\"*\\"]' in text
    again = invoke(["init", "--db", str(db), "--output", str(out)])
    assert again.exit_code == 2 and "already exists. Pass --force" in again.output
    assert invoke(["init", "--db", str(tmp_path / "none.duckdb"), "-o", str(tmp_path / "x.toml")]).exit_code == 2


def test_init_counts_an_okta_sso_to_a_saml_app_as_a_person_signing_in(tmp_path: Path) -> None:
    """An Okta SSO to a SAML app is stored as the issuance of the assertion (the parent of an AWS
    AssumeRoleWithSAML); init still lists its user as a likely human."""
    from helpers import SAMPLES, invoke, sample

    from nhiaudit import ingest, store

    first = sample(SAMPLES / "okta" / "panther__okta_sso_to_aws.tests.ndjson").read_text(encoding="utf-8")
    evidence = tmp_path / "okta.ndjson"
    evidence.write_text(first.splitlines()[0] + "\n", encoding="utf-8")
    db = tmp_path / "store.duckdb"
    with store.connect(db) as con:
        ingest.ingest(con, [evidence])
        assert con.execute("SELECT category FROM events").fetchall() == [("credential_issue",)]
    out = tmp_path / "nhiaudit.toml"
    assert invoke(["init", "--db", str(db), "--output", str(out)]).exit_code == 0
    assert load_policy(out).identities.humans == ("aardvark",)
