-- id: out-of-scope-action
-- title: Action outside the approved or standing scope
-- severity: high
-- frameworks: NHI5:2025, ASI02, ASI03, T2, T3, MAESTRO:L3, AI-RMF:MANAGE-2.4, 800-53:AC-6
-- description: The action or its resource lies outside the covering approval's scope (when it has
--   one) or outside the agent's standing scope in [[agents]]. A null resource is judged on the
--   action alone.
-- remediation: Scope the task's credentials to the approved actions and resources (session policy,
--   Vault policy); investigate why the agent left its scope.
SELECT source, event_id, credential_id, task_id,
       coalesce(action, '?') || ' on ' || coalesce(resource, '(no resource)') || ' is outside '
       || CASE WHEN in_approval_scope = false AND in_agent_scope = false
               THEN 'approval ' || approval_id || '''s scope and agent ' || agent_id || '''s standing scope'
               WHEN in_approval_scope = false THEN 'the scope of approval ' || approval_id
               ELSE 'agent ' || agent_id || '''s standing scope' END AS message
FROM chains
WHERE task_known AND (in_approval_scope = false OR in_agent_scope = false)
