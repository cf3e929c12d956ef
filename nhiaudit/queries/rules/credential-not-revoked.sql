-- id: credential-not-revoked
-- title: Task credential still valid after its task ended
-- severity: medium
-- frameworks: NHI1:2025, NHI7:2025, ASI03, T3, MAESTRO:L4, AI-RMF:MANAGE-2.4, 800-53:AC-2, 800-53:IA-5
-- description: A credential issued for a task stayed valid more than credentials.revoke_grace after
--   the task ended, and the evidence holds no revocation: its expiry (an STS session, a Vault lease,
--   a Teleport certificate) outlasts the task, or it has none. Fires once per credential, on its
--   issuance, whether or not it was used afterwards (credential-outlived-task says when it was).
-- remediation: Revoke task credentials when the task ends (Vault lease or token revoke), or issue
--   them for no longer than the task (STS DurationSeconds, certificate TTL).
SELECT c.issuance_source AS source, c.issuance_event_id AS event_id, c.credential_id, c.task_id,
       'Credential ' || c.credential_id || ' of task ' || c.task_id || ' was still valid '
       || CASE WHEN c.expires_at IS NULL THEN 'with no expiry'
               ELSE 'until ' || strftime(c.expires_at, '%Y-%m-%dT%H:%M:%SZ') END
       || ' after the task ended at ' || strftime(t.ended_at, '%Y-%m-%dT%H:%M:%SZ')
       || ', and no revocation is in the evidence'
       || CASE WHEN c.revoked_at IS NOT NULL
               THEN ' before ' || strftime(c.revoked_at, '%Y-%m-%dT%H:%M:%SZ') ELSE '' END AS message
FROM credentials c
JOIN tasks t ON t.task_id = c.task_id
CROSS JOIN policy_params p
WHERE c.issuance_event_id IS NOT NULL
  AND t.ended_at IS NOT NULL
  AND (c.expires_at IS NULL OR c.expires_at > t.ended_at + to_seconds(p.revoke_grace_s))
  AND (c.revoked_at IS NULL OR c.revoked_at > t.ended_at + to_seconds(p.revoke_grace_s))
