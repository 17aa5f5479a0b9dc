"""Bundled minimisation mappings, one TOML file per connector type.

They ship inside the package so that an installed `sluis` (not only a checkout) can run the
demo and offer defaults; a customer can always point a connector at their own file.
"""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def bundled_mapping(connector_type: str) -> Path:
    """Path of the bundled mapping for a connector type; FileNotFoundError if there is none."""
    path = _HERE / f"{connector_type}.toml"
    if not path.is_file() or path.parent != _HERE:
        raise FileNotFoundError(f"no bundled mapping for connector type {connector_type!r}")
    return path


def bundled_names() -> list[str]:
    """Connector types that have a bundled mapping."""
    return sorted(path.stem for path in _HERE.glob("*.toml"))
