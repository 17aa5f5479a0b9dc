"""`sluis emulator sftp` as a real process, and `sluis demo --sources sftp`.

The emulator's printout is all a user gets: the base URL, the user name and password, the
private key's file, the host key to pin and an `sftp` command. A connector configured from
exactly that syncs every person; the demo connects an SFTP source through the gateway's
own API and reports what passed and what the door cut off.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from connectors.base import ConnectorConfig, ConnectorError
from connectors.sftp.client import SftpConnector
from gateway.cli import demo
from gateway.minimise.mapping import load_mapping
from gateway.minimise.projector import Projector
from mappings import bundled_mapping
from tests.contract.suite import sync

REPO = Path(__file__).resolve().parents[1]


async def test_the_standalone_emulator_prints_all_a_connector_needs() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway.cli.main", "emulator", "sftp", "--employees", "25",
        cwd=REPO, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    printed: dict[str, str] = {}
    try:
        while "control" not in printed:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "the emulator ended before printing how to connect"
            key, sep, value = line.partition(": ")
            if sep:
                printed[key] = value.strip()
        assert printed["base_url"].startswith("sftp://127.0.0.1:")
        assert printed["host_key"].startswith("SHA256:")
        assert printed["try"].startswith("sftp -P ")
        key_file = Path(printed["private_key"].removeprefix("written to "))
        assert key_file.stat().st_mode & 0o077 == 0, "the key file is readable by others"
        credentials = {
            "username": printed["username"],
            "private_key": key_file.read_text(),
            "host_key": printed["host_key"],
        }
        config = ConnectorConfig(
            type="sftp", base_url=printed["base_url"], credentials=credentials,
            settings={"settle_seconds": 0},
        )  # fmt: skip
        projector = Projector(load_mapping(bundled_mapping("sftp")), b"k" * 32)
        async with aiohttp.ClientSession() as session:
            run = await sync(SftpConnector(config, projector, session))
            assert run.fetched == 25
            assert run.rejected == []
            wrong = {**credentials, "host_key": "SHA256:" + "A" * 43}
            changed = ConnectorConfig(
                type="sftp", base_url=config.base_url, credentials=wrong, settings=config.settings
            )
            with pytest.raises(ConnectorError):
                await sync(SftpConnector(changed, projector, session))
    finally:
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0


async def test_the_demo_connects_an_sftp_source(tmp_path: Path) -> None:
    runner = demo.run_demo(employees=60, data_dir=tmp_path / "demo", sources=("sftp",))
    result = await anext(runner)
    try:
        report = demo.format_report(result)
    finally:
        await runner.aclose()
    assert list(result.connectors) == ["sftp"]
    counts = result.connectors["sftp"]["counts"]
    assert counts["fetched"] == counts["passed"] == counts["upserted"] == 60
    assert {"BSN", "IBAN", "Bruto salaris"} <= result.connectors["sftp"]["dropped"]
    assert result.verified
    assert "sftp     fetched     60" in report


def test_demo_sources_are_checked() -> None:
    assert demo._sources("sftp, afas") == ("sftp", "afas")
    with pytest.raises(Exception, match="unknown source type"):
        demo._sources("scim")
