"""OpenTelemetry OTLP/JSON exports: agent traces and logs (DESIGN §4, FORMATS §7).

A file is one ``{"resourceSpans": [...]}`` (or ``resourceLogs``) document, pretty-printed or not, or
one such document a line (the collector's file exporter). Each span, and each log record, is one
event: its ``record_index`` is its position among the spans/log records of the file, its ``line``
the line of the document that holds it. Attributes are flattened to a JSON object in SQL, with span
attributes over scope attributes over resource attributes, and kept whole in ``details.attributes``
so that correlation can re-resolve the task id with the policy's attribute list.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from nhiaudit.sources import _sql
from nhiaudit.sources._read import RAW_EXCERPT, EvidenceFile, head, stage_json_records

NAME = "otel"
READS = "OTLP/JSON trace and log exports (resourceSpans / resourceLogs documents, whole or one a line)"
DETECTION = 'JSON whose head has a "resourceSpans" or "resourceLogs" array (OTLP/JSON)'

# Default of correlation.task_span_attributes (DESIGN §5); correlation re-resolves with the policy.
TASK_ATTRIBUTES = ("nhiaudit.task.id", "task.id", "gen_ai.conversation.id")
REQUESTER_ATTRIBUTES = ("enduser.id", "user.id", "enduser.pseudo.id")
ERROR_STATUS = "('2', 'STATUS_CODE_ERROR')"  # status.code: an int, or the enum name in protobuf JSON
MAX_ANCESTRY = 64  # bound on the parent-span walk (a malformed trace may hold a cycle)

_DOC = re.compile(r'"resource(Spans|Logs)"\s*:\s*\[')

# (container key in the document, scope-list keys (current, pre-1.0 OTLP), item key, kind)
_SHAPES = (
    ("resourceSpans", ("scopeSpans", "instrumentationLibrarySpans"), "spans", "span"),
    ("resourceLogs", ("scopeLogs", "instrumentationLibraryLogs"), "logRecords", "log"),
)
_TIMES = ("startTimeUnixNano", "endTimeUnixNano", "timeUnixNano", "observedTimeUnixNano")
_IDS = (("spanId", "span id"), ("traceId", "trace id"), ("parentSpanId", "span id"))

# OTLP AnyValue -> JSON value. intValue is an int64 as a string in OTLP/JSON (a number from some
# exporters); arrays and key-value lists are flattened one level, deeper values stay OTLP JSON.
_MACROS = """
CREATE OR REPLACE TEMP MACRO otel_scalar(v) AS CASE
    WHEN json_exists(v, '$.stringValue') THEN to_json(json_extract_string(v, '$.stringValue'))
    WHEN json_exists(v, '$.intValue') THEN coalesce(
        to_json(try_cast(json_extract_string(v, '$.intValue') AS HUGEINT)), json_extract(v, '$.intValue'))
    WHEN json_exists(v, '$.doubleValue') THEN json_extract(v, '$.doubleValue')
    WHEN json_exists(v, '$.boolValue') THEN json_extract(v, '$.boolValue')
    WHEN json_exists(v, '$.bytesValue') THEN json_extract(v, '$.bytesValue')
    WHEN json_exists(v, '$.arrayValue') THEN json_extract(v, '$.arrayValue')
    WHEN json_exists(v, '$.kvlistValue') THEN json_extract(v, '$.kvlistValue')
END;
CREATE OR REPLACE TEMP MACRO otel_value(v) AS CASE
    WHEN json_exists(v, '$.arrayValue') THEN coalesce((
        SELECT to_json(list(otel_scalar(e) ORDER BY p))
        FROM unnest(CAST(json_extract(v, '$.arrayValue.values[*]') AS JSON[])) WITH ORDINALITY AS t(e, p)
    ), '[]'::JSON)
    WHEN json_exists(v, '$.kvlistValue') THEN coalesce((
        SELECT json_group_object(json_extract_string(e, '$.key'), otel_scalar(json_extract(e, '$.value')))
        FROM unnest(CAST(json_extract(v, '$.kvlistValue.values[*]') AS JSON[])) AS t(e)
        WHERE json_extract_string(e, '$.key') IS NOT NULL
    ), '{}'::JSON)
    ELSE otel_scalar(v)
