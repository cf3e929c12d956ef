"""Invariant Labs agent traces: JSONL, one trace a line (FORMATS §7 "Invariant trace format").

A line is a trace, either a JSON array of OpenAI-style messages or ``{"messages": [...],
"metadata": {...}}``; a ``{"metadata": {...}}`` line holds dataset metadata for the traces after
it (Invariant Explorer puts it first), and an array may open with a ``{"metadata": {...}}`` element
for its own trace. Each trace line is one ``other`` event and each ``tool_calls[]`` entry one
``tool_call`` event; a tool call's result (the ``role: tool`` message answering it) is kept as an
excerpt. The format has no timestamps and no identities: ``occurred_at`` is always NULL, and the
actor is only known when the metadata names an agent or user.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb

from nhiaudit.sources._read import EvidenceFile, head
from nhiaudit.sources._sql import json_string, reject_lines, stage_lines

NAME = "invariant"
READS = 'Invariant Labs agent traces: JSONL of OpenAI-style message lists, bare or as {"messages", "metadata"}'
DETECTION = (
    'first line is a JSON array whose first message has a chat "role", or an object whose "messages" '
    'array starts with one, or a {"metadata": …} line followed by such a line'
)

# Chat roles of the OpenAI message format (and Invariant's traces): a "role" key alone is too common.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")
# Metadata keys naming who ran the trace, agent first; the first present string is the actor.
AGENT_KEYS = ("agent_id", "agent_name", "agent")
USER_KEYS = ("user_id", "user_name", "username", "user")
RESULT_EXCERPT = 500  # characters of a tool result kept in details.result_excerpt

_ROLE = "|".join(ROLES)
# A first line longer than the head: look at how it starts (the message's first key is its role).
_ARRAY_START = re.compile(r'^\[\s*\{\s*"role"\s*:\s*"(' + _ROLE + r')"')
_OBJECT_START = re.compile(r'^\{[^\n]*?"messages"\s*:\s*\[\s*\{\s*"role"\s*:\s*"(' + _ROLE + r')"')
_META_ARRAY_START = re.compile(r'^\[\s*\{\s*"metadata"\s*:[^\n]*?\}\s*\}\s*,\s*\{\s*"role"\s*:\s*"(' + _ROLE + r')"')


def detect(path: Path) -> bool:
    lines = [line for line in head(path).split("\n") if line.strip()]
    if not lines:
        return False
    first = _parse(lines[0])
    if _is_metadata_line(first):
        return len(lines) > 1 and _is_trace_line(lines[1])
    return _is_trace_line(lines[0])


def _parse(line: str) -> object | None:
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # nested deeper than Python parses: not a trace line
        return None


def _is_metadata_line(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"metadata"} and isinstance(value["metadata"], dict)


def _is_message(value: object) -> bool:
    return isinstance(value, dict) and value.get("role") in ROLES


def _is_trace_line(line: str) -> bool:
    value = _parse(line)
    if value is None:  # cut off by the head (or not JSON): judge by how it starts
        text = line.strip()
        return any(p.match(text) for p in (_ARRAY_START, _OBJECT_START, _META_ARRAY_START))
    if isinstance(value, dict):
        value = value.get("messages")
    if not isinstance(value, list) or not value:
        return False
    if _is_metadata_line(value[0]):
        value = value[1:]
    return bool(value) and _is_message(value[0])


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    for file in files:
        stage_lines(con, file)
        _traces(con)
        _check(con)
        _normalize(con)



def _traces(con: duckdb.DuckDBPyConnection) -> None:
    """Parse each line (``inv_lines``), unnest its messages (``inv_messages``) and tool calls (``inv_calls``)."""
    meta_only = "json_type(doc) = 'OBJECT' AND json_keys(doc) = ['metadata']"
    lead_meta = "json_type(doc, '$[0]') = 'OBJECT' AND json_keys(json_extract(doc, '$[0]')) = ['metadata']"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE inv_lines AS
        WITH parsed AS (
            SELECT record_index, line, text, CASE WHEN json_valid(text) THEN text::JSON END AS doc FROM lines
        ), kinds AS (
            SELECT *, CASE WHEN doc IS NULL THEN NULL
                           WHEN {meta_only} THEN 'metadata'
                           WHEN json_type(doc) = 'ARRAY' THEN 'array'
                           WHEN json_type(doc) = 'OBJECT' THEN 'object' END AS kind
            FROM parsed
        )
        SELECT *,
            CASE kind WHEN 'array' THEN doc WHEN 'object' THEN json_extract(doc, '$.messages') END AS msgs,
            CASE WHEN kind = 'object' THEN json_extract(doc, '$.metadata')
                 WHEN kind = 'array' AND {lead_meta} THEN json_extract(doc, '$[0].metadata') END AS trace_meta,
            -- Dataset metadata: the nearest {{"metadata": …}} line above (files may be concatenated).
            last_value(CASE WHEN kind = 'metadata' AND json_type(doc, '$.metadata') = 'OBJECT'
                            THEN json_extract(doc, '$.metadata') END IGNORE NULLS)
                OVER (ORDER BY record_index ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS file_meta
        FROM kinds"""
    )
    # Unnest in the select list: a lateral unnest would copy the whole trace into every message row.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE inv_messages AS
        SELECT record_index, line, mpos, m, {json_string("m", "$.role")} AS role,
               -- the {{"metadata": …}} element that may open an array trace is not a message
               (mpos = 0 AND kind = 'array' AND json_type(m) = 'OBJECT' AND json_keys(m) = ['metadata']) AS is_meta
        FROM (SELECT record_index, line, kind, unnest(json_extract(msgs, '$[*]')) AS m,
                     unnest(range(json_array_length(msgs)::BIGINT)) AS mpos
              FROM inv_lines WHERE json_type(msgs) = 'ARRAY')"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE inv_calls AS
        SELECT record_index, line, mpos, unnest(json_extract(m, '$.tool_calls[*]')) AS c,
               unnest(range(json_array_length(m, '$.tool_calls')::BIGINT)) AS cpos
        FROM inv_messages WHERE json_type(m) = 'OBJECT' AND json_type(m, '$.tool_calls') = 'ARRAY'"""
    )


def _check(con: duckdb.DuckDBPyConnection) -> None:
    """Reject a trace line at its first problem (``inv_problems``); dataset metadata lines are consumed."""
    line_problem = """coalesce(
        CASE WHEN doc IS NULL THEN 'line ' || line || ': not valid JSON (truncated or malformed trace)' END,
        json_type_problem(json_type(doc), 'line ' || line, ['ARRAY', 'OBJECT'],
                          'a trace: a message array or an object with "messages"'),
        CASE WHEN kind = 'metadata' THEN
            json_type_problem(json_type(doc, '$.metadata'), 'metadata', ['OBJECT'], 'an object') END,
        CASE WHEN kind = 'object' AND msgs IS NULL
            THEN 'object has no "messages" (keys: ' || array_to_string(json_keys(doc), ', ')
                 || '): not an Invariant trace' END,
        CASE WHEN kind = 'object' THEN json_type_problem(json_type(msgs), 'messages', ['ARRAY'], 'an array') END,
        json_field_problem(json_type(trace_meta), 'metadata', ['OBJECT'], 'an object'))"""
    message = "'messages[' || mpos || ']'"
    message_problem = f"""coalesce(
        json_type_problem(json_type(m), {message}, ['OBJECT'], 'a message object'),
        json_field_problem(json_type(m, '$.tool_calls'), {message} || '.tool_calls', ['ARRAY'], 'an array'),
        json_field_problem(json_type(m, '$.tool_call_id'), {message} || '.tool_call_id',
                           ['VARCHAR', 'BIGINT', 'UBIGINT'], 'a string'))"""
    where = "'messages[' || mpos || '].tool_calls[' || cpos || ']'"
    call_problem = f"""coalesce(
        json_type_problem(json_type(c), {where}, ['OBJECT'], 'an object'),
        CASE WHEN json_type(c, '$.function') IS NULL THEN {where} || ' has no "function"' END,
        json_type_problem(json_type(c, '$.function'), {where} || '.function', ['OBJECT'], 'an object'),
        CASE WHEN json_type(c, '$.function.name') IS NULL OR json_type(c, '$.function.name') = 'NULL'
            THEN {where} || '.function has no "name"' END,
        json_type_problem(json_type(c, '$.function.name'), {where} || '.function.name', ['VARCHAR'], 'a string'),
        json_field_problem(json_type(c, '$.id'), {where} || '.id', ['VARCHAR', 'BIGINT', 'UBIGINT'], 'a string'),
        json_field_problem(json_type(c, '$.function.arguments'), {where} || '.function.arguments',
                           ['OBJECT', 'VARCHAR'], 'an object or a JSON string'))"""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE inv_problems AS
        SELECT record_index, arg_min(reason, (mpos, cpos)) AS reason
        FROM (
            SELECT record_index, -1 AS mpos, -1 AS cpos, {line_problem} AS reason FROM inv_lines
            UNION ALL
            SELECT record_index, mpos, -1, {message_problem} FROM inv_messages WHERE NOT is_meta
            UNION ALL
            SELECT record_index, mpos, cpos, {call_problem} FROM inv_calls
        )
        WHERE reason IS NOT NULL GROUP BY record_index"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE inv_rejects AS
        SELECT l.record_index, l.line, l.text, p.reason FROM inv_lines l JOIN inv_problems p USING (record_index)"""
    )
    reject_lines(con, "inv_rejects")
    con.execute(
        """INSERT INTO consumed SELECT record_index FROM inv_lines
        WHERE kind = 'metadata' AND record_index NOT IN (SELECT record_index FROM inv_problems)"""
    )


