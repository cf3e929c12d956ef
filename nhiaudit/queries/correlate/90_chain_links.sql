-- chain_links: the chains in long form, one row per (audited action, link), with the evidence of
-- each link resolved to its file, line and record index — for `nhiaudit sql` users:
--   SELECT kind, link_id, status, path, line FROM chain_links WHERE event_id = '…' ORDER BY position
-- A view: it costs nothing until queried.
CREATE OR REPLACE VIEW chain_links AS
WITH links AS (
    SELECT source, event_id, 0 AS position, 'action' AS kind, source || ':' || event_id AS link_id,
           'found' AS status, source AS ev_source, event_id AS ev_event_id FROM chains
    UNION ALL
    SELECT source, event_id, 1, 'credential', credential_id, credential_status, NULL, NULL FROM chains
    UNION ALL
    SELECT source, event_id, 2, 'issuance', issuance_source || ':' || issuance_event_id, issuance_status,
           issuance_source, issuance_event_id FROM chains
    UNION ALL
    SELECT ch.source, ch.event_id, 2 + a.depth, 'parent', a.ancestor_id,
           CASE WHEN c.issuance_event_id IS NOT NULL OR c.long_term OR NOT c.temporary
                     OR coalesce(pc.is_broker, false) THEN 'found'
                ELSE 'missing' END,
           c.issuance_source, c.issuance_event_id
    FROM chains ch
    JOIN credential_ancestry a ON a.credential_id = ch.credential_id AND a.depth >= 1
    JOIN credentials c ON c.credential_id = a.ancestor_id
    LEFT JOIN principal_class pc ON pc.principal = c.holder
    UNION ALL
    SELECT source, event_id, 100, 'span', span_source || ':' || span_event_id, 'found', span_source, span_event_id
    FROM chains WHERE span_event_id IS NOT NULL
    UNION ALL
    SELECT source, event_id, 101, 'task', task_id, task_status, task_source, task_event_id FROM chains
    UNION ALL
    SELECT source, event_id, 102, 'approval', approval_id, approval_status, approval_source, approval_event_id
    FROM chains
    UNION ALL
    SELECT source, event_id, 103, 'authority', grant_role, authority_status, grant_source, grant_event_id
    FROM chains
), evidence AS (
    SELECT e.source, e.event_id, ef.path, e.record_index, coalesce(e.line, 1) AS line
    FROM events e JOIN evidence_files ef ON ef.sha256 = e.file_sha256
    QUALIFY row_number() OVER (PARTITION BY e.source, e.event_id ORDER BY ef.ingested_at, ef.path, e.record_index) = 1
)
SELECT l.source, l.event_id, l.position, l.kind, l.link_id, l.status,
       l.ev_source AS evidence_source, l.ev_event_id AS evidence_event_id, ev.path, ev.record_index, ev.line
FROM links l
LEFT JOIN evidence ev ON ev.source = l.ev_source AND ev.event_id = l.ev_event_id;
