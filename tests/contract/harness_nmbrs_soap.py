"""Nmbrs's legacy SOAP API (`api = "soap"`) through the shared contract suite: the same
emulator, people and mapping as `harness_nmbrs`, the SOAP endpoints of it."""

from __future__ import annotations

from tests.contract.harness_nmbrs import NmbrsSoapHarness

HARNESS = NmbrsSoapHarness()
