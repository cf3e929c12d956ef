-- The task of each audited action: from its credential chain, from the task id the event itself
-- carries, or through trace context (a gateway call's traceparent names the calling span; its
-- nearest ancestor span that carries a task id gives the task).
CREATE OR REPLACE TEMP TABLE spans AS
SELECT e.source, e.event_id, e.trace_id, e.span_id, e.parent_span_id, e.occurred_at, e.ended_at, e.category,
       st.task_id, coalesce(json_extract_string(e.details, '$.agent_id'), e.actor_id) AS agent_id
FROM events e LEFT JOIN span_task st USING (source, event_id)
WHERE e.span_id IS NOT NULL AND e.trace_id IS NOT NULL AND e.category IN ('task', 'tool_call', 'other');

CREATE OR REPLACE TEMP TABLE trace_task AS
WITH RECURSIVE up(source, event_id, trace_id, span_id, depth) AS (
    SELECT source, event_id, trace_id, parent_span_id, 0 FROM audited
    WHERE trace_id IS NOT NULL AND parent_span_id IS NOT NULL
    UNION ALL
    SELECT up.source, up.event_id, up.trace_id, s.parent_span_id, up.depth + 1
    FROM up JOIN spans s ON s.trace_id = up.trace_id AND s.span_id = up.span_id
    WHERE s.task_id IS NULL AND s.parent_span_id IS NOT NULL AND up.depth < 64
), hits AS (
    SELECT up.source, up.event_id, up.depth, s.task_id, s.source AS span_source, s.event_id AS span_event_id
    FROM up JOIN spans s ON s.trace_id = up.trace_id AND s.span_id = up.span_id
    WHERE s.task_id IS NOT NULL
), fallback AS (
    -- The named span is not in the evidence: a task span of the same trace covering the call.
    SELECT a.source, a.event_id, 1000 AS depth,
           arg_min(s.task_id, (s.occurred_at, s.source, s.event_id, s.task_id)) AS task_id,
           arg_min(s.source, (s.occurred_at, s.source, s.event_id, s.task_id)) AS span_source,
           arg_min(s.event_id, (s.occurred_at, s.source, s.event_id, s.task_id)) AS span_event_id
    FROM audited a JOIN spans s ON s.trace_id = a.trace_id AND s.category = 'task' AND s.task_id IS NOT NULL
    WHERE a.trace_id IS NOT NULL
      AND a.occurred_at BETWEEN s.occurred_at - to_seconds((SELECT clock_skew_s FROM policy_params))
                            AND coalesce(s.ended_at, s.occurred_at) + to_seconds((SELECT clock_skew_s FROM policy_params))
    GROUP BY a.source, a.event_id
)
-- The nearest span wins; spans at the same depth are ordered by their own key (a total order, so
-- the task and its evidence come from one span, the same one on every run).
SELECT source, event_id, arg_min(task_id, (depth, span_source, span_event_id, task_id)) AS task_id,
       arg_min(span_source, (depth, span_source, span_event_id, task_id)) AS span_source,
       arg_min(span_event_id, (depth, span_source, span_event_id, task_id)) AS span_event_id
FROM (SELECT * FROM hits UNION ALL SELECT * FROM fallback)
GROUP BY source, event_id;

CREATE OR REPLACE TEMP TABLE action_task AS
SELECT a.source, a.event_id,
       coalesce(cc.task_id, a.event_task_id, tt.task_id) AS task_id,
       CASE WHEN cc.task_id IS NOT NULL THEN cc.task_link
            WHEN a.event_task_id IS NOT NULL THEN 'event'
            WHEN tt.task_id IS NOT NULL THEN 'trace' END AS task_link,
       cc.task_credential_id,
       tt.span_source, tt.span_event_id,
       -- sorted: list_distinct does not keep an order
       list_sort(list_distinct(list_filter(coalesce(cc.task_ids, []) || [a.event_task_id, tt.task_id],
                                           x -> x IS NOT NULL)))
           AS task_ids
FROM audited a
LEFT JOIN credential_chain cc ON cc.credential_id = a.credential_id
LEFT JOIN trace_task tt ON tt.source = a.source AND tt.event_id = a.event_id;
