-- id: unprotected-role-path
-- title: Protected role assumed without its protected environment
-- severity: high
-- frameworks: NHI5:2025, NHI9:2025, ASI03, T3, MAESTRO:L4, AI-RMF:GOVERN-1.4, 800-53:AC-6, 800-53:CM-5
-- description: Policy maps the role to a protected GitHub environment ([approval] protected_roles),
--   and a GitHub OIDC token whose subject does not name that environment (another environment, a
--   branch, a tag, a pull request) assumed it: a workflow reached the role without passing the
--   environment's required reviewers. Fires on every action of such a credential.
-- remediation: Restrict the role's trust policy to token.actions.githubusercontent.com:sub =
--   repo:OWNER/REPO:environment:<name>, and review who changed it and which runs used it.
SELECT source, event_id, credential_id, task_id,
       coalesce(action, '?') || ' ran with role ' || coalesce(protected_role, '?') || ', which only environment '
       || protected_environment || ' may assume, from a GitHub OIDC token whose subject does not name it (issuance '
       || coalesce(protected_issuance_source || ':' || protected_issuance_event_id, '?') || ')' AS message
FROM chains
WHERE protected_environment IS NOT NULL
