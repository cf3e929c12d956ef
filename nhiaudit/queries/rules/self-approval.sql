-- id: self-approval
-- title: Task approved by its requester, its agent, or a non-human
-- severity: high
-- frameworks: ASI09, ASI10, T10, MAESTRO:L6, AI-RMF:GOVERN-3.2, 800-53:AC-5
-- description: The covering approval's approver is the task's requester, the task's agent, or an
--   identity that is not human under [identities] humans: no independent human decided.
-- remediation: Require approval by a different human than the requester; agents and service
--   accounts must never approve.
SELECT source, event_id, credential_id, task_id,
       'Approval ' || approval_id || ' of task ' || task_id || ' was decided by ' || approver
       || CASE WHEN approver = task_requested_by THEN ', who requested the task'
               WHEN approver = agent_id THEN ', the task''s own agent'
               ELSE ', which is not a human identity' END AS message
FROM chains
WHERE task_known AND self_approved
