-- Pending sign-ins through a tenant's identity provider, kept in the database so that the
-- provider's callback may reach any replica, not only the one that began the login.
-- A row is found by the SHA-256 of the login's `state` (the state itself, a bearer value
-- the browser carries, is never kept); the nonce, the PKCE verifier, the provider's
-- endpoints and where the browser returns are one blob sealed under the master key and
-- bound to the row (AES-GCM, the tenant and state hash as associated data). No email, no
-- person: a pending login does not know yet who is signing in.
CREATE TABLE oidc_pending (
    state_hash BLOB PRIMARY KEY, tenant TEXT NOT NULL REFERENCES tenants (id),
    sealed_login BLOB NOT NULL, created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL);
-- The per-tenant cap evicts a tenant's oldest; the purge removes every expired one.
CREATE INDEX oidc_pending_tenant ON oidc_pending (tenant, created_at);
CREATE INDEX oidc_pending_expiry ON oidc_pending (expires_at);
