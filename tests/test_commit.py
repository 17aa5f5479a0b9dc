"""The commit path's two halves (`gateway.sync.commit`): a batch prepared while the one
before it is still being written, on a real SQLite store and a real PostgreSQL.

The engine prepares a page's next transaction (reads, compares, renders) while the one
before it writes. A person in both would be compared against what was stored before the
first wrote them; `stale` makes the second compare again inside its own transaction.
Each case runs twice: writing `subjects` directly, and journaling the writes as a full
run does on SQLite (`RunJournal`), where a person met again later in the run is compared
with what the run journaled.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.minimise.egress import SubjectRecord
from gateway.runtime.config import Settings
from gateway.runtime.services import Services
from gateway.sync.commit import Batch, Prepared, RunJournal, prepare_batch, write_batch
from gateway.sync.instructions import grant
from gateway.tenancy import create_connector, create_tenant
from mappings import bundled_mapping
from tests.pg import database_url, fresh_schema
from tests.principals import system

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _person(n: int, title: str = "Docent") -> SubjectRecord:
    return {
        "subject_id": f"{n:032x}", "first_name": f"Voornaam{n}", "last_name": "Jansen",
        "email": f"p{n}@school.nl", "job_title": title, "active": True,
    }  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgres":
            url = database_url(stack.enter_context(fresh_schema()))
        yield from _services(tmp_path, url)


def _services(tmp_path: Path, url: str | None) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path, admin_token="c" * 32, scheduler=False, database_url=url)
    services = Services.open(settings)
    by = system(services, "acme")
    create_tenant(services.store, services.box, "acme", "Acme BV", NOW, by=by)
    create_connector(
        services.store, services.box, tenant="acme", by=by, connector_id="afas",
        type_name="afas", base_url="https://afas.example.nl/profitrestservices",
        credentials={"token": "t"}, mapping_text=bundled_mapping("afas").read_text(), now=NOW,
    )  # fmt: skip
    grant(services.store, by=by, connector="afas", purpose="accounts", now=NOW)
    yield services
    services.close()


@pytest.fixture(params=[False, True], ids=["direct", "journaled"])
def journal(request: pytest.FixtureRequest, services: Services) -> RunJournal | None:
    return RunJournal(services.store, "run_1") if request.param else None


def _prepare(
    services: Services, people: list[SubjectRecord], journal: RunJournal | None = None
) -> Prepared:
    store = services.store
    record = store.get_connector("acme", "afas")
    instruction = store.list_instructions("acme", "afas")[0]
    return prepare_batch(
        store, record=record, instruction=instruction, mapping_digest=record.mapping_digest,
        fields={"email": "user.contact.email"}, batch=Batch(people, len(people), 0, {}), now=NOW,
        run_id="run_1", journal=journal,
    )  # fmt: skip


def _write(
    services: Services, prepared: Prepared, stale: Any = (), journal: RunJournal | None = None
) -> None:
    write_batch(services.ledger("acme"), prepared, check=lambda: None, stale=stale, journal=journal)


@pytest.mark.parametrize("title", ["Docent", "Teamleider"], ids=["same", "changed"])
def test_a_person_in_two_batches_prepared_together_gets_one_event_per_change(
    services: Services, title: str, journal: RunJournal | None
) -> None:
    first = _prepare(services, [_person(1), _person(2)], journal)
    # Prepared before the first is written: person 2 looks new to both.
    second = _prepare(services, [_person(2, title), _person(3)], journal)
    assert [w.subject_id for w in second.changes.writes] == [f"{2:032x}", f"{3:032x}"]
    _write(services, first, journal=journal)
    _write(services, second, stale=first.latest.keys(), journal=journal)
    events = services.store.events_after("acme", 0, 100)
    by_person = [e.subject_id for e in events]
    if title == "Docent":  # the same record twice: one event, not two
        assert by_person == [f"{1:032x}", f"{2:032x}", f"{3:032x}"]
    else:  # changed in between: an event for each version
        assert by_person == [f"{1:032x}", f"{2:032x}", f"{2:032x}", f"{3:032x}"]
        assert events[2].data is not None and events[2].data["job_title"] == "Teamleider"
    assert [e.seq for e in events] == list(range(1, len(events) + 1))


def test_without_stale_the_second_batch_would_repeat_the_person(
    services: Services, journal: RunJournal | None
) -> None:
    """What `stale` is for: the same two batches without it write person 2's event twice
    (this is the behaviour the engine must never have)."""
    first = _prepare(services, [_person(1), _person(2)], journal)
    second = _prepare(services, [_person(2), _person(3)], journal)
    _write(services, first, journal=journal)
    _write(services, second, journal=journal)
    events = services.store.events_after("acme", 0, 100)
    assert [e.subject_id for e in events].count(f"{2:032x}") == 2


def test_a_person_found_new_but_stored_by_the_write_is_written_again_without_the_mark(
    services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    """A batch writes the people it found new as new (`SubjectWrite.new`: inserted
    without looking for a row to update). Should one be stored by then after all (here:
    `stale` left out, which the engine never does), the store refuses the batch whole and
    it is written again without the mark: the run goes on, the person's state is the
    batch's, and the log says so, naming no person."""
    first = _prepare(services, [_person(1), _person(2)])
    second = _prepare(services, [_person(2, "Teamleider"), _person(3)])
    assert all(w.new for w in second.changes.writes)
    _write(services, first)
    size = services.ledger("acme").size()
    with caplog.at_level(logging.WARNING, logger="gateway.sync.commit"):
        _write(services, second)
    assert "met a person stored meanwhile" in caplog.text
    assert f"{2:032x}" not in caplog.text and "Voornaam" not in caplog.text
    states = services.store.subject_states("acme", "afas", [f"{n:032x}" for n in (1, 2, 3)])
    assert states[f"{2:032x}"].digest == second.changes.writes[0].digest
    assert len(states) == 3
    events = services.store.events_after("acme", 0, 100)
    assert [e.seq for e in events] == list(range(1, 5))
    # The batch's inbound entry is in the ledger once: the refused attempt left none.
    assert services.ledger("acme").size() == size + 1
    assert services.ledger("acme").verify(services.signer.public_key).ok