def _object(**pairs: str) -> str:
    """SQL building a JSON object of the pairs whose value is not NULL (``json_merge_patch`` would
    also drop nulls nested inside values, such as a tool argument that is null)."""
    members = ", ".join(f"""'"{key}":' || to_json({value})::VARCHAR""" for key, value in pairs.items())
    return f"('{{' || concat_ws(',', {members}) || '}}')::JSON"


def _first_name(keys: tuple[str, ...]) -> str:
    metas = ("l.trace_meta", "l.file_meta")
    return "coalesce(" + ", ".join(json_string(meta, f"$.{key}") for key in keys for meta in metas) + ")"


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    agent, actor = _first_name(AGENT_KEYS), _first_name(AGENT_KEYS + USER_KEYS)
    # A tool result answers the call whose id it names; without ids (WebArena traces), the k-th tool
    # message right after an assistant message answers that message's k-th call.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE inv_results AS
        SELECT record_index, mpos, {json_string("m", "$.tool_call_id")} AS call_id,
               CASE WHEN json_type(m, '$.content') = 'VARCHAR'
                    THEN left(json_extract_string(m, '$.content'), {RESULT_EXCERPT}) END AS excerpt,
               mpos - max(CASE WHEN role IS DISTINCT FROM 'tool' THEN mpos END)
                   OVER (PARTITION BY record_index ORDER BY mpos ROWS UNBOUNDED PRECEDING) - 1 AS run_pos,
               max(CASE WHEN role IS DISTINCT FROM 'tool' THEN mpos END)
                   OVER (PARTITION BY record_index ORDER BY mpos ROWS UNBOUNDED PRECEDING) AS anchor
        FROM inv_messages WHERE record_index NOT IN (SELECT record_index FROM inv_problems)"""
    )
    con.execute("DELETE FROM inv_results WHERE excerpt IS NULL OR run_pos < 0")
    arguments = "json_extract(c.c, '$.function.arguments')"
    call_details = _object(
        tool_name="tool_name",
        tool_call_id="call_id",
        tool_type=json_string("c", "$.type"),
        arguments="arguments",
        result_excerpt="a.excerpt",
        agent_id="agent_id",
        trace_line="line",
        message_index="mpos",
        call_index="cpos",
        metadata="trace_meta",
        file_metadata="file_meta",
    )
    trace_details = _object(
        trace_line="l.line",
        message_count="coalesce(n.messages, 0)",
        tool_call_count="coalesce(k.tool_calls, 0)",
        agent_id=agent,
        metadata="l.trace_meta",
        file_metadata="l.file_meta",
    )
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH calls AS (
            SELECT c.*, {json_string("c.c", "$.id")} AS call_id,
                   json_extract_string(c.c, '$.function.name') AS tool_name,
                   CASE json_type({arguments})
                       WHEN 'VARCHAR' THEN CASE WHEN json_valid(json_extract_string({arguments}, '$'))
                                                THEN json(json_extract_string({arguments}, '$'))
                                                ELSE {arguments} END
                       WHEN 'OBJECT' THEN {arguments} END AS arguments,
                   md5(json(l.doc)::VARCHAR) AS trace_md5, {agent} AS agent_id, {actor} AS actor_id,
                   l.trace_meta, l.file_meta
            FROM inv_calls c JOIN inv_lines l USING (record_index)
            WHERE record_index NOT IN (SELECT record_index FROM inv_problems)
        ), answered AS (
            SELECT k.record_index, k.mpos, k.cpos,
                   coalesce(arg_min(r.excerpt, r.mpos) FILTER (WHERE r.call_id = k.call_id AND r.mpos > k.mpos),
                            any_value(r.excerpt) FILTER (WHERE k.call_id IS NULL AND r.call_id IS NULL
                                                         AND r.anchor = k.mpos AND r.run_pos = k.cpos)) AS excerpt
            FROM calls k JOIN inv_results r USING (record_index)
            GROUP BY ALL
        )
        SELECT
            -- An id repeated in the file ("call_1" in every trace) would not name one event.
            CASE WHEN call_id IS NOT NULL AND count(*) OVER (PARTITION BY call_id) = 1 THEN call_id
                 ELSE line || ':' || mpos || ':' || cpos END AS event_id,
            record_index, line, NULL::TIMESTAMPTZ AS occurred_at, 'tool_call' AS category,
            actor_id, 'agent' AS actor_type,
            {call_details} AS details,
            c AS raw,
            'call|' || trace_md5 || '|' || mpos || '|' || cpos AS dedupe_key
        FROM calls LEFT JOIN answered a USING (record_index, mpos, cpos)"""
    )
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH counts AS (
            SELECT record_index, count(*) FILTER (WHERE NOT is_meta) AS messages FROM inv_messages GROUP BY ALL
        ), calls AS (
            SELECT record_index, count(*) AS tool_calls FROM inv_calls GROUP BY ALL
        )
        SELECT 'trace:' || l.line AS event_id, l.record_index, l.line, NULL::TIMESTAMPTZ AS occurred_at,
               'other' AS category, {actor} AS actor_id, 'agent' AS actor_type,
               {trace_details} AS details,
               l.doc AS raw, 'trace|' || md5(json(l.doc)::VARCHAR) AS dedupe_key
        FROM inv_lines l LEFT JOIN counts n USING (record_index) LEFT JOIN calls k USING (record_index)
        WHERE l.kind IN ('array', 'object') AND l.record_index NOT IN (SELECT record_index FROM inv_problems)"""
    )
