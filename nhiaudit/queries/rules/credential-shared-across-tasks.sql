-- id: credential-shared-across-tasks
-- title: One credential acts for several tasks or agents
-- severity: high
-- frameworks: NHI9:2025, ASI03, T8, T9, MAESTRO:L4, AI-RMF:MEASURE-2.8, 800-53:IA-4, 800-53:AC-2
-- description: The same credential (a role session key, a Vault token, a gateway API key) acts for
--   two or more task instances or agents, so its actions cannot be attributed to one task.
-- remediation: Issue one credential per task instance and agent; replace shared gateway keys with
--   per-agent credentials or token exchange.
SELECT source, event_id, credential_id, task_id,
       'Credential ' || credential_id || ' acts for ' || credential_task_count || ' task(s) ('
       || array_to_string(list_slice(coalesce(tasks_of_credential, []), 1, 5), ', ') || ') and '
       || credential_agent_count || ' agent(s) ('
       || array_to_string(list_slice(coalesce(agents_of_credential, []), 1, 5), ', ') || ')' AS message
FROM chains
WHERE credential_id IS NOT NULL AND (credential_task_count >= 2 OR credential_agent_count >= 2)
