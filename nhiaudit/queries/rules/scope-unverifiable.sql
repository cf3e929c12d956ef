-- id: scope-unverifiable
-- title: Scope restricts resources but the action's resource is not in the evidence
-- severity: medium
-- frameworks: NHI5:2025, ASI03, T3, T8, MAESTRO:L6, AI-RMF:MEASURE-2.7, 800-53:AC-6, 800-53:AU-3
-- description: The covering approval's scope or the agent's standing scope in [[agents]] restricts
--   resources, and the log names no resource for the action (the call's parameters are not logged,
--   or no source maps them), so it can be proven neither in nor out of scope.
-- remediation: Log the resource (CloudTrail data events, request parameters, gateway paths) or map
--   the call's parameters in the source's resource table; until then review the action by hand.
SELECT source, event_id, credential_id, task_id,
       coalesce(action, '?') || ' names no resource in the evidence, but '
       || CASE WHEN approval_id IS NOT NULL AND has_scope AND in_approval_scope IS NULL
                    AND in_agent_scope IS NULL AND agent_scoped
               THEN 'approval ' || approval_id || '''s scope and agent ' || agent_id || '''s standing scope restrict'
               WHEN approval_id IS NOT NULL AND has_scope AND in_approval_scope IS NULL
               THEN 'the scope of approval ' || approval_id || ' restricts'
               ELSE 'agent ' || agent_id || '''s standing scope restricts' END
       || ' resources: in or out of scope is unknown' AS message
FROM (
    SELECT c.*, EXISTS (SELECT 1 FROM policy_agents pag WHERE pag.agent_id = c.agent_id) AS agent_scoped
    FROM chains c
    WHERE c.task_known
)
-- in_*_scope is NULL both without a scope and for an unverifiable one: has_scope / policy_agents tell.
WHERE (approval_id IS NOT NULL AND has_scope AND in_approval_scope IS NULL)
   OR (agent_scoped AND in_agent_scope IS NULL)
