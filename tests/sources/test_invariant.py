"""Invariant agent traces: every sample loads cleanly, each tool call is an event with its arguments
(parsed when given as a JSON string) and result, malformed trace lines are rejected with a reason."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import duckdb
import helpers
import pytest
from helpers import SAMPLES, load, rows, sample, sample_files, write_lines

from nhiaudit import ingest
from nhiaudit.sources import invariant

GENAI = SAMPLES / "genai_otel"
INVARIANT_FILES = sample_files(GENAI, "invariant-explorer__*.jsonl")


def event(con: duckdb.DuckDBPyConnection, event_id: str) -> dict[str, Any]:
    """An invariant event, its raw trace line parsed too."""
    found = helpers.event(con, "invariant", event_id)
    found["raw"] = json.loads(found["raw"])
    return found


def expected_events(path: Path) -> int:
    """Counted in Python, independently of the SQL: one event per trace line and per tool call."""
    count = 0
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        if isinstance(doc, dict) and set(doc) == {"metadata"}:
            continue  # dataset metadata: consumed
        messages = doc if isinstance(doc, list) else doc["messages"]
        count += 1 + sum(len(m.get("tool_calls") or []) for m in messages)
    return count


# --- the shared samples -------------------------------------------------------------------------


@pytest.mark.parametrize("path", INVARIANT_FILES, ids=[p.name for p in INVARIANT_FILES])
def test_every_invariant_sample_loads_without_rejections(store: duckdb.DuckDBPyConnection, path: Path) -> None:
    assert invariant.detect(path)
    assert ingest.detect(path) == "invariant"
    result = load(store, "invariant", path)
    assert result.rejected == 0, rows(store, "SELECT reason FROM rejected")
    assert result.read == expected_events(path) == result.loaded + result.duplicates
    assert result.duplicates == 0
    (untimed,) = store.execute("SELECT count(*) FROM events WHERE occurred_at IS NOT NULL").fetchone()
    assert untimed == 0  # the format has no timestamps


def test_string_arguments_are_parsed(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "invariant", sample(GENAI / "invariant-explorer__trace_with_json_parseable_tool_call_arguments.jsonl"))
    call = event(store, "call_wrrKpr7XnsTaNcHp3nssmJzH")
    assert call["category"] == "tool_call" and call["actor_type"] == "agent" and call["actor_id"] is None
    assert call["occurred_at"] is None and call["line"] == 1 and call["record_index"] == 0
    assert call["details"]["tool_name"] == "get_capital"
    assert call["details"]["tool_call_id"] == "call_wrrKpr7XnsTaNcHp3nssmJzH"
    assert call["details"]["arguments"] == {"country_name": "France"}  # a JSON string in the file
    assert call["raw"]["function"]["arguments"] == '{"country_name":"France"}'  # raw stays as logged
    assert call["details"]["message_index"] == 2 and "result_excerpt" not in call["details"]
    trace = event(store, "trace:1")
    assert trace["category"] == "other" and trace["details"]["message_count"] == 3
    assert trace["details"]["tool_call_count"] == 1


def test_object_and_string_arguments_and_results(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "invariant", sample(GENAI / "invariant-explorer__sample_data.jsonl"))
    # "call_1" is the id in traces 1 and 2: it names no single event, so both get positional ids.
    weather, nobel = event(store, "1:1:0"), event(store, "2:1:0")
    assert weather["details"]["tool_call_id"] == nobel["details"]["tool_call_id"] == "call_1"
    assert weather["details"]["tool_name"] == "get_current_weather"
    assert weather["details"]["arguments"] == {"location": "Zurich"}  # an object in the file
    assert weather["details"]["result_excerpt"].startswith('{"temperature": "8°C", "condition": "cloudy"')
    assert nobel["details"]["tool_name"] == "get_nobel_prize_winner_by_criteria"
    assert nobel["details"]["arguments"] == {"category": "different", "count": 2}  # a string in the file
    assert nobel["record_index"] == 1 and nobel["line"] == 2
    assert event(store, "call_3")["details"]["result_excerpt"] == "[1903, 1911]"
    # Trace 3 has no ids: the tool message right after the screenshot call is its result.
    visit, shot = event(store, "3:1:0"), event(store, "3:2:0")
    assert visit["details"]["arguments"] == {"url": "https://invariantlabs.ai"}
    assert "result_excerpt" not in visit["details"] and "tool_call_id" not in visit["details"]
    assert shot["details"]["arguments"] == {}
    excerpt = shot["details"]["result_excerpt"]
    assert excerpt.startswith("local_base64_img: iVBORw0KGgo") and len(excerpt) == invariant.RESULT_EXCERPT


def test_metadata_lines_and_trace_metadata(store: duckdb.DuckDBPyConnection) -> None:
    result = load(store, "invariant", sample(GENAI / "invariant-explorer__trace_for_analysis.jsonl"))
    assert result.read == 3  # the dataset metadata line is consumed, not an event
    assert not rows(store, "SELECT event_id FROM events WHERE line = 1")
    send = event(store, "call_Kmi0ur2StXldAlLjVSisNikR")
    assert send["details"]["tool_name"] == "send_money"
    assert send["details"]["arguments"] == {
        "amount": 0.01,
        "date": "2022-03-08",
        "recipient": "US133000000121212121212",
        "subject": "iPhone 3GS",
    }
    assert send["details"]["result_excerpt"] == "{'message': 'Transaction to US133000000121212121212 for 0.01 sent.'}"
    assert send["details"]["metadata"]["suite_name"] == "banking"
    assert send["details"]["metadata"]["user_task_id"] == "user_task_11"
    assert send["details"]["file_metadata"]["created_on"] == "2025-05-27 14:24:12"
    assert send["actor_id"] is None  # the metadata names no agent or user
    trace = event(store, "trace:2")
    assert trace["details"]["message_count"] == 7 and trace["details"]["tool_call_count"] == 2


def test_webarena_calls_without_ids(store: duckdb.DuckDBPyConnection) -> None:
    load(store, "invariant", sample(GENAI / "invariant-explorer__webarena.jsonl"))
    click = event(store, "3:3:0")
    assert click["details"]["tool_name"] == "click"
    assert click["details"]["arguments"] == {"element_id": "120", "extra_arg": "link '\\ue60a REPORTS'"}
    assert click["details"]["result_excerpt"].startswith("Tab 0 (current): Dashboard / Magento Admin")
    assert click["details"]["file_metadata"] == {"description": "Traces collected from WebArena Step agent"}
    # The second "stop" of trace 2 is the same call as the first, but not the same event.
    first, second = event(store, "2:3:0"), event(store, "2:6:0")
    assert first["details"]["arguments"] == second["details"]["arguments"] == {"answer": "Sprite Yoga Strap 6 foot"}
    assert "result_excerpt" in first["details"] and "result_excerpt" not in second["details"]


# --- written test input -------------------------------------------------------------------------


def call(name: object, arguments: object, call_id: object = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        out["id"] = call_id
    return out


def ask(*calls: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"role": "user", "content": "go"}, {"role": "assistant", "content": None, "tool_calls": list(calls)}]


def test_actor_from_metadata_and_leading_metadata_element(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "agents.jsonl",
        [
            {"metadata": {"user": "alice"}},
            {"messages": ask(call("read_file", {"path": "/etc/hosts", "mode": None}, "c-1")),
             "metadata": {"agent_name": "report-bot"}},
            [{"metadata": {"run": 7}}, *ask(call("ls", "not json {", "c-2"))],
        ],
    )  # fmt: skip
    result = load(store, "invariant", path)
    assert (result.read, result.loaded, result.rejected) == (4, 4, 0)
    first = event(store, "c-1")
    assert first["actor_id"] == "report-bot" and first["details"]["agent_id"] == "report-bot"
    assert first["details"]["arguments"] == {"path": "/etc/hosts", "mode": None}  # a null argument is kept
    second = event(store, "c-2")
    assert second["actor_id"] == "alice" and "agent_id" not in second["details"]  # the dataset's user
    assert second["details"]["arguments"] == "not json {"  # an unparseable string stays a string
    assert second["details"]["metadata"] == {"run": 7} and second["details"]["message_index"] == 2
    assert event(store, "trace:3")["details"]["message_count"] == 2  # the metadata element is no message


def test_bad_lines_are_rejected_with_a_reason(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "bad.jsonl",
        [
            ask(call("get_weather", {"city": "Bern"}, "ok-1")),
            '[{"role": "user", "content": "cut off',
            ask(call(42, {}, "bad-1")),
            ask(call("transfer", [1, 2], "bad-2")),
            {"messages": "hello"},
            ask(call("get_weather", '{"city": "Basel"}', "ok-2")),
            [{"role": "user", "content": "hi"}, "not a message"],
            '"just a string"',
            {"index": 3},
            {"metadata": "v2"},
        ],
    )
    result = load(store, "invariant", path)
    reasons = {r["line"]: r["reason"] for r in rows(store, "SELECT line, reason FROM rejected")}
    assert reasons == {
        2: "line 2: not valid JSON (truncated or malformed trace)",
        3: "messages[1].tool_calls[0].function.name is a JSON number, expected a string",
        4: "messages[1].tool_calls[0].function.arguments is a JSON array, expected an object or a JSON string",
        5: "messages is a JSON string, expected an array",
        7: "messages[1] is a JSON string, expected a message object",
        8: 'line 8 is a JSON string, expected a trace: a message array or an object with "messages"',
        9: 'object has no "messages" (keys: index): not an Invariant trace',
        10: "metadata is a JSON string, expected an object",
    }
    assert {e["event_id"] for e in rows(store, "SELECT event_id FROM events")} == {"ok-1", "trace:1", "ok-2", "trace:6"}
    assert event(store, "ok-2")["details"]["arguments"] == {"city": "Basel"}
    assert (result.loaded, result.rejected, result.duplicates) == (4, 8, 0)
    assert result.read == result.loaded + result.rejected + result.duplicates


def test_reingest_is_a_noop_and_the_same_trace_is_stored_once(store: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    trace = ask(call("get_weather", {"city": "Bern"}, "w-1"), call("get_time", {}, "w-2"))
    path = write_lines(tmp_path / "a.jsonl", [trace])
    assert load(store, "invariant", path).loaded == 3
    assert ingest.ingest(store, [path]).files[0].already_ingested
    # The same trace in another file (gzip, after a metadata line, without spaces): all duplicates.
    other = tmp_path / "b.jsonl.gz"
    compact = json.dumps(trace, separators=(",", ":"))
    other.write_bytes(gzip.compress((json.dumps({"metadata": {}}) + "\n" + compact + "\n").encode()))
    again = load(store, "invariant", other)
    assert (again.read, again.loaded, again.duplicates, again.rejected) == (3, 0, 3, 0)
    (count,) = store.execute("SELECT count(*) FROM events").fetchone()
    assert count == 3


# --- detection ----------------------------------------------------------------------------------


def test_detect_reads_only_the_head(tmp_path: Path) -> None:
    long_content = "x" * 20000  # the first trace does not fit in the head
    big = write_lines(tmp_path / "big.jsonl", [[{"role": "user", "content": long_content}]])
    assert invariant.detect(big)
    wrapped = write_lines(
        tmp_path / "wrapped.jsonl",
        [
            {"metadata": {}},
            {"messages": [{"role": "system", "content": long_content}]},
        ],
    )
    assert invariant.detect(wrapped)
    assert not invariant.detect(write_lines(tmp_path / "meta-only.jsonl", [{"metadata": {"a": 1}}]))
    # A "role" that is not a chat role, an array of records, objects with other keys: not traces.
    iam = write_lines(tmp_path / "iam.json", [[{"role": "arn:aws:iam::1:role/x", "content": "y"}]])
    assert not invariant.detect(iam)
    assert not invariant.detect(write_lines(tmp_path / "records.json", [[{"eventVersion": "1.08"}]]))
    assert not invariant.detect(write_lines(tmp_path / "chat.jsonl", [{"messages": "not a list"}]))
    assert not invariant.detect(write_lines(tmp_path / "empty.jsonl", [[]]))
