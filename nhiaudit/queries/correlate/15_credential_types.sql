-- Every credential type a source may write (events.credential_type and
-- details.parent_credential_type), declared once. Ingest installs this file too: it refuses a type
-- a source writes that is not listed here (nhiaudit.ingest, an nhiaudit bug), and the sources type
-- AWS keys with aws_key_type(). Correlation reads a credential's kind from here (20_credentials.sql):
--   temporary: a chain must explain it with an issuance in the evidence, else the chain is broken
--              (broken-delegation-chain) unless its holder is a broker;
--   long_term: it does not expire by itself (long-lived-credential). A credential of another type
--              is long-term too when its issuance says so (details.long_term: a Vault token without
--              TTL, a GCP key created in the evidence) or the policy lists it ([credentials] static).
-- How to add a type: add its row here, then write it from the source (docs/sources.md names it).
CREATE OR REPLACE TEMP TABLE credential_types AS
SELECT * FROM (VALUES
    -- AWS (cloudtrail, apigateway, vault, k8s_audit): the key id says which (aws_key_type below)
    ('aws_long_term_key', false, true, 'AWS access key AKIA…: an IAM user''s (or the root user''s) key'),
    ('aws_temporary_key', true, false, 'AWS access key ASIA…: STS session credentials'),
    ('aws_access_key', false, false, 'AWS access key id of another form (a documentation placeholder, a redacted key)'),
    ('aws_identity_center_credential', false, false, 'IAM Identity Center user''s bearer credential (userIdentity.credentialId), no access key'),
    ('apigw_iam_principal', false, false, 'API Gateway caller without an access key logged: its IAM user, not a secret'),
    -- HashiCorp Vault
    ('vault_token', true, false, 'Vault token, by its accessor as logged (HMAC or plain)'),
    ('kmip_client_cert', false, false, 'client certificate a KMIP client authenticated to Vault''s KMIP secrets engine with, by its serial number (kmip-cert:<serial>)'),
    -- gateways (kong, envoy)
    ('kong_credential', false, false, 'Kong credential record (key-auth key, JWT or OAuth2 credential) that authenticated a call'),
    ('jwt', false, false, 'JWT as a gateway sees it (Envoy jwt_jti); issued by an IdP, it takes the issuance''s type when that is in the evidence'),
    ('jwt_subject', false, false, 'subject of a JWT whose jti is not logged: a principal, not one token'),
    ('mtls_peer_certificate', false, false, 'client certificate of an mTLS call, by its SPIFFE id'),
    ('mcp_gateway_key', false, false, 'API key an MCP gateway authenticated a client with, by the key id it logs (never the key)'),
    -- OAuth and OIDC identity providers (auth0, keycloak, envoy)
    ('oauth_access_token', true, false, 'access token an IdP issued (Auth0 log id, Keycloak token_id)'),
    ('oauth_refresh_token', true, false, 'refresh token (Keycloak refresh_token_id)'),
    ('oauth_token', true, false, 'token a Keycloak revocation names, of unknown kind'),
    ('oauth_client', false, false, 'OAuth client id: an application, not a token'),
    ('oauth_actor', false, false, 'RFC 8693 actor (act.sub): the delegate principal; one nothing else knows breaks the chain (30_ancestry.sql)'),
    -- Okta
    ('okta_api_token', false, true, 'Okta API token (SSWS), by its id 00T…: acts as its creator until revoked'),
    ('okta_session', false, false, 'Okta session, by authenticationContext.externalSessionId'),
    ('saml_assertion', true, false, 'SAML assertion an IdP issued at an SSO to a SAML app (Okta logs no assertion id: okta-saml:<event uuid>)'),
    -- Microsoft Entra and Azure
    ('azure_access_token', true, false, 'Entra access token, by uniqueTokenIdentifier (the Activity Log''s uti claim)'),
    ('azure_app_credential', false, false, 'client secret or certificate of an app registration, signing in for a token'),
    -- Google Cloud
    ('gcp_sa_key', false, true, 'user-managed service account key, by serviceAccountKeyName: long-term until deleted'),
    ('gcp_sa_token', true, false, 'access token minted for a service account (iamcredentials, impersonation)'),
    ('gcp_principal', false, false, 'a caller''s own credential, not individually identified by GCP'),
    -- Kubernetes
    ('k8s_bound_sa_token', true, false, 'bound service account token, by its JTI (credential-id annotation)'),
    ('k8s_sa_token', true, false, 'service account token of a service account whose token id is not logged'),
    ('x509_client_cert', false, false, 'client certificate (kubelet, admin), by its SHA-256')
) AS t(credential_type, temporary, long_term, description);

-- An AWS access key id says its kind in its prefix (IAM User Guide, "Unique identifiers": AKIA an
-- access key, ASIA temporary STS credentials); NULL for any other id.
CREATE OR REPLACE TEMP MACRO aws_key_type(key_id) AS
    CASE WHEN key_id LIKE 'AKIA%' THEN 'aws_long_term_key' WHEN key_id LIKE 'ASIA%' THEN 'aws_temporary_key' END;
