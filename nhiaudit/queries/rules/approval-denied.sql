-- id: approval-denied
-- title: Action ran although its approval was denied
-- severity: critical
-- frameworks: ASI03, ASI10, T3, T10, MAESTRO:L6, AI-RMF:MANAGE-2.4, 800-53:AC-3, 800-53:CM-3
-- description: The task has approval records and all of them are denials, or the latest decision
--   taken before the action is a denial that withdrew an earlier approval; the action ran anyway.
-- remediation: Treat as an incident: revoke the task's credentials, find how the agent obtained a
--   credential for a denied task, and make credential vending check the decision.
SELECT source, event_id, credential_id, task_id,
       coalesce(action, '?') || ' ran in task ' || task_id || ' whose approval was denied'
       || CASE WHEN approved_records = 0 THEN ' (' || denied_records || ' denial(s), no approval)'
               ELSE ' (decision ' || effective_approval_id || ' denied it before the action)' END AS message
FROM chains
WHERE task_known AND approval_records > 0
  -- A denial withdrew an approval only when one was decided before the action: then the covering
  -- approval is decided before it (not late). A denial followed by a late approval is
  -- approval-after-action, not a withdrawn approval.
  AND (approved_records = 0 OR (effective_decision = 'denied' AND NOT approval_late))
