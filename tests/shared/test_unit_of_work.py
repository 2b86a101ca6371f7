"""The unit of work and message bus base (``portal_shared.unit_of_work``), with no server."""
from dataclasses import dataclass, field

import pytest

from portal_shared import unit_of_work
from portal_shared.testing.memory import FakeInbox, FakeOutbox, InMemoryUnitOfWork


@dataclass(frozen=True)
class Opened:
    name: str


@dataclass(frozen=True)
class Forgotten:
    name: str


@dataclass
class Account:
    name: str
    events: list = field(default_factory=list)

    def open(self):
        self.events.append(Opened(self.name))


@dataclass
class Store:
    accounts: dict = field(default_factory=dict)
    outbox: list = field(default_factory=list)
    inbox: set = field(default_factory=set)


class Accounts:
    def __init__(self, store):
        self._store = store
        self.seen = []

    def add(self, account):
        self.seen.append(account)

    def save(self, accounts):
        for account in accounts:
            self._store.accounts[account.name] = Account(account.name)


def record_opened(event, uow):
    uow.outbox.add("account_opened", {"name": event.name}, aggregate_key=event.name)


class UnitOfWork(InMemoryUnitOfWork):
    in_transaction = {Opened: [record_opened]}

    def __init__(self):
        super().__init__(Store())

    def _open(self, store):
        self.accounts = Accounts(store)
        self.outbox = FakeOutbox(store)
        self.inbox = FakeInbox(store)

    def _seen(self):
        return self.accounts.seen

    def _save(self, seen):
        self.accounts.save(seen)


@dataclass(frozen=True)
class OpenAccount:
    name: str


def open_account(command, uow, greeting):
    with uow:
        account = Account(command.name)
        account.open()
        uow.accounts.add(account)
        uow.commit()
    return f"{greeting} {command.name}"


class Bus(unit_of_work.MessageBus):
    command_handlers = {OpenAccount: open_account}
    after_commit = {Opened: [lambda event, bus: bus.welcomed.append(event.name)]}

    def __init__(self, uow):
        super().__init__(uow, greeting="xin chào", unused="a dependency no use case names")
        self.welcomed = []


def test_a_block_without_commit_rolls_back():
    uow = UnitOfWork()
    with uow:
        account = Account("an")
        account.open()
        uow.accounts.add(account)
    assert uow.store.accounts == {} and uow.store.outbox == [] and uow.collect_new_events() == []


def test_commit_stores_runs_the_in_transaction_handlers_and_keeps_the_events():
    uow = UnitOfWork()
    with uow:
        account = Account("an")
        account.open()
        uow.accounts.add(account)
        uow.commit()
    assert list(uow.store.accounts) == ["an"] and account.events == []
    assert uow.store.outbox == [("account_opened", {"name": "an"}, "an")]
    assert uow.collect_new_events() == [Opened("an")] and uow.collect_new_events() == []


def test_an_event_with_no_entry_in_the_table_fails_before_the_commit():
    uow = UnitOfWork()
    with pytest.raises(KeyError):
        with uow:
            account = Account("an")
            account.events.append(Forgotten("an"))
            uow.accounts.add(account)
            uow.commit()
    assert uow.store.accounts == {} and uow.commits == 0


def test_the_bus_gives_a_use_case_the_dependencies_it_names_then_dispatches_after_commit():
    bus = Bus(UnitOfWork())
    assert bus.handle(OpenAccount("an")) == "xin chào an"
    assert bus.welcomed == ["an"] and bus.uow.commits == 1


def test_the_inbox_claims_an_event_once_per_consumer():
    uow = UnitOfWork()
    with uow:
        assert uow.inbox.claim("svc.on_x", "e1") and not uow.inbox.claim("svc.on_x", "e1")
        assert uow.inbox.claim("other.on_x", "e1")
