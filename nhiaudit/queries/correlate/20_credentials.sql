-- One row per credential: from its issuance (first one wins), its uses and its revocation.
-- The credential "used" by an issuance call is its parent (the caller's key), so a key that only
-- ever issued other keys (a broker's) is still known, with its holder.

-- A CloudTrail AssumeRoleWithSAML names no caller key: its parent is the SAML assertion the IdP
-- issued at the user's SSO to the AWS app (DESIGN §4, cross-source join). Okta: a successful
-- user.authentication.sso to a SAML app whose name says AWS or Amazon ('AWS Account Federation',
-- 'AWS IAM Identity Center', …) issues okta-saml:<uuid> to the app user; it joins the assumption
-- whose SAML subject (userIdentity.principalId is '<provider>:<NameID>') or role session name is
-- that user (case-insensitive), within correlation.clock_skew of the SSO. Two candidate SSOs give
-- none: a guess would be worse than no link.
CREATE OR REPLACE TEMP TABLE saml_parent AS
WITH skew AS (SELECT to_seconds(clock_skew_s) AS s FROM policy_params),
assumed AS (
    SELECT source, event_id, occurred_at,
           lower(nullif(regexp_extract(actor_id, '^[^:]*:(.+)\z', 1), '')) AS subject,
           lower(json_extract_string(details, '$.role_session_name')) AS session_name
    FROM events
    WHERE source = 'cloudtrail' AND category = 'credential_issue' AND action = 'sts:AssumeRoleWithSAML'
      AND parent_credential_id IS NULL AND occurred_at IS NOT NULL
), sso AS (
    SELECT credential_id, occurred_at, lower(json_extract_string(details, '$.holder')) AS app_user
    FROM events
    WHERE source = 'okta' AND category = 'credential_issue' AND credential_type = 'saml_assertion'
      AND occurred_at IS NOT NULL
      AND regexp_matches(concat_ws(' ', json_extract_string(details, '$.app'),
                                   json_extract_string(details, '$.app_instance')), '^(?is:.*?\b(?:aws|amazon)\b.*)\z')
)
SELECT a.source, a.event_id, min(s.credential_id) AS parent_credential_id
FROM assumed a CROSS JOIN skew
JOIN sso s ON s.app_user IN (a.subject, a.session_name)
     AND a.occurred_at BETWEEN s.occurred_at - skew.s AND s.occurred_at + skew.s
GROUP BY a.source, a.event_id
HAVING count(DISTINCT s.credential_id) = 1;

-- The events with the parents joined above: what the issuances and uses below read. The joined
-- parent is linked_parent_id (the logged one, else saml_parent's), its type linked_parent_type (the
-- logged details.parent_credential_type, else 'saml_assertion'), and parent_link says how it was
-- joined ('okta_saml_sso'): new columns beside events' own, so the statement stays portable (no
-- `* REPLACE`, no JSON patching) and lists no events column by hand.
CREATE OR REPLACE TEMP VIEW linked_events AS
SELECT e.*,
       coalesce(e.parent_credential_id, sp.parent_credential_id) AS linked_parent_id,
       CASE WHEN sp.parent_credential_id IS NOT NULL THEN 'saml_assertion'
            ELSE json_extract_string(e.details, '$.parent_credential_type') END AS linked_parent_type,
       CASE WHEN sp.parent_credential_id IS NOT NULL THEN 'okta_saml_sso' END AS parent_link
FROM events e LEFT JOIN saml_parent sp USING (source, event_id);

CREATE OR REPLACE TEMP TABLE issuance_rows AS
SELECT e.*,
       row_number() OVER (PARTITION BY e.credential_id
                          ORDER BY e.occurred_at NULLS LAST, e.source, e.event_id, e.file_sha256, e.record_index) AS rn,
       pv.parent_variants
FROM linked_events e
JOIN (SELECT credential_id, count(DISTINCT coalesce(linked_parent_id, '')) AS parent_variants
      FROM linked_events WHERE category = 'credential_issue' AND credential_id IS NOT NULL
      GROUP BY credential_id) pv ON pv.credential_id = e.credential_id
WHERE e.category = 'credential_issue' AND e.credential_id IS NOT NULL;

-- Session tags carry the task id under keys the policy names (correlation.task_tag_keys); a key
-- listed twice in one request counts at its first place.
CREATE OR REPLACE TEMP TABLE issuance_tag_task AS
SELECT source, event_id, arg_min(tag.value, (k.position, t.tag_pos)) FILTER (WHERE tag.value IS NOT NULL) AS task_id
FROM (
    SELECT source, event_id, unnest(tags) AS tag, generate_subscripts(tags, 1) AS tag_pos
    FROM (SELECT source, event_id,
                 from_json(json_extract(details, '$.session_tags'), '[{"key": "VARCHAR", "value": "VARCHAR"}]') AS tags
          FROM issuance_rows
          WHERE rn = 1 AND json_type(json_extract(details, '$.session_tags')) = 'ARRAY')
) t
JOIN policy_task_keys k ON k.kind = 'tag' AND k.key = t.tag.key
GROUP BY source, event_id;

-- An issuance says what it issued, not what the caller held: the parent's type is the source's
-- details.parent_credential_type when the parent is of another kind (an Entra app secret signing in
-- for a token, a kubelet certificate requesting a service account token), else the issued type.
CREATE OR REPLACE TEMP TABLE credential_use AS
SELECT CASE WHEN category = 'credential_issue' THEN linked_parent_id ELSE credential_id END AS credential_id,
       actor_id, occurred_at,
       CASE WHEN category = 'credential_issue'
            THEN coalesce(linked_parent_type, credential_type)
            ELSE credential_type END AS credential_type,
       category, source, event_id, file_sha256, record_index
FROM linked_events
WHERE (category = 'credential_issue' AND linked_parent_id IS NOT NULL)
   OR (category <> 'credential_issue' AND category <> 'credential_revoke' AND credential_id IS NOT NULL);

CREATE OR REPLACE TABLE credentials AS
WITH used AS (
    -- The first use; uses at the same instant are ordered by their event (a total order, so the
    -- three values come from one use and the result does not depend on DuckDB's scan order).
    SELECT credential_id,
           min(occurred_at) AS first_used_at, max(occurred_at) AS last_used_at,
           arg_min(actor_id, (occurred_at, source, event_id, file_sha256, record_index))
               FILTER (WHERE occurred_at IS NOT NULL AND actor_id IS NOT NULL) AS first_actor,
           arg_min(credential_type, (occurred_at, source, event_id, file_sha256, record_index))
               FILTER (WHERE occurred_at IS NOT NULL AND credential_type IS NOT NULL) AS used_type,
           arg_min(source, (occurred_at, source, event_id, file_sha256, record_index))
               FILTER (WHERE occurred_at IS NOT NULL AND source IS NOT NULL) AS used_source
    FROM credential_use GROUP BY credential_id
), revoked AS (
    SELECT credential_id, min(occurred_at) AS revoked_at FROM events
    WHERE category = 'credential_revoke' AND credential_id IS NOT NULL GROUP BY credential_id
), issued AS (
    SELECT i.*, tt.task_id AS tag_task_id FROM issuance_rows i
    LEFT JOIN issuance_tag_task tt USING (source, event_id)
    WHERE i.rn = 1
), ids AS (
    SELECT credential_id FROM issued UNION SELECT credential_id FROM used
)
SELECT
    ids.credential_id,
    coalesce(i.credential_type, u.used_type) AS credential_type,
    coalesce(i.source, u.used_source) AS source,
    coalesce(json_extract_string(i.details, '$.holder'), u.first_actor) AS holder,
    i.occurred_at AS issued_at,
    i.expires_at,
    r.revoked_at,
    i.linked_parent_id AS parent_credential_id,
    i.source AS issuance_source,
    i.event_id AS issuance_event_id,
    coalesce(i.parent_variants, 0) > 1 AS issuance_conflict,
    coalesce(i.task_id, i.tag_task_id) AS task_id,
    CASE WHEN i.task_id IS NOT NULL THEN coalesce(json_extract_string(i.details, '$.task_link'),
                                                  CASE i.source WHEN 'cloudtrail' THEN 'sourceIdentity'
                                                                WHEN 'vault' THEN 'vault_metadata'
                                                                ELSE i.source || '_task_id' END)
         WHEN i.tag_task_id IS NOT NULL THEN 'session_tag' END AS task_link,
    u.first_used_at, u.last_used_at,
    -- Long-term: its type is (an AKIA key), its issuance says so (a Vault token without TTL), or the
    -- policy calls it static.
    (kind.long_term
        OR coalesce(try_cast(json_extract_string(i.details, '$.long_term') AS BOOLEAN), false)
        OR ids.credential_id IN (SELECT credential_id FROM policy_static)) AS long_term,
    -- Temporary credentials are those a chain must explain with an issuance.
    kind.temporary AND ids.credential_id NOT IN (SELECT credential_id FROM policy_static) AS temporary
FROM ids
LEFT JOIN issued i USING (credential_id)
LEFT JOIN used u USING (credential_id)
LEFT JOIN revoked r USING (credential_id)
-- The kind of credential (15_credential_types.sql). An AWS key id says its own type: a caller's AKIA
-- key seen only as the parent of an AssumeRole carries the issued key's type from that event.
LEFT JOIN credential_types kind
    ON kind.credential_type = coalesce(aws_key_type(ids.credential_id), i.credential_type, u.used_type);
