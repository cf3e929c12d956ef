-- id: scope-unverifiable
-- title: Scope restricts resources but the action's resource is not in the evidence
-- severity: medium
-- frameworks: NHI5:2025, ASI03, T3, T8, MAESTRO:L6, AI-RMF:MEASURE-2.7, 800-53:AC-6, 800-53:AU-3
-- description: The covering approval's scope or the agent's standing scope in [[agents]] restricts
--   resources, and the log names no resource for the action (the call's parameters are not logged,
--   or no source maps them), so it can be proven neither in nor out of scope. Its verdict is
--   unknown, never approved: a missing resource is not taken as in scope.
-- remediation: Log the resource (CloudTrail data events, request parameters, gateway paths) or map
--   the call's parameters in the source's resource table; until then review the action by hand.
SELECT source, event_id, credential_id, task_id,
       coalesce(action, '?') || ' names no resource in the evidence, but '
       || CASE WHEN approval_scope_unverifiable AND agent_scope_unverifiable
               THEN 'approval ' || approval_id || '''s scope and agent ' || agent_id || '''s standing scope restrict'
               WHEN approval_scope_unverifiable THEN 'the scope of approval ' || approval_id || ' restricts'
               ELSE 'agent ' || agent_id || '''s standing scope restricts' END
       || ' resources: in or out of scope is unknown' AS message
FROM chains
WHERE task_known AND (approval_scope_unverifiable OR agent_scope_unverifiable)
