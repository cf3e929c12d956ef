-- id: credential-outlived-task
-- title: Credential acted after its task ended
-- severity: medium
-- frameworks: NHI1:2025, NHI7:2025, ASI03, T3, MAESTRO:L4, AI-RMF:MANAGE-2.4, 800-53:AC-2, 800-53:IA-5
-- description: The credential acted after its task's end plus credentials.revoke_grace: the
--   credential was not revoked (or expired) with the task.
-- remediation: Revoke task credentials when the task ends (Vault lease revoke, short STS
--   DurationSeconds); find who used the credential after the task.
SELECT source, event_id, credential_id, task_id,
       'Credential ' || coalesce(credential_id, '?') || ' did ' || coalesce(action, '?') || ' at '
       || strftime(occurred_at, '%Y-%m-%dT%H:%M:%SZ') || ', after task ' || task_id || ' ended at '
       || strftime(task_ended_at, '%Y-%m-%dT%H:%M:%SZ') AS message
FROM chains
WHERE task_known AND outlived_task
