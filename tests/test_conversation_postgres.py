"""The store's contract (``StoreContract`` in ``test_conversation_store.py``) against a real PostgreSQL.

Runs when ``AVATARIUM_TEST_POSTGRES_URL`` is set, e.g.
``postgresql+psycopg://avatarium:avatarium@127.0.0.1:5432/avatarium_test``. The tables of that database are
dropped before each test: point it at a throw-away database.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import sqlalchemy as sa
from test_conversation_store import FakeClock, StoreContract

from avatarium_lab.conversation import Store
from avatarium_lab.conversation import store as store_module

URL = os.environ.get("AVATARIUM_TEST_POSTGRES_URL", "")

pytestmark = pytest.mark.skipif(
    not URL, reason="set AVATARIUM_TEST_POSTGRES_URL=postgresql+psycopg://USER:PASS@HOST/DB (a throw-away database) "
                    "to run the store's tests against PostgreSQL")


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def make_store(self, clock: FakeClock) -> Any:
        engine = sa.create_engine(URL)
        store_module.metadata.drop_all(engine)
        engine.dispose()
        stores: list[Store] = []

        def make(**kw: Any) -> Store:
            stores.append(Store(URL, clock=clock, **kw))
            return stores[-1]

        yield make
        for s in stores:
            s.close()

    def test_it_is_postgres_and_the_password_stays_out_of_repr(self, store: Store) -> None:
        assert store.dialect == "postgresql"
        password = sa.make_url(URL).password
        if password:
            assert f":{password}@" not in repr(store) and f":{password}@" not in store.url

    def test_plain_postgresql_urls_use_psycopg(self, make_store: Any) -> None:
        make_store()  # resets the tables
        url = sa.make_url(URL).set(drivername="postgresql").render_as_string(hide_password=False)
        with Store(url) as store:
            assert store._engine.dialect.driver == "psycopg"
            assert store.get_tenant("nobody") is None
