"""GitHub Actions: the shared webhook and audit-log samples load cleanly, spot checks against values read
in them; decisions written in the documented webhook and audit-log shapes; bad records; detection."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest
from helpers import SAMPLES, event, load, other_samples, rows, sample, sample_files, write_lines

from nhiaudit import ingest
from nhiaudit.sources import github_actions

FOLDER = SAMPLES / "github"
# The one file of the folder that is CloudTrail's: the OIDC issuance the cloudtrail source reads.
CLOUDTRAIL = FOLDER / "cloud-snitch__assume-role-with-web-identity.github-actions.ndjson"
MINE = [p for p in sample_files(FOLDER) if p != CLOUDTRAIL]


def run(run_id: int = 7001, attempt: int = 1, **extra: Any) -> dict[str, Any]:
    body = {
        "id": run_id,
        "run_attempt": attempt,
        "path": ".github/workflows/deploy.yml",
        "display_title": "Deploy reports",
        "event": "workflow_dispatch",
        "head_branch": "main",
        "status": "in_progress",
        "conclusion": None,
        "created_at": "2026-11-02T08:59:00Z",
        "run_started_at": "2026-11-02T09:00:00Z",
        "updated_at": "2026-11-02T09:00:00Z",
        "actor": {"login": "bob"},
        "triggering_actor": {"login": "bob"},
    }
    body.update(extra)
    return body


def review(action: str, **extra: Any) -> dict[str, Any]:
    """A deployment_review payload (docs: webhook events, deployment_review; approver on a decision)."""
    body: dict[str, Any] = {
        "action": action,
        "environment": "prod",
        "since": "2026-11-02T09:01:00Z",
        "workflow_run": run(),
        "workflow_job_run": {"id": 8001, "name": "deploy", "status": "waiting", "environment": "prod"},
        "reviewers": [{"type": "User", "reviewer": {"login": "alice", "id": 1}}],
        "repository": {"full_name": "acme/reports"},
        "organization": {"login": "acme"},
        "sender": {"login": "alice"},
    }
    if action in ("approved", "rejected"):
        body.update(approver={"login": "alice"}, comment="ship it", workflow_job_runs=[{"id": 8001}])
        del body["workflow_job_run"]
    body.update(extra)
    return body


def audit(action: str, created_at: int = 1793610120000, **extra: Any) -> dict[str, Any]:
    body = {
        "action": action,
        "actor": "alice",
        "actor_is_bot": False,
        "org": "acme",
        "repo": "acme/reports",
        "created_at": created_at,
        "@timestamp": created_at,
        "_document_id": f"doc-{action}",
    }
    body.update(extra)
    return body


@pytest.mark.parametrize("path", MINE, ids=lambda p: p.name)
def test_every_sample_loads_with_zero_rejected(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    result = load(store, "github_actions", sample(path))
    assert result.rejected == 0
    assert result.read == result.loaded > 0


def test_detection_claims_the_folder_and_nothing_else() -> None:
    sample(FOLDER)
    assert len(MINE) == 9
    assert all(github_actions.detect(p) for p in MINE)
    assert not github_actions.detect(CLOUDTRAIL)
    assert [p for p in other_samples(*MINE) if github_actions.detect(p)] == []


def test_sample_run_review_and_reviewer(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "github_actions", sample(FOLDER / "octokit__deployment_review.requested.payload.json"))
    task = event(store, "github_actions", "deployment_review:5453085689:1:requested:run")
    assert (task["category"], task["task_id"]) == ("task", "github-run:5453085689:1")
    assert task["occurred_at"] == datetime(2023, 7, 4, 9, 28, 10, tzinfo=timezone.utc)
    assert task["details"]["agent_id"] == "terraform-test-github/sample-app:.github/workflows/pr.yaml"
    assert task["details"]["requested_by"] == "ilmax"
    assert task["details"]["intent"] == "Build pull_request 3 by @ilmax"
    request = event(store, "github_actions", "deployment_review:5453085689:1:TST:requested")
    assert (request["category"], request["actor_id"]) == ("other", "ilmax")
    assert request["occurred_at"] == datetime(2023, 7, 4, 9, 28, 15, tzinfo=timezone.utc)
    assert request["details"]["job_run_ids"] == [9921448362]
    (grant,) = rows(store, "SELECT * FROM events WHERE category = 'grant'")
    assert json.loads(grant["details"]) == {
        "approver": "team:terraform-test-github/admins",
        "role": "github:terraform-test-github/sample-app:environment:TST:reviewer",
        "environment": "TST",
        "repository": "terraform-test-github/sample-app",
        "reviewer_type": "Team",
    }


def test_sample_jobs_and_runs(store: duckdb.DuckDBPyConnection) -> None:
    for name in (
        "workflow_job.queued.with-deployment",
        "workflow_job.completed.success.with-organization",
        "workflow_run.completed",
    ):
        load(store, "github_actions", sample(FOLDER / f"octokit__{name}.payload.json"))
    queued = event(store, "github_actions", "workflow_job:12877621891:1:queued")
    assert queued["task_id"] == "github-run:4747967848:1"
    assert (queued["details"]["environment"], queued["details"]["deployment_creator"]) == ("Test", "lineville")
    done = event(store, "github_actions", "workflow_job:289782451:1:completed")
    assert done["ended_at"] == datetime(2021, 8, 5, 10, 38, 16, tzinfo=timezone.utc)
    assert (done["task_id"], done["account"]) == ("github-run:2202229078:1", "Octocoders")
    completed = event(store, "github_actions", "workflow_run:289782451:1:completed")
    assert completed["details"]["status"] == "success"
    assert completed["actor_id"] == "octo-org/octo-repo:.github/workflows/test.yml"


def test_sample_audit_log(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "github_actions", sample(FOLDER / "elastic__github-audit_test-organisation-audit-json.subset.log"))
    load(store, "github_actions", sample(FOLDER / "elastic__github-audit_test-api-request-events.log"))
    (deleted,) = rows(store, "SELECT * FROM events WHERE task_id = 'github-run:601065160:1'")
    assert (deleted["category"], deleted["action"]) == ("other", "github:workflows.delete_workflow_run")
    assert deleted["occurred_at"] == datetime.fromtimestamp(1614296047.285, tz=timezone.utc)
    api = event(store, "github_actions", "Zt3XoecTsz6kAS-87bAEzQ")
    assert (api["actor_id"], api["actor_type"], api["user_agent"]) == ("user_actor", "human", "curl/7.79.1")
    assert api["details"]["token_id"] == 555555
    clone = event(store, "github_actions", "vZYwluB4DhnHDp0RMY-eWA==")
    assert (clone["src_ip"], clone["resource"]) == ("81.2.69.144", "onyxsectec/25")
    (bot,) = rows(store, "SELECT actor_type FROM events WHERE actor_id = 'github-actions[bot]'")
    assert bot["actor_type"] == "service"
    assert "hashed_token" not in api["details"]  # kept in raw only


def test_decisions_from_webhooks_and_the_audit_log(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "hooks.ndjson", [review("approved"), review("rejected", approver={"login": "carol"})])
    load(store, "github_actions", path)
    approved = event(store, "github_actions", "deployment_review:7001:1:prod:approved:alice")
    assert (approved["category"], approved["task_id"], approved["actor_id"]) == (
        "approval",
        "github-run:7001:1",
        "alice",
    )
    assert approved["occurred_at"] is None  # the payload has no decision time
    assert approved["details"]["decision"] == "approved"
    assert approved["details"]["decision_time"].startswith("not in the evidence")
    assert approved["details"]["justification"] == "ship it"
    rejected = event(store, "github_actions", "deployment_review:7001:1:prod:rejected:carol")
    assert rejected["details"]["decision"] == "denied"
    # an audit-log decision has its time; REST export pages are JSON arrays
    page = tmp_path / "audit-page.json"
    page.write_text(
        json.dumps(
            [
                audit("workflows.approve_workflow_job", workflow_run_id=7001, run_attempt=2, environment_name="prod"),
                audit("workflows.reject_workflow_job", created_at=1793610180000, data={"workflow_run_id": 7002}),
                audit(
                    "workflows.created_workflow_run",
                    data={"workflow_run_id": 7003, "started_at": "2026-11-02T09:00:00.000Z"},
                ),
            ]
        ),
        encoding="utf-8",
    )
    load(store, "github_actions", page)
    ok = event(store, "github_actions", "doc-workflows.approve_workflow_job")
    assert (ok["category"], ok["task_id"]) == ("approval", "github-run:7001:2")
    assert ok["occurred_at"] == datetime(2026, 11, 2, 9, 2, tzinfo=timezone.utc)
    assert (ok["details"]["approver"], ok["details"]["decision"], ok["details"]["environment"]) == (
        "alice",
        "approved",
        "prod",
    )
    no = event(store, "github_actions", "doc-workflows.reject_workflow_job")
    assert (no["details"]["decision"], no["task_id"]) == ("denied", "github-run:7002:1")
    created = event(store, "github_actions", "doc-workflows.created_workflow_run")
    assert (created["category"], created["task_id"]) == ("task", "github-run:7003:1")


def test_a_pretty_printed_rest_export_page_is_detected(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    """`gh api /orgs/ORG/audit-log` prints the page as an indented JSON array."""
    page = tmp_path / "audit-log-page-1.json"
    page.write_text(json.dumps([audit("workflows.approve_workflow_job", workflow_run_id=7001)], indent=2), "utf-8")
    assert github_actions.detect(page)
    assert load(store, "github_actions", page).loaded == 1
    other = tmp_path / "other.json"
    other.write_text(json.dumps([{"action": "repo.create", "note": "no actor, no time"}], indent=2), "utf-8")
    assert not github_actions.detect(other)


def test_bad_records_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.ndjson",
        [
            {"action": "completed", "workflow_run": run(run_id="7001")},
            {"action": "completed", "workflow_job": {"id": 1, "run_id": 2, "started_at": "yesterday"}},
            review("approved", approver=None),
            {"action": "opened", "pull_request": {"number": 1}, "workflow_run": None},
            "{not json",
            {"action": "requested", "workflow_run": run(), "repository": {"full_name": "acme/reports"}},
            audit("workflows.approve_workflow_job", created_at=10**20, **{"@timestamp": None}),
        ],
    )
    result = ingest.ingest(store, [path])
    assert result.files[0].source == "github_actions"
    reasons = [r for (r,) in store.execute("SELECT reason FROM rejected ORDER BY line").fetchall()]
    assert reasons == [
        "workflow_run.id is a JSON string, expected a number",
        "workflow_job.started_at 'yesterday' is not an RFC 3339 time",
        "deployment_review approved has no approver.login",
        "not a GitHub Actions webhook payload (workflow_run, workflow_job, deployment_review, "
        "deployment_protection_rule, workflow_dispatch) or an audit-log entry",
        "line 5: not valid JSON (truncated or malformed record)",
        "audit-log entry has no @timestamp or created_at in epoch milliseconds (or RFC 3339)",
    ]
    assert (result.files[0].loaded, result.files[0].rejected) == (1, 6)


def test_reingest_is_a_noop_and_a_repeated_payload_a_duplicate(
    store: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = write_lines(tmp_path / "hooks.ndjson", [review("requested"), review("requested")])
    first = load(store, "github_actions", path)
    assert (first.read, first.loaded, first.duplicates) == (6, 3, 3)  # review, run, one reviewer grant
    again = ingest.ingest(store, [path]).files[0]
    assert again.already_ingested
