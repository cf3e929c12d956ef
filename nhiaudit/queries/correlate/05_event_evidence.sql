-- event_evidence: the one stored copy of each event that is its evidence, and where it lives.
-- The same event id may be stored more than once (one source writes it in two files, or a record
-- repeats an id); the first file ingested is the evidence, and path, file hash and position break
-- ties, so it is the same copy on every run. This is the only place that order is written: the
-- chain_links view, the findings' evidence pointers and `nhiaudit trace` all read this table.
-- Sorted by (source, event_id): zone maps prune a point lookup to a few row groups.
CREATE OR REPLACE TABLE event_evidence AS
SELECT e.source, e.event_id, ef.path, e.file_sha256, e.record_index, coalesce(e.line, 1) AS line,
       e.category, e.occurred_at, e.actor_id, e.credential_id, e.task_id, e.action, e.resource, e.outcome
FROM events e JOIN evidence_files ef ON ef.sha256 = e.file_sha256
QUALIFY row_number() OVER (PARTITION BY e.source, e.event_id
                           ORDER BY ef.ingested_at, ef.path, e.file_sha256, e.record_index) = 1
ORDER BY e.source, e.event_id;
