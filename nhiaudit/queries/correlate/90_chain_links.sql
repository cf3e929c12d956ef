-- chain_links: the chains in long form, one row per (audited action, link), with the evidence of
-- each link resolved to its file, line and record index. This view is the definition of a chain's
-- links: `nhiaudit trace`, every report and SQL users read it, e.g.
--   SELECT kind, link_id, status, path, line FROM chain_links WHERE event_id = '…' ORDER BY position
-- Links in order: action (0), credential (1), issuance (2), parents (2 + depth), then the
-- authorization: span (100, gateway calls joined by trace context), task, approval, denial (the
-- denial record, when one decides the verdict), authority.
-- A parent is rooted ('found') when it is a long-term key, a broker's, not temporary, or issued in
-- the evidence; a temporary parent whose issuance is missing breaks the chain.
-- holder .. issued_at describe the credential of credential and parent links (NULL on others).
-- Two views, costing nothing until queried: chain_link_rows holds the links (the first ten columns,
-- evidence named by source and event id), chain_links adds where each link's evidence is. `trace`
-- reads chain_link_rows for one event id and then looks its few evidence rows up by index.
CREATE OR REPLACE VIEW chain_link_rows AS
    SELECT source, event_id, 0 AS position, 'action' AS kind, 0 AS depth, source || ':' || event_id AS link_id,
           'found' AS status, source AS evidence_source, event_id AS evidence_event_id,
           NULL::VARCHAR AS holder, NULL::VARCHAR AS credential_type, NULL::BOOLEAN AS long_term,
           NULL::BOOLEAN AS broker, NULL::BOOLEAN AS human, NULL::TIMESTAMPTZ AS issued_at
    FROM chains
    UNION ALL
    SELECT ch.source, ch.event_id, 1, 'credential', 0, ch.credential_id, ch.credential_status, NULL, NULL,
           ch.credential_holder, ch.credential_type, ch.credential_long_term,
           coalesce(pc.is_broker, false), coalesce(pc.is_human, false), ch.issued_at
    FROM chains ch LEFT JOIN principal_class pc ON pc.principal = ch.credential_holder
    UNION ALL
    SELECT source, event_id, 2, 'issuance', 0, issuance_source || ':' || issuance_event_id, issuance_status,
           issuance_source, issuance_event_id, NULL, NULL, NULL, NULL, NULL, NULL
    FROM chains
    UNION ALL
    SELECT ch.source, ch.event_id, 2 + a.depth, 'parent', a.depth, a.ancestor_id,
           CASE WHEN c.issuance_event_id IS NOT NULL OR c.long_term OR NOT coalesce(c.temporary, false)
                     OR coalesce(pc.is_broker, false) THEN 'found'
                ELSE 'missing' END,
           c.issuance_source, c.issuance_event_id,
           c.holder, c.credential_type, c.long_term, coalesce(pc.is_broker, false), coalesce(pc.is_human, false),
           c.issued_at
    FROM chains ch
    JOIN credential_ancestry a ON a.credential_id = ch.credential_id AND a.depth >= 1
    JOIN credentials c ON c.credential_id = a.ancestor_id
    LEFT JOIN principal_class pc ON pc.principal = c.holder
    UNION ALL
    SELECT source, event_id, 100, 'span', 0, span_source || ':' || span_event_id, 'found', span_source,
           span_event_id, NULL, NULL, NULL, NULL, NULL, NULL
    FROM chains WHERE span_event_id IS NOT NULL
    UNION ALL
    SELECT source, event_id, 101, 'task', 0, task_id, task_status, task_source, task_event_id,
           NULL, NULL, NULL, NULL, NULL, NULL
    FROM chains
    UNION ALL
    SELECT source, event_id, 102, 'approval', 0, approval_id, approval_status, approval_source, approval_event_id,
           NULL, NULL, NULL, NULL, NULL, NULL
    FROM chains
    UNION ALL
    -- the denial record that decides the verdict (only when one does)
    SELECT source, event_id, 103, 'denial', 0, denial_id, 'found', denial_source, denial_event_id,
           NULL, NULL, NULL, NULL, NULL, NULL
    FROM chains WHERE denial_event_id IS NOT NULL
    UNION ALL
    SELECT source, event_id, 104, 'authority', 0, grant_role, authority_status, grant_source, grant_event_id,
           NULL, NULL, NULL, NULL, NULL, NULL
    FROM chains;

CREATE OR REPLACE VIEW chain_links AS
SELECT l.source, l.event_id, l.position, l.kind, l.depth, l.link_id, l.status,
       l.evidence_source, l.evidence_event_id, ev.path, ev.file_sha256, ev.record_index, ev.line,
       l.holder, l.credential_type, l.long_term, l.broker, l.human, l.issued_at
FROM chain_link_rows l
LEFT JOIN event_evidence ev ON ev.source = l.evidence_source AND ev.event_id = l.evidence_event_id;
