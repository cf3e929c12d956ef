-- Audited actions (DESIGN §6): category action, not by a human, tier >= audit.min_tier.
-- Denied and failed calls are audited too: an unapproved attempt is evidence (outcome is kept).
-- Tier: the highest [risk] tier whose glob matches the action; else, unless [risk] builtin = false,
-- the highest tier of the built-in catalogue (55_risk_catalogue.sql) that matches; unlisted:
-- read-only low, else medium. (Policy.tier_for says the same in Python.)
CREATE OR REPLACE TEMP TABLE action_tier AS
WITH names AS (SELECT DISTINCT action FROM events WHERE category = 'action' AND action IS NOT NULL),
listed AS (
    SELECT tier_rank, regex, false AS builtin FROM policy_risk
    UNION ALL
    SELECT tier_rank, regex, true FROM risk_catalogue WHERE (SELECT risk_builtin FROM policy_params)
)
SELECT n.action, coalesce(max(r.tier_rank) FILTER (WHERE NOT r.builtin), max(r.tier_rank)) AS listed_rank
FROM names n JOIN listed r ON regexp_full_match(n.action, r.regex)
GROUP BY n.action;

CREATE OR REPLACE TEMP TABLE audited AS
SELECT e.source, e.event_id, e.occurred_at, e.actor_id, e.actor_type, e.credential_id, e.credential_type,
       e.action, e.resource,
       -- every resource the call names: details.resources when it names several, else the one
       CASE WHEN json_type(e.details, '$.resources') = 'ARRAY'
            THEN json_extract_string(e.details, '$.resources[*]') WHEN e.resource IS NOT NULL THEN [e.resource] END
           AS resources,
       e.read_only, e.outcome, e.task_id AS event_task_id, e.trace_id, e.span_id,
       e.parent_span_id,
       coalesce(t.listed_rank, CASE WHEN e.read_only THEN 0 ELSE 1 END) AS tier_rank
FROM events e
LEFT JOIN action_tier t ON t.action = e.action
LEFT JOIN principal_class pc ON pc.principal = e.actor_id
WHERE e.category = 'action'
  AND NOT coalesce(pc.is_human, false)
  AND coalesce(t.listed_rank, CASE WHEN e.read_only THEN 0 ELSE 1 END) >= (SELECT audit_min_rank FROM policy_params);
