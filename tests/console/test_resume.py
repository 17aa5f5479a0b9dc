"""Form input kept across a sign-in: once, for its own page, never a secret."""

from __future__ import annotations

from gateway.console.resume import TTL_SECONDS, Resumes


def test_harmless_fields_come_back_once_and_secrets_never() -> None:
    resumes = Resumes()
    form = {
        "id": "hr",
        "base_url": "https://acme.example",
        "credential_token": "s3cret",
        "password": "pw",
        "code": "123456",
        "csrf": "x",
        "mapping_toml": "connector = 'afas'",
    }
    token = resumes.keep("/console/t/acme/new-connector", form)
    assert resumes.take(token, "/console/t/other/new-connector") == {}
    kept = resumes.take(token, "/console/t/acme/new-connector")
    assert kept == {
        "id": "hr",
        "base_url": "https://acme.example",
        "mapping_toml": "connector = 'afas'",
    }
    assert resumes.take(token, "/console/t/acme/new-connector") == {}


def test_kept_input_expires() -> None:
    now = [0.0]
    resumes = Resumes(clock=lambda: now[0])
    token = resumes.keep("/p", {"name": "lms"})
    now[0] += TTL_SECONDS + 1
    assert resumes.take(token, "/p") == {}
