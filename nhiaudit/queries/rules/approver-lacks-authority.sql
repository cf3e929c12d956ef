-- id: approver-lacks-authority
-- title: Approver had no authority for the action's tier
-- severity: high
-- frameworks: ASI09, T10, MAESTRO:L6, AI-RMF:GOVERN-3.2, 800-53:AC-5, 800-53:AC-6
-- description: At decision time the approver held no role grant that [authority] lists for the
--   action's tier (grants are valid from valid_from until valid_to).
-- remediation: Have the approval re-done by someone holding a listed role, or fix the role grants
--   or the [authority] lists if they are wrong.
SELECT source, event_id, credential_id, task_id,
       approver || ' approved ' || tier || '-tier ' || coalesce(action, '?') || ' (approval '
       || approval_id || ') holding '
       || CASE WHEN len(coalesce(roles_held, [])) = 0 THEN 'no role grant'
               ELSE 'only ' || array_to_string(roles_held, ', ') END
       || ' at decision time' AS message
FROM chains
WHERE task_known AND approval_id IS NOT NULL AND NOT authorized
  AND EXISTS (SELECT 1 FROM policy_authority)