@pytest.mark.parametrize("title", ["Docent", "Teamleider"], ids=["same", "changed"])
def test_a_journaling_run_compares_a_person_met_again_with_what_it_journaled(
    services: Services, title: str
) -> None:
    """A person a run meets again after their first write committed (a source shifting
    under its pages): compared with the run's journal, not with `subjects`, which has not
    got them yet; the merge then writes the last state."""
    store = services.store
    journal = RunJournal(store, "run_1")
    first = _prepare(services, [_person(1), _person(2)], journal)
    _write(services, first, journal=journal)
    assert store.subject_states("acme", "afas", [f"{2:032x}"]) == {}
    assert len(journal) == 2
    again = _prepare(services, [_person(2, title), _person(3)], journal)
    _write(services, again, journal=journal)
    events = services.store.events_after("acme", 0, 100)
    ids = [e.subject_id for e in events]
    if title == "Docent":
        assert ids == [f"{1:032x}", f"{2:032x}", f"{3:032x}"]
        assert again.changes.unchanged == [f"{2:032x}"]
    else:
        assert ids == [f"{1:032x}", f"{2:032x}", f"{2:032x}", f"{3:032x}"]
    store.merge_run_writes("run_1")
    states = store.subject_states("acme", "afas", [f"{n:032x}" for n in (1, 2, 3)])
    assert len(states) == 3
    last = (first.changes.writes[1] if title == "Docent" else again.changes.writes[0]).digest
    assert states[f"{2:032x}"].digest == last
    if title != "Docent":
        assert last != first.changes.writes[1].digest
