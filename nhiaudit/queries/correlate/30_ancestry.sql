-- Each credential's chain: itself (depth 0), its parent (1), and so on up to the root.
-- Role chaining and Vault-token -> dynamic-key hops are followed to any depth; cycles stop.
CREATE OR REPLACE TABLE credential_ancestry AS
WITH RECURSIVE walk(credential_id, depth, ancestor_id, path) AS (
    SELECT credential_id, 0, credential_id, [credential_id] FROM credentials
    UNION ALL
    SELECT w.credential_id, w.depth + 1, c.parent_credential_id, list_append(w.path, c.parent_credential_id)
    FROM walk w JOIN credentials c ON c.credential_id = w.ancestor_id
    WHERE c.parent_credential_id IS NOT NULL AND NOT list_contains(w.path, c.parent_credential_id)
      AND w.depth < 64
)
SELECT credential_id, depth, ancestor_id FROM walk ORDER BY credential_id, depth;  -- clustered for lookups

-- Per credential: its root and whether the chain is rooted, the first temporary credential that
-- has no issuance and is not a broker's, or an unknown RFC 8693 actor (broken delegation), a
-- human holder on the chain, and
-- the task id nearest to the credential.
CREATE OR REPLACE TABLE credential_chain AS
WITH links AS (
    SELECT a.credential_id, a.depth, a.ancestor_id, c.holder, c.long_term, c.temporary,
           c.issuance_event_id, c.issuance_source, c.task_id, c.task_link,
           coalesce(pc.is_broker, false) AS holder_is_broker, coalesce(pc.is_human, false) AS holder_is_human,
           -- An RFC 8693 actor (act.sub) that nothing else in the evidence knows as a principal:
           -- nobody can say who that delegate was (DESIGN §6, broken-delegation-chain).
           c.credential_type = 'oauth_actor' AND c.issuance_event_id IS NULL AND known.principal IS NULL
               AND NOT coalesce(pc.is_broker, false) AS unknown_actor
    FROM credential_ancestry a
    JOIN credentials c ON c.credential_id = a.ancestor_id
    LEFT JOIN principal_class pc ON pc.principal = c.holder
    LEFT JOIN principal_class known ON known.principal = c.credential_id
), top AS (
    SELECT credential_id, arg_max(ancestor_id, depth)
        FILTER (WHERE ancestor_id IS NOT NULL) AS root_credential_id, max(depth) AS chain_depth
    FROM links GROUP BY credential_id
)
SELECT
    t.credential_id, t.root_credential_id, t.chain_depth,
    list(l.ancestor_id ORDER BY l.depth) AS chain_credential_ids,
    CASE WHEN bool_or(l.holder_is_broker) THEN 'broker'
         WHEN any_value(r.long_term) THEN 'long_term'
         WHEN any_value(r.issuance_source) = 'vault' THEN 'vault'
         WHEN any_value(r.issuance_event_id) IS NOT NULL THEN 'issuer:' || any_value(r.issuance_source)
         ELSE 'unrooted' END AS root_kind,
    arg_min(l.ancestor_id, l.depth) FILTER (
        WHERE ((l.temporary AND l.issuance_event_id IS NULL AND NOT l.holder_is_broker) OR l.unknown_actor) AND l.ancestor_id IS NOT NULL)
        AS broken_credential_id,
    arg_min(l.holder, l.depth) FILTER (WHERE l.holder_is_human AND l.holder IS NOT NULL) AS human_holder,
    arg_min(l.ancestor_id, l.depth)
        FILTER (WHERE l.holder_is_human AND l.ancestor_id IS NOT NULL) AS human_credential_id,
    arg_min(l.task_id, l.depth) FILTER (WHERE l.task_id IS NOT NULL) AS task_id,
    arg_min(l.task_link, l.depth) FILTER (WHERE l.task_id IS NOT NULL AND l.task_link IS NOT NULL) AS task_link,
    arg_min(l.ancestor_id, l.depth)
        FILTER (WHERE l.task_id IS NOT NULL AND l.ancestor_id IS NOT NULL) AS task_credential_id,
    list(DISTINCT l.task_id ORDER BY l.task_id) FILTER (WHERE l.task_id IS NOT NULL) AS task_ids
FROM top t
JOIN links l USING (credential_id)
JOIN credentials r ON r.credential_id = t.root_credential_id
GROUP BY t.credential_id, t.root_credential_id, t.chain_depth;
