-- id: approval-after-action
-- title: Approval decided after the action
-- severity: high
-- frameworks: ASI09, T8, T10, MAESTRO:L6, AI-RMF:MAP-3.5, 800-53:CM-3, 800-53:AU-10
-- description: The covering approval was decided after the action ran, beyond the allowed clock
--   skew (correlation.clock_skew): the action was approved retroactively, if at all.
-- remediation: Block credential vending until the approval is recorded; review retroactive
--   approvals as exceptions.
SELECT source, event_id, credential_id, task_id,
       coalesce(action, '?') || ' ran at ' || strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ')
       || ' but approval ' || approval_id || ' was decided at '
       || strftime(decided_at, '%Y-%m-%dT%H:%M:%SZ') AS message
FROM chains
WHERE task_known AND approval_late
