-- id: agent-used-human-identity
-- title: Task-linked action under a human identity
-- severity: high
-- frameworks: ASI03, T9, MAESTRO:L7, AI-RMF:GOVERN-3.2, 800-53:AC-2, 800-53:IA-2
-- description: An action linked to an agent task ran under a human identity: a credential on its
--   chain belongs to a human ([identities] humans), so the human's authority was lent to the agent
--   and the audit trail attributes the agent's act to the person.
-- remediation: Give the agent its own workload identity; never vend agent credentials from a
--   human's keys or session.
SELECT source, event_id, credential_id, task_id,
       coalesce(action, '?') || ' in task ' || task_id || ' ran on a chain through human identity '
       || human_holder || ' (credential ' || human_credential_id || ')' AS message
FROM chains
WHERE task_id IS NOT NULL AND human_holder IS NOT NULL