END;
CREATE OR REPLACE TEMP MACRO otel_attributes(a) AS json_merge_patch('{}', coalesce((
    SELECT json_group_object(json_extract_string(e, '$.key'), otel_value(json_extract(e, '$.value')))
    FROM unnest(CAST(json_extract(a, '$[*]') AS JSON[])) AS t(e)
    WHERE json_extract_string(e, '$.key') IS NOT NULL
), '{}'::JSON));
-- OTLP/JSON ids are hex; the protobuf JSON mapping would give base64 (16 or 8 bytes).
CREATE OR REPLACE TEMP MACRO otel_id(x) AS CASE
    WHEN x IS NULL OR x = '' THEN NULL
    WHEN regexp_full_match(x, '[0-9a-fA-F]{16}|[0-9a-fA-F]{32}') THEN lower(x)
    WHEN regexp_full_match(x, '[A-Za-z0-9+/]{22}==|[A-Za-z0-9+/]{11}=') THEN lower(hex(from_base64(x)))
END;
-- Nanoseconds since the epoch as a string; 0 means "unknown" in OTLP.
CREATE OR REPLACE TEMP MACRO otel_time(x) AS CASE
    WHEN try_cast(x AS HUGEINT) BETWEEN 1 AND 9223372036854775806
        THEN make_timestamp(x::BIGINT // 1000) AT TIME ZONE 'UTC'
END;
CREATE OR REPLACE TEMP MACRO otel_attr(attrs, key) AS json_extract_string(attrs, '$."' || key || '"');
"""


def detect(path: Path) -> bool:
    return _DOC.search(head(path)) is not None


def load(con: duckdb.DuckDBPyConnection, files: list[EvidenceFile]) -> None:
    con.execute(_MACROS)
    for file in files:
        stage_json_records(con, file)
        _items(con)
        _check(con)
        _normalize(con)



def _items(con: duckdb.DuckDBPyConnection) -> None:
    """Unnest the documents to spans and log records (temp table ``otel_items``).

    Every document is consumed here: its spans become events or rejections of their own, and a
    malformed level (a resource that is not an object, ``spans`` that is not an array) is rejected
    with its JSON path. From here on positions are span positions, so a rejection above the span
    level carries only its line.
    """
    containers = " OR ".join(f"coalesce(json_type(doc, '$.{c}') = 'ARRAY', false)" for c, *_ in _SHAPES)
    not_array = _sql.first_problem(
        *(f"json_type_problem(json_type(doc, '$.{c}'), '{c}', ['ARRAY'], 'an array')" for c, *_ in _SHAPES),
        "'neither resourceSpans nor resourceLogs: not an OTLP/JSON trace or logs document'",
    )
    con.execute(
        f"""INSERT INTO staged_rejected
        SELECT NULL, line, {not_array}, left(doc::VARCHAR, ?)
        FROM records WHERE NOT ({containers})""",
        [RAW_EXCERPT],
    )
    con.execute("INSERT INTO consumed SELECT record_index FROM records")
    # Unnest in the select list (two lists of the same length unnest side by side): a lateral
    # unnest would copy the whole parent document into every child row.
    levels = []
    for container, scope_keys, item_key, kind in _SHAPES:
        scopes = "coalesce(" + ", ".join(f"json_extract(res, '$.{k}')" for k in scope_keys) + ")"
        levels.append(
            f"""SELECT '{kind}' AS kind, '{container}' AS container, '{scope_keys[0]}' AS scope_key,
                       '{item_key}' AS item_key, doc_index, line, res, rpos, {scopes} AS scopes,
                       otel_attributes(json_extract(res, '$.resource.attributes')) AS resource_attrs
                FROM (SELECT record_index AS doc_index, line,
                             unnest(json_extract(doc, '$.{container}[*]')) AS res,
                             unnest(range(json_array_length(doc, '$.{container}')::BIGINT)) AS rpos
                      FROM records WHERE json_type(doc, '$.{container}') = 'ARRAY')"""
        )
    con.execute("CREATE OR REPLACE TEMP TABLE otel_resources AS " + " UNION ALL ".join(levels))
    con.execute(
        """CREATE OR REPLACE TEMP TABLE otel_scopes AS
        SELECT *, json_merge_patch(resource_attrs, otel_attributes(json_extract(sc, '$.scope.attributes')))
                      AS scope_attrs,
               json_extract_string(sc, '$.scope.name') AS scope_name
        FROM (SELECT kind, container, scope_key, item_key, doc_index, line, rpos, resource_attrs,
                     unnest(json_extract(scopes, '$[*]')) AS sc, unnest(range(json_array_length(scopes)::BIGINT)) AS spos
              FROM otel_resources WHERE json_type(res) = 'OBJECT' AND json_type(scopes) = 'ARRAY')"""
    )
    # Only small columns go down to the span level: a span row must not copy its whole document.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE otel_raw_items AS
        SELECT kind, doc_index, line, rpos, spos, scope_attrs, scope_name,
               unnest(items) AS item, unnest(range(len(items)::BIGINT)) AS ipos
        FROM (SELECT *, CASE WHEN kind = 'span' THEN json_extract(sc, '$.spans[*]')
                             ELSE json_extract(sc, '$.logRecords[*]') END AS items
              FROM otel_scopes WHERE json_type(sc) = 'OBJECT' AND json_type(sc, '$.' || item_key) = 'ARRAY')"""
    )
    items = "json_extract(sc, '$.' || item_key)"
    con.execute(
        f"""INSERT INTO staged_rejected
        SELECT NULL, line, reason, left(value::VARCHAR, ?)
        FROM (
            SELECT line, json_type_problem(json_type(res), container || '[' || rpos || ']', ['OBJECT'], 'an object')
                       AS reason, res AS value
            FROM otel_resources
            UNION ALL
            SELECT line, json_type_problem(json_type(scopes), container || '[' || rpos || '].' || scope_key,
                                           ['ARRAY'], 'an array'), scopes
            FROM otel_resources WHERE json_type(res) = 'OBJECT'
            UNION ALL
            SELECT line, json_type_problem(json_type(sc), container || '[' || rpos || '].' || scope_key
                                                          || '[' || spos || ']', ['OBJECT'], 'an object'), sc
            FROM otel_scopes
            UNION ALL
            SELECT line, json_field_problem(json_type(sc, '$.' || item_key), container || '[' || rpos || '].'
                                            || scope_key || '[' || spos || '].' || item_key, ['ARRAY'], 'an array'),
                   {items}
            FROM otel_scopes WHERE json_type(sc) = 'OBJECT'
        ) WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE otel_items AS
        SELECT row_number() OVER (ORDER BY doc_index, kind DESC, rpos, spos, ipos) - 1 AS record_index, *
        FROM otel_raw_items"""
    )


