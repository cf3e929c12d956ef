-- id: broken-delegation-chain
-- title: Temporary credential with no issuance in the evidence
-- severity: high
-- frameworks: ASI03, T8, T9, MAESTRO:L6, AI-RMF:MEASURE-2.8, 800-53:AU-10, 800-53:IA-5
-- description: A temporary credential on the action's chain has no issuance event in the evidence
--   and its holder is not a declared broker: nobody can say who delegated it, from what.
-- remediation: Ingest the issuing logs (CloudTrail in every region and account, Vault audit, IdP
--   events); if they are complete, treat the credential as stolen or forged.
SELECT source, event_id, credential_id, task_id,
       'Temporary credential ' || broken_credential_id
       || CASE WHEN broken_credential_id = credential_id THEN '' ELSE ' (on the chain of ' || credential_id || ')' END
       || ' has no issuance in the evidence and its holder is not a broker' AS message
FROM chains
WHERE broken_credential_id IS NOT NULL
