-- The built-in risk catalogue: well-known critical and high actions across AWS, GCP, Azure, Entra,
-- Kubernetes and Okta, in nhiaudit's normalized action names (docs/sources.md), each with its
-- source. It applies unless [risk] builtin = false; a glob of the policy's [risk] that matches an
-- action decides that action's tier instead (so a policy can lower an entry as well as raise it).
-- 60_actions.sql reads it. How to add an entry: one row, its source in the comment above it.
CREATE OR REPLACE TEMP TABLE risk_catalogue AS
SELECT tier, list_position(['low', 'medium', 'high', 'critical'], tier) - 1 AS tier_rank, pattern,
       glob_regex(pattern) AS regex
FROM (VALUES
    -- AWS: stopping or deleting the audit trail. MITRE ATT&CK T1562.008 (Disable or Modify Cloud Logs);
    -- CIS AWS Foundations 3.1 (CloudTrail enabled in all regions).
    ('critical', 'cloudtrail:StopLogging'),
    ('critical', 'cloudtrail:DeleteTrail'),
    ('high', 'cloudtrail:UpdateTrail'),
    ('high', 'cloudtrail:PutEventSelectors'),
    -- AWS: leaving the organization escapes its SCPs and central logging. ATT&CK T1666 (Modify Cloud
    -- Resource Hierarchy); AWS Organizations "Leaving an organization" docs.
    ('critical', 'organizations:LeaveOrganization'),
    ('high', 'organizations:DeleteOrganization'),
    ('high', 'organizations:DetachPolicy'),
    -- AWS: new long-term credentials and login profiles for IAM users. ATT&CK T1098.001 (Additional
    -- Cloud Credentials); CIS AWS Foundations 1.x (access keys, console passwords).
    ('critical', 'iam:CreateAccessKey'),
    ('high', 'iam:CreateLoginProfile'),
    ('high', 'iam:UpdateLoginProfile'),
    ('high', 'iam:CreateUser'),
    -- AWS: granting policies (AdministratorAccess among them) and trust changes. ATT&CK T1098.003
    -- (Additional Cloud Roles); IAM User Guide, "Privilege escalation" permissions.
    ('high', 'iam:Attach*Policy'),
    ('high', 'iam:Put*Policy'),
    ('high', 'iam:CreatePolicyVersion'),
    ('high', 'iam:SetDefaultPolicyVersion'),
    ('high', 'iam:UpdateAssumeRolePolicy'),
    ('high', 'iam:AddUserToGroup'),
    ('high', 'iam:PassRole'),
    -- AWS: turning off detection. ATT&CK T1562.001/.008; Security Hub GuardDuty.1, Config.1.
    ('critical', 'guardduty:DeleteDetector'),
    ('high', 'guardduty:UpdateDetector'),
    ('high', 'config:StopConfigurationRecorder'),
    ('high', 'config:DeleteConfigurationRecorder'),
    -- AWS: destroying keys (and what they encrypt). ATT&CK T1485 (Data Destruction). Reading secrets is
    -- left to the policy: workloads do it all day, so it would drown a first run.
    ('critical', 'kms:ScheduleKeyDeletion'),
    ('high', 'kms:DisableKey'),
    -- AWS: running commands on instances and sharing snapshots. ATT&CK T1651 (Cloud Administration
    -- Command), T1537 (Transfer Data to Cloud Account).
    ('high', 'ssm:SendCommand'),
    ('high', 'ssm:StartSession'),
    ('high', 'ec2:ModifySnapshotAttribute'),
    ('high', 'ec2:ModifyImageAttribute'),
    ('high', 'ec2-instance-connect:Send*'),
    -- GCP: service account keys and IAM policy changes. ATT&CK T1098.001, T1098.003; Google Cloud
    -- "Best practices for managing service account keys"; CIS GCP 1.4/1.6.
    ('critical', 'iam:*CreateServiceAccountKey'),
    ('high', 'iam:*UploadServiceAccountKey'),
    ('high', '*:*SetIamPolicy'),
    ('high', 'iamcredentials:*GenerateAccessToken'),
    -- GCP: turning off audit logs or sinks. ATT&CK T1562.008; CIS GCP 2.1/2.2.
    ('critical', 'logging:*DeleteSink'),
    ('high', 'logging:*UpdateSink'),
    -- Azure: role assignments and diagnostic settings. ATT&CK T1098.003, T1562.008; Azure built-in
    -- roles docs (Microsoft.Authorization/roleAssignments/write), Azure Monitor diagnostic settings.
    ('high', 'azure:microsoft.authorization/roleassignments/write'),
    ('high', 'azure:microsoft.authorization/roledefinitions/write'),
    ('critical', 'azure:microsoft.insights/diagnosticsettings/delete'),
    ('high', 'azure:microsoft.keyvault/vaults/secrets/*'),
    ('high', 'azure:*/listkeys/action'),
    -- Entra: credentials added to apps and service principals, role assignments. ATT&CK T1098.001;
    -- Microsoft "Investigate malicious actions in consent grants / app credentials" playbooks.
    ('critical', 'entra:add service principal credentials'),
    ('critical', 'entra:update application*certificates and secrets management'),
    ('high', 'entra:add member to role*'),
    ('high', 'entra:add app role assignment*'),
    -- Kubernetes: cluster-wide bindings, secrets, exec and token minting. ATT&CK T1098.006 (Additional
    -- Container Cluster Roles), T1609 (Container Administration Command); Kubernetes "RBAC good practices".
    ('critical', 'k8s:create:clusterrolebindings'),
    ('critical', 'k8s:update:clusterrolebindings'),
    ('critical', 'k8s:patch:clusterrolebindings'),
    ('high', 'k8s:create:rolebindings'),
    ('high', 'k8s:*:clusterroles'),
    ('high', 'k8s:create:pods/exec'),
    ('high', 'k8s:create:serviceaccounts/token'),
    -- Okta: API tokens and admin privileges. ATT&CK T1098.001/.003; Okta "Security best practices for
    -- API tokens" and the user.account.privilege.grant event type.
    ('critical', 'okta:user.account.privilege.grant'),
    ('high', 'okta:system.api_token.create'),
    ('high', 'okta:policy.lifecycle.deactivate'),
    ('high', 'okta:application.policy.sign_on.deactivate')
) AS t(tier, pattern);