def _check(con: duckdb.DuckDBPyConnection) -> None:
    """Reject spans and log records whose ids, times or attributes do not have the OTLP shape."""
    branches = [
        "WHEN kind = 'span' AND coalesce(spanId, '') = '' THEN 'span has no spanId'",
        "WHEN kind = 'span' AND coalesce(traceId, '') = '' THEN 'span has no traceId'",
    ]
    for field, what in _IDS:
        branches.append(
            f"WHEN json_type(item, '$.{field}') NOT IN ('VARCHAR', 'NULL') "
            f"OR (coalesce({field}, '') <> '' AND otel_id({field}) IS NULL) "
            f"THEN '{field} ''' || left({field}, 60) || ''' is not a hex {what}'"
        )
    for field in _TIMES:
        branches.append(
            f"WHEN json_type(item, '$.{field}') NOT IN ('VARCHAR', 'BIGINT', 'UBIGINT', 'NULL') "
            f"OR NOT regexp_full_match({field}, '[0-9]{{1,19}}') "
            f"THEN '{field} ''' || left({field}, 60) || ''' is not an integer nanosecond Unix time'"
        )
    branches.append("WHEN kind = 'span' AND startTimeUnixNano IS NULL THEN 'span has no startTimeUnixNano'")
    s = _sql
    reason = s.first_problem(
        "json_type_problem(json_type(item), 'record', ['OBJECT'], 'an object')",
        "CASE " + "\n".join(branches) + " END",
        s.wrong_type("json_type(item, '$.attributes')", "attributes", s.ARRAY, "an array of {key, value}"),
        s.wrong_type("json_type(item, '$.status')", "status", s.OBJECT, "an object"),
    )
    fields = ", ".join(f"json_extract_string(item, '$.{f}') AS {f}" for f in (*(f for f, _ in _IDS), *_TIMES))
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE otel_checked AS
        SELECT *, {reason} AS reason
        FROM (SELECT *, {fields} FROM otel_items)"""
    )
    con.execute(
        """INSERT INTO staged_rejected SELECT record_index, line, reason, left(item::VARCHAR, ?)
        FROM otel_checked WHERE reason IS NOT NULL""",
        [RAW_EXCERPT],
    )


def _normalize(con: duckdb.DuckDBPyConnection) -> None:
    task = "coalesce(" + ", ".join(f"otel_attr(attrs, '{a}')" for a in TASK_ATTRIBUTES) + ")"
    requester = "coalesce(" + ", ".join(f"otel_attr(attrs, '{a}')" for a in REQUESTER_ATTRIBUTES) + ")"
    operation = "otel_attr(attrs, 'gen_ai.operation.name')"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE otel_spans AS
        WITH typed AS (
            SELECT record_index, line, kind, item,
                   json_merge_patch(scope_attrs, otel_attributes(json_extract(item, '$.attributes'))) AS attrs,
                   scope_name,
                   otel_id(traceId) AS trace_id, otel_id(spanId) AS span_id,
                   otel_id(parentSpanId) AS parent_span_id,
                   CASE WHEN kind = 'span' THEN otel_time(startTimeUnixNano)
                        ELSE coalesce(otel_time(timeUnixNano), otel_time(observedTimeUnixNano))
                   END AS occurred_at,
                   otel_time(endTimeUnixNano) AS ended_at,
                   json_extract_string(item, '$.name') AS name,
                   json_extract_string(item, '$.status.code') AS status_code,
                   json_extract_string(item, '$.status.message') AS status_message
            FROM otel_checked WHERE reason IS NULL
        )
        SELECT *,
            -- The span name ("invoke_agent report-bot") when an SDK omits gen_ai.operation.name.
            CASE WHEN kind = 'log' THEN 'other'
                 WHEN coalesce({operation}, split_part(name, ' ', 1)) = 'invoke_agent' THEN 'task'
                 WHEN coalesce({operation}, split_part(name, ' ', 1)) = 'execute_tool' THEN 'tool_call'
                 ELSE 'other' END AS category,
            coalesce(otel_attr(attrs, 'gen_ai.agent.id'), otel_attr(attrs, 'gen_ai.agent.name')) AS own_agent,
            {task} AS own_task
        FROM typed"""
    )
    # A span without its own agent or task id inherits them from its nearest invoke_agent ancestor in
    # the same file: the semantic conventions put gen_ai.agent.* on the agent span, not on the tool
    # spans and HTTP client spans below it (whose traceparent is what a gateway logs).
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE otel_inherited AS
        WITH RECURSIVE up(record_index, trace_id, next_span, depth, agent, task, found) AS (
            SELECT record_index, trace_id, parent_span_id, 0, NULL::VARCHAR, NULL::VARCHAR, false
            FROM otel_spans
            WHERE kind = 'span' AND category <> 'task' AND parent_span_id IS NOT NULL
              AND (own_agent IS NULL OR own_task IS NULL)
            UNION ALL
            SELECT up.record_index, up.trace_id, p.parent_span_id, up.depth + 1, p.own_agent, p.own_task,
                   p.category = 'task'
            FROM up JOIN otel_spans p
              ON p.kind = 'span' AND p.trace_id = up.trace_id AND p.span_id = up.next_span
            WHERE NOT up.found AND up.depth < {MAX_ANCESTRY}
        )
        SELECT record_index, arg_min(agent, depth) AS agent, arg_min(task, depth) AS task
        FROM up WHERE found GROUP BY record_index"""
    )
    failed = f"status_code IN {ERROR_STATUS}"
    # json_merge_patch('{}', x) drops the keys whose value is null: details keys are absent when unknown.
    con.execute(
        f"""INSERT INTO staged BY NAME
        WITH s AS (
            SELECT s.*, i.task AS inherited_task,
                   coalesce(s.own_agent, i.agent) AS agent, coalesce(s.own_task, i.task) AS task
            FROM otel_spans s LEFT JOIN otel_inherited i USING (record_index)
        )
        SELECT
            CASE WHEN kind = 'span' THEN span_id END AS event_id,
            record_index, line, occurred_at, ended_at, category,
            coalesce(agent, otel_attr(attrs, 'service.name')) AS actor_id,
            CASE WHEN agent IS NOT NULL THEN 'agent'
                 WHEN otel_attr(attrs, 'service.name') IS NOT NULL THEN 'service' END AS actor_type,
            CASE WHEN {failed} THEN 'failure' WHEN kind = 'span' THEN 'success' END AS outcome,
            CASE WHEN {failed}
                 THEN coalesce(otel_attr(attrs, 'error.type'), nullif(status_message, ''), 'error')
                 END AS error_code,
            task AS task_id, trace_id, span_id, parent_span_id,
            json_merge_patch('{{}}', json_object(
                'name', name,
                'scope', scope_name,
                'span_kind', json_extract(item, '$.kind'),
                'attributes', attrs,
                'task_link', CASE WHEN own_task IS NOT NULL THEN 'span_attribute'
                                  WHEN inherited_task IS NOT NULL THEN 'parent_span' END
            ), CASE category
                WHEN 'task' THEN json_object(
                    'agent_id', agent,
                    'agent_name', otel_attr(attrs, 'gen_ai.agent.name'),
                    'intent', otel_attr(attrs, 'nhiaudit.task.intent'),
                    'requested_by', {requester},
                    'status', CASE WHEN {failed} THEN 'error'
                                   WHEN status_code IN ('1', 'STATUS_CODE_OK') THEN 'ok' END,
                    'known_from', 'trace')
                WHEN 'tool_call' THEN json_object(
                    'tool_name', otel_attr(attrs, 'gen_ai.tool.name'),
                    'tool_call_id', otel_attr(attrs, 'gen_ai.tool.call.id'),
                    'tool_type', otel_attr(attrs, 'gen_ai.tool.type'),
                    'agent_id', agent)
                ELSE json_object(
                    'agent_id', agent,
                    'event_name', json_extract_string(item, '$.eventName'),
                    'severity_text', json_extract_string(item, '$.severityText'),
                    'severity_number', json_extract(item, '$.severityNumber'),
                    'body', CASE WHEN json_type(item, '$.body') = 'OBJECT'
                                 THEN otel_value(json_extract(item, '$.body')) END)
                END) AS details,
            item AS raw,
            -- A span is the same span wherever it is exported; a log record has no id of its own.
            CASE WHEN kind = 'span' THEN trace_id || span_id
                 ELSE 'log|' || md5(attrs::VARCHAR || item::VARCHAR) END AS dedupe_key
        FROM s"""
    )
