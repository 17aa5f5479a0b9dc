"""The record of processing (GDPR Art. 30(2)) for a fixture tenant, over the API (JSON and
Markdown) and the CLI: what it states follows the tenant's connectors, authorisations,
consumers and this gateway's settings, and it is anchored in the tenant's ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.cli.main import main
from gateway.runtime.services import Services
from tests.api.conftest import Api, make_consumer, setup_feed

T = "/admin/v1/tenants/acme"
R = T + "/reports/processing-record"


async def _fixture_tenant(api: Api) -> str:
    """acme: connector `hr` (afas) authorised for "training records", a consumer `lms`, and
    a second connector `crm` never authorised."""
    _, instruction = await setup_feed(api)
    reply = await api.post(
        f"{T}/connectors",
        {"id": "crm", "type": "hubspot", "base_url": "http://127.0.0.1:9/",
         "credentials": {"token": "x" * 20}, "mapping": "hubspot"},
    )  # fmt: skip
    assert reply.status == 201, reply.body
    return instruction


async def test_the_record_states_what_the_tenant_authorised(api: Api) -> None:
    instruction = await _fixture_tenant(api)
    reply = await api.get(R)
    assert reply.status == 200, reply.body
    record: dict[str, Any] = reply.body
    assert record["controller"]["tenant"] == "acme" and record["controller"]["name"] == "acme BV"
    by_connector = {a["connector"]: a for a in record["activities"]}
    hr, crm = by_connector["hr"], by_connector["crm"]
    assert hr["state"] == "authorised" and crm["state"] == "not authorised"
    assert [i["id"] for i in hr["instructions"]] == [instruction]
    assert hr["instructions"][0]["purpose"] == "training records"
    assert crm["instructions"] == []
    # The categories are those of the active authorisations only.
    assert record["data_categories"] == sorted(set(hr["instructions"][0]["fields"].values()))
    assert [r["name"] for r in record["recipients"]] == ["lms"]
    made = await api.post("/admin/v1/tenants/acme/destinations",
                          {"url": "https://lms.example.com/hooks?token=abc"})  # fmt: skip
    assert made.status == 201, made.body
    record = (await api.get(R)).body
    assert [(r["name"], r["kind"]) for r in record["recipients"]] == [
        ("lms", "pull feed consumer"), ("lms.example.com", "webhook destination")]  # fmt: skip
    assert "token=abc" not in str(record)
    assert record["third_country_transfers"] == "none"
    assert record["processor"] == {"name": None, "contact": None, "dpo_contact": None}
    assert record["ledger_anchor"]["origin"].endswith("/acme")
    assert any("AES-256-GCM" in m for m in record["security_measures"])
    assert not any("HTTPS" in m for m in record["security_measures"])  # not configured here


async def test_the_markdown_record_has_the_article_30_headings(api: Api) -> None:
    await _fixture_tenant(api)
    reply = await api.get(R, params={"format": "markdown"})
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/markdown")
    text = reply.text
    for heading in ("## Processor", "## Controller", "## Categories of processing",
                    "## Categories of personal data", "## Recipients",
                    "## Transfers to third countries", "## Security measures (Art. 32)",
                    "## Retention"):  # fmt: skip
        assert heading in text
    assert '"training records"' in text and "Connector `crm` (hubspot): not authorised" in text
    assert "(not configured: set processor_name)" in text
    assert (await api.get(R, params={"format": "pdf"})).status == 422
    assert (await api.get("/admin/v1/tenants/nobody/reports/processing-record")).status in (
        403, 404,
    )  # fmt: skip


async def test_revoking_and_adding_a_consumer_show_in_the_next_record(api: Api) -> None:
    instruction = await _fixture_tenant(api)
    revoked = await api.delete(f"{T}/connectors/hr/instructions/{instruction}")
    assert revoked.status == 200, revoked.body
    await make_consumer(api)
    record = (await api.get(R)).body
    hr = next(a for a in record["activities"] if a["connector"] == "hr")
    assert hr["state"] == "not authorised" and record["data_categories"] == []
    assert [r["name"] for r in record["recipients"]] == ["lms", "lms"]


async def test_the_cli_prints_the_record_with_the_configured_processor(
    api: Api, services: Services, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _fixture_tenant(api)
    config = tmp_path / "sluis.toml"
    config.write_text(
        f'data_dir = "{services.settings.data_dir}"\n'
        'processor_name = "Leerplatform BV"\n'
        'processor_contact = "privacy@leerplatform.example"\n'
        'public_url = "https://sluis.leerplatform.example"\n',
        encoding="utf-8",
    )
    args = ["report", "processing-record", "--config", str(config), "--tenant", "acme"]
    assert main([*args, "--format", "json"]) == 0
    record = orjson.loads(capsys.readouterr().out)
    assert record["processor"]["name"] == "Leerplatform BV"
    assert any("HTTPS" in m for m in record["security_measures"])
    assert main(args) == 0
    assert "- Name: Leerplatform BV" in capsys.readouterr().out
    assert main([*args[:-1], "nobody"]) == 2
    assert "no tenant nobody" in capsys.readouterr().err
    empty = ["report", "processing-record", "--data-dir", str(tmp_path / "none"),
             "--tenant", "acme"]  # fmt: skip
    assert main(empty) == 2 and not (tmp_path / "none").exists()
