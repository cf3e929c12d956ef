-- Every principal seen (actors and credential holders), classified by the policy's identity globs.
CREATE OR REPLACE TABLE principal_class AS
WITH seen AS (
    SELECT DISTINCT actor_id AS principal FROM events WHERE actor_id IS NOT NULL
    UNION
    SELECT DISTINCT json_extract_string(details, '$.holder') FROM events
    WHERE category = 'credential_issue' AND json_extract_string(details, '$.holder') IS NOT NULL
    UNION
    SELECT DISTINCT json_extract_string(details, '$.approver') FROM events
    WHERE category = 'approval' AND json_extract_string(details, '$.approver') IS NOT NULL
)
SELECT s.principal,
       coalesce(bool_or(pi.kind = 'human'), false) AS is_human,
       coalesce(bool_or(pi.kind = 'broker'), false) AS is_broker
FROM seen s LEFT JOIN policy_identity pi ON regexp_full_match(s.principal, pi.regex)
GROUP BY s.principal;
