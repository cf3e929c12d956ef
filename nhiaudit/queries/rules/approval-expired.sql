-- id: approval-expired
-- title: Action ran after its approval expired
-- severity: medium
-- frameworks: ASI03, T3, MAESTRO:L6, AI-RMF:MANAGE-2.4, 800-53:AC-2, 800-53:CM-3
-- description: The action ran after the covering approval's expires_at, or more than
--   approval.max_age after the approval was decided.
-- remediation: Re-approve long-running tasks, or shorten the credentials vended for them so they
--   cannot outlive the approval.
SELECT source, event_id, credential_id, task_id,
       coalesce(action, '?') || ' ran at ' || strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ')
       || ' after approval ' || approval_id
       || CASE WHEN approval_expires_at IS NOT NULL AND occurred_at > approval_expires_at
               THEN ' expired at ' || strftime(approval_expires_at, '%Y-%m-%dT%H:%M:%SZ')
               ELSE ' (decided ' || strftime(decided_at, '%Y-%m-%dT%H:%M:%SZ') || ') exceeded approval.max_age' END
           AS message
FROM chains
WHERE task_known AND approval_expired AND NOT approval_late
