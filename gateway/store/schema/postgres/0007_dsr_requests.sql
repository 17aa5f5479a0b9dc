-- Data-subject requests (GDPR Art. 12-22) as records: what was asked, by whom (the opaque id
-- of the account that entered it), when it arrived and is due, which keyed ids it is about
-- (a JSON list, often filled only once the person is found), and how it ended. No name, no
-- email, no free text: an outcome is one of a fixed set of codes.
CREATE TABLE dsr_requests (
    id TEXT PRIMARY KEY, tenant TEXT NOT NULL REFERENCES tenants (id),
    kind TEXT NOT NULL, requester TEXT NOT NULL, received_at TIMESTAMPTZ NOT NULL,
    due_at TIMESTAMPTZ NOT NULL, subject_ids TEXT NOT NULL, state TEXT NOT NULL,
    outcome TEXT, closed_at TIMESTAMPTZ, closed_by TEXT);
CREATE INDEX dsr_requests_by_tenant ON dsr_requests (tenant, state, due_at);
