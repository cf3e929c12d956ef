-- id: unknown-task
-- title: Task id that no task record or trace knows
-- severity: medium
-- frameworks: ASI03, T8, T9, MAESTRO:L6, AI-RMF:MEASURE-2.8, 800-53:AU-10
-- description: The action's chain carries a task id, but no provenance task record and no
--   invoke_agent span knows it. The id may be forged, mistyped, or from a system whose records
--   were not ingested.
-- remediation: Ingest the orchestrator's task records or agent traces for this period; if the id
--   is genuinely unknown, treat the credential as compromised and investigate who minted it.
SELECT source, event_id, credential_id, task_id,
       'Unknown task ' || task_id || ' (linked by ' || coalesce(task_link, '?') || ') for '
       || coalesce(action, '?') || ': no task record or agent trace has this id' AS message
FROM chains
WHERE task_id IS NOT NULL AND NOT task_known
