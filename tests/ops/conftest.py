"""The API's fixtures (real services on SQLite, a real aiohttp test server) for ops tests."""

from tests.api.conftest import api, people, services

__all__ = ["api", "people", "services"]
