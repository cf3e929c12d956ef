-- Task instances, from provenance records and from the systems that run them: invoke_agent spans,
-- GitHub Actions runs (github-run:<id>:<attempt>), Teleport access requests (teleport-request:<id>).
-- A task known from any of them counts; known_from names the system (details.known_from).
-- A grant record that names its task is a record of that task too: an Entra PIM activation
-- (pim-request:<RequestId>) proves its request even when the request entry is not loaded.
-- A span's task id is the first attribute present among correlation.task_span_attributes.
-- Every "first" below has a total tie-break (the event's own key), so that two records with the
-- same time or position give the same answer on every run: arg_min returns any one of tied rows.
CREATE OR REPLACE TEMP TABLE span_task AS
SELECT e.source, e.event_id,
       coalesce(arg_min(json_extract_string(e.details, '$.attributes."' || k.key || '"'),
                        (k.position, json_extract_string(e.details, '$.attributes."' || k.key || '"')))
                    FILTER (WHERE json_extract_string(e.details, '$.attributes."' || k.key || '"') IS NOT NULL),
                min(e.task_id)) AS task_id
FROM events e LEFT JOIN policy_task_keys k ON k.kind = 'span_attribute'
WHERE (e.category IN ('task', 'tool_call') OR (e.category = 'grant' AND e.task_id IS NOT NULL))
  AND e.source <> 'provenance'
GROUP BY e.source, e.event_id;

CREATE OR REPLACE TABLE tasks AS
WITH prov AS (
    SELECT task_id,
           arg_min(json_extract_string(details, '$.agent_id'), (record_index, file_sha256))
               FILTER (WHERE json_extract_string(details, '$.agent_id') IS NOT NULL) AS agent_id,
           arg_min(json_extract_string(details, '$.intent'), (record_index, file_sha256))
               FILTER (WHERE json_extract_string(details, '$.intent') IS NOT NULL) AS intent,
           arg_min(json_extract_string(details, '$.requested_by'), (record_index, file_sha256))
               FILTER (WHERE json_extract_string(details, '$.requested_by') IS NOT NULL) AS requested_by,
           arg_min(json_extract_string(details, '$.status'), (record_index, file_sha256))
               FILTER (WHERE json_extract_string(details, '$.status') IS NOT NULL) AS status,
           min(occurred_at) AS started_at, max(ended_at) AS ended_at,
           arg_min(event_id, (occurred_at, event_id))
               FILTER (WHERE occurred_at IS NOT NULL AND event_id IS NOT NULL) AS event_id,
           count(DISTINCT json_extract_string(details, '$.agent_id')) AS agents
    FROM events WHERE category = 'task' AND source = 'provenance' AND task_id IS NOT NULL
    GROUP BY task_id
), trace AS (
    SELECT st.task_id,
           arg_min(coalesce(json_extract_string(e.details, '$.agent_id'), e.actor_id), e.first_key)
               FILTER (WHERE e.occurred_at IS NOT NULL AND coalesce(json_extract_string(e.details, '$.agent_id'), e.actor_id) IS NOT NULL) AS agent_id,
           arg_min(json_extract_string(e.details, '$.intent'), e.first_key)
               FILTER (WHERE e.occurred_at IS NOT NULL AND json_extract_string(e.details, '$.intent') IS NOT NULL) AS intent,
           arg_min(json_extract_string(e.details, '$.requested_by'), e.first_key)
               FILTER (WHERE e.occurred_at IS NOT NULL AND json_extract_string(e.details, '$.requested_by') IS NOT NULL) AS requested_by,
           min(e.occurred_at) AS started_at, max(e.ended_at) AS ended_at,
           -- the latest status a record gives (a run requested, then completed)
           arg_max(json_extract_string(e.details, '$.status'), (coalesce(e.ended_at, e.occurred_at), e.first_key))
               FILTER (WHERE e.occurred_at IS NOT NULL AND json_extract_string(e.details, '$.status') IS NOT NULL) AS status,
           arg_min(coalesce(json_extract_string(e.details, '$.known_from'), 'trace'), e.first_key)
               FILTER (WHERE e.occurred_at IS NOT NULL) AS known_from,
           arg_min(e.source, e.first_key) FILTER (WHERE e.occurred_at IS NOT NULL AND e.source IS NOT NULL) AS source,
           arg_min(e.event_id, e.first_key)
               FILTER (WHERE e.occurred_at IS NOT NULL AND e.event_id IS NOT NULL) AS event_id,
           count(DISTINCT coalesce(json_extract_string(e.details, '$.agent_id'), e.actor_id)) AS agents
    FROM (SELECT *, (occurred_at, source, event_id, file_sha256, record_index) AS first_key FROM events) e
    JOIN span_task st USING (source, event_id)
    WHERE e.category IN ('task', 'grant') AND st.task_id IS NOT NULL
    GROUP BY st.task_id
)
SELECT
    coalesce(p.task_id, t.task_id) AS task_id,
    coalesce(p.agent_id, t.agent_id) AS agent_id,
    coalesce(p.intent, t.intent) AS intent,
    -- the requester's one name under [identities] aliases; requested_by_as_logged as the record gives it
    canonical_identity(coalesce(p.requested_by, t.requested_by)) AS requested_by,
    coalesce(p.status, t.status) AS status,
    coalesce(p.started_at, t.started_at) AS started_at,
    coalesce(p.ended_at, t.ended_at) AS ended_at,
    CASE WHEN p.task_id IS NOT NULL AND t.task_id IS NOT NULL THEN 'both'
         WHEN p.task_id IS NOT NULL THEN 'provenance' ELSE coalesce(t.known_from, 'trace') END AS known_from,
    -- Provenance and trace disagree on the agent, or one of them names several.
    (coalesce(p.agents, 0) > 1 OR coalesce(t.agents, 0) > 1
        OR (p.agent_id IS NOT NULL AND t.agent_id IS NOT NULL AND p.agent_id <> t.agent_id)) AS agent_conflict,
    CASE WHEN p.task_id IS NOT NULL THEN 'provenance' ELSE t.source END AS evidence_source,
    coalesce(p.event_id, t.event_id) AS evidence_event_id,
    t.source AS trace_source, t.event_id AS trace_event_id,
    coalesce(p.requested_by, t.requested_by) AS requested_by_as_logged
FROM prov p FULL OUTER JOIN trace t ON p.task_id = t.task_id;
