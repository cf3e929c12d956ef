-- id: long-lived-credential
-- title: Non-human identity acting with a long-term credential
-- severity: medium
-- frameworks: NHI7:2025, ASI03, T3, MAESTRO:L4, AI-RMF:MEASURE-2.7, 800-53:IA-5, 800-53:AC-2
-- description: A non-human actor acts with a long-term credential: an AWS AKIA access key, a Vault
--   token issued without TTL, or a credential listed in credentials.static.
-- remediation: Replace the static credential with short-lived, task-scoped credentials (STS, Vault
--   dynamic secrets, workload identity federation) and rotate or delete the long-term one.
SELECT source, event_id, credential_id, task_id,
       coalesce(actor_id, '?') || ' used long-term credential ' || credential_id
       || ' (' || coalesce(credential_type, 'static') || ') for ' || coalesce(action, '?') AS message
FROM chains
WHERE credential_long_term
