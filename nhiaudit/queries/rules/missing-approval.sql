-- id: missing-approval
-- title: Consequential action without any approval record
-- severity: high
-- frameworks: ASI03, ASI09, T10, MAESTRO:L6, AI-RMF:MAP-3.5, AI-RMF:GOVERN-3.2, 800-53:CM-3, 800-53:AC-6
-- description: The action's tier requires approval (approval.required_from), its task is known,
--   and the task has no approval record at all. Not when a credential on the chain proves a gate
--   was passed (approval implied, record missing: the verdict is unknown and trace says why).
-- remediation: Route tasks of this tier through the approval workflow before the orchestrator vends
--   credentials, or lower the action's tier in [risk] if it is not consequential.
SELECT source, event_id, credential_id, task_id,
       tier || '-tier ' || coalesce(action, '?') || ' in task ' || task_id || ' (agent '
       || coalesce(agent_id, '?') || ') has no approval record' AS message
FROM chains
WHERE task_known AND approval_required AND approval_records = 0 AND approval_implied_by IS NULL
