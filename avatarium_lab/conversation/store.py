"""Durable conversations, API keys, analytics events and uploads: SQLite by default, PostgreSQL by URL.

One synchronous SQLAlchemy Core engine, safe to call from worker threads (the async gateway calls it through
``asyncio.to_thread``). Every write is its own committed transaction: when a method returns, the data is on
disk. ``Store`` owns tenants and keys; ``Store.for_tenant(tenant_id)`` gives a ``TenantStore`` whose every
query is filtered by that tenant, so another tenant's ids behave exactly like ids that do not exist.

Expiry: a conversation idle longer than ``idle_timeout`` seconds (by ``Store.clock``) is expired. Reads see it
as expired at once (``status == "expired"``); it is *marked* expired -- and, with ``retention="delete"``, its
messages and events are removed, leaving a tombstone row -- by ``Store.expire_idle()`` (run it periodically),
by ``TenantStore.active_conversation``, and by any access to it through a ``TenantStore``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from ..errors import (
    AlreadyExists,
    ConversationExpired,
    ConversationNotFound,
    InvalidMessage,
    NotFound,
    UploadNotFound,
)
from ..secrets import Secret
from . import keys as _keys

if TYPE_CHECKING:
    import pandas

Retention = Literal["keep", "delete"]
ROLES = ("system", "user", "assistant", "tool")
DB_URL_ENV = "AVATARIUM_DB_URL"
# last_used_at is written at most this often per key, so authentication is a read, not a write, per request.
LAST_USED_RESOLUTION = 60.0
_MAX_ID = 64


def default_url() -> str:
    """``sqlite:///~/.local/share/avatarium-lab/avatarium.db`` (absolute)."""
    return "sqlite:///" + str(Path.home() / ".local/share/avatarium-lab/avatarium.db")


def _new_id() -> str:
    return uuid.uuid4().hex


# ---------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just created. ``secret`` is the full key to present (``avk_...``); it is shown once and is never
    in the ``repr``."""

    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    key_id: str
    tenant_id: str
    scopes: tuple[str, ...]
    label: str
    created_at: float
    revoked_at: float | None
    last_used_at: float | None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: the tenant and key an authenticated API key belongs to, and what it may do."""

    tenant_id: str
    key_id: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope in self.scopes


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    tenant_id: str
    config: str
    persona: str
    status: Literal["active", "expired"]
    created_at: float
    last_active_at: float
    metadata: dict[str, Any]
    message_count: int


@dataclass(frozen=True, slots=True)
class MessageRecord:
    seq: int
    role: str
    content: str
    turn_id: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class UploadRecord:
    id: str
    name: str
    size: int
    sha256: str
    report: dict[str, Any]
    created_at: float


# ----------------------------------------------------------------------------------------------------- schema

metadata = sa.MetaData()
_ID = sa.String(_MAX_ID)
_TS = sa.Double()
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite autoincrements INTEGER PRIMARY KEY only

tenants = sa.Table(
    "tenants", metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", _TS, nullable=False),
)
api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("key_id", _ID, primary_key=True),
    sa.Column("tenant_id", _ID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("salt", sa.String(64), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False),
    sa.Column("scopes", sa.String(200), nullable=False),
    sa.Column("label", sa.String(200), nullable=False, default=""),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("revoked_at", _TS, nullable=True),
    sa.Column("last_used_at", _TS, nullable=True),
)
conversations = sa.Table(
    "conversations", metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("tenant_id", _ID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
    sa.Column("config", sa.String(200), nullable=False),
    sa.Column("persona", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("last_active_at", _TS, nullable=False),
    sa.Column("meta", sa.JSON, nullable=False),
    sa.Column("message_count", sa.Integer, nullable=False, default=0),
    sa.Index("ix_conversations_tenant_active", "tenant_id", "last_active_at"),
    sa.Index("ix_conversations_status_active", "status", "last_active_at"),
)
messages_table = sa.Table(
    "messages", metadata,
    sa.Column("id", _SERIAL, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", _ID, nullable=False),
    sa.Column("conversation_id", _ID, sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("turn_id", sa.String(200), nullable=True),
    sa.Column("created_at", _TS, nullable=False),
    sa.UniqueConstraint("conversation_id", "seq", name="uq_messages_conversation_seq"),
)
events_table = sa.Table(
    "events", metadata,
    sa.Column("id", _SERIAL, primary_key=True, autoincrement=True),
    sa.Column("tenant_id", _ID, nullable=False),
    sa.Column("conversation_id", _ID, sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("turn_id", sa.String(200), nullable=True),
    sa.Column("created_at", _TS, nullable=False),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_events_tenant_conversation", "tenant_id", "conversation_id", "id"),
    sa.Index("ix_events_tenant_created", "tenant_id", "created_at"),
)
uploads = sa.Table(
    "uploads", metadata,
    sa.Column("id", _ID, primary_key=True),
    sa.Column("tenant_id", _ID, sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False, index=True),
    sa.Column("name", sa.String(500), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("report", sa.JSON, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Column("created_at", _TS, nullable=False),
)


def _make_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")  # the driver we ship; psycopg2 is not a dependency
    # hide_parameters: message texts and key hashes never end up in exception messages or logs
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, pool_pre_ping=True, hide_parameters=True)
    memory = parsed.database in (None, "", ":memory:")
    if not memory:
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)  # type: ignore[arg-type]
    extra: dict[str, Any] = {"poolclass": sa.pool.StaticPool} if memory else {}  # one shared in-memory database
    engine = sa.create_engine(parsed, hide_parameters=True, connect_args={"check_same_thread": False}, **extra)

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # We issue BEGIN ourselves (below) so writes can take the write lock up front (BEGIN IMMEDIATE):
        # a deferred transaction that reads and then writes can fail with SQLITE_BUSY instead of waiting.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=FULL")  # a committed message survives a power cut, not just a crash
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("avatarium_write") else "BEGIN")

    return engine


# ------------------------------------------------------------------------------------------------------ store


class Store:
    """Tenants, API keys and (through ``for_tenant``) everything a tenant owns.

    ``url``: a SQLAlchemy URL -- ``sqlite:///path.db`` (the default is ``default_url()``) or
    ``postgresql+psycopg://user:pass@host/db``. Tables are created if missing. ``clock`` gives wall-clock
    seconds (tests replace it); ``idle_timeout`` is the conversation idle expiry in seconds; ``retention`` says
    what happens to an expired conversation's messages and events: ``"keep"`` them or ``"delete"`` them.
    """

    def __init__(self, url: str | None = None, *, clock: Callable[[], float] = time.time,
                 idle_timeout: float = 1800.0, retention: Retention = "keep") -> None:
        if retention not in ("keep", "delete"):
            raise ValueError(f"retention must be 'keep' or 'delete', got {retention!r}")
        if not idle_timeout > 0:
            raise ValueError(f"idle_timeout must be > 0 seconds, got {idle_timeout!r}")
        self.clock = clock
        self.idle_timeout = float(idle_timeout)
        self.retention: Retention = retention
        self._engine = _make_engine(url or default_url())
        self._write_engine = self._engine.execution_options(avatarium_write=True)
        self._closed = False
        metadata.create_all(self._engine, checkfirst=True)

    @property
    def url(self) -> str:
        """The database URL, password hidden."""
        return self._engine.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return (f"Store({self.url!r}, "
                f"idle_timeout={self.idle_timeout:g}, retention={self.retention!r})")

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    # transactions: each method is one transaction, committed on return
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._write_engine.begin() as conn:
            yield conn

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ tenants

    def create_tenant(self, name: str) -> Tenant:
        name = _check_name(name, "tenant name")
        tenant = Tenant(id=_new_id(), name=name, created_at=self.clock())
        try:
            with self._write() as conn:
                conn.execute(tenants.insert().values(id=tenant.id, name=tenant.name, created_at=tenant.created_at))
        except IntegrityError:
            raise AlreadyExists(f"a tenant named {name!r} exists already") from None
        return tenant

    def get_tenant(self, name_or_id: str) -> Tenant | None:
        if not isinstance(name_or_id, str) or not name_or_id or "\x00" in name_or_id:
            return None
        with self._read() as conn:
            row = None
            if len(name_or_id) <= _MAX_ID:
                row = conn.execute(sa.select(tenants).where(tenants.c.id == name_or_id)).first()
            if row is None:
                row = conn.execute(sa.select(tenants).where(tenants.c.name == name_or_id)).first()
        return Tenant(id=row.id, name=row.name, created_at=row.created_at) if row else None

    def list_tenants(self) -> list[Tenant]:
        with self._read() as conn:
            rows = conn.execute(sa.select(tenants).order_by(tenants.c.created_at, tenants.c.name)).all()
        return [Tenant(id=r.id, name=r.name, created_at=r.created_at) for r in rows]

    # --------------------------------------------------------------------------------------------------- keys

    def create_key(self, tenant_id: str, scopes: Iterable[str] = _keys.DEFAULT_SCOPES, label: str = "") -> NewKey:
        """A new key for the tenant; its secret is in the returned ``NewKey`` only (the store keeps a hash)."""
        scope_tuple = _keys.normalize_scopes(scopes)
        label = str(label or "").replace("\x00", "")[:200]
        key_id, secret = _keys.new_key()
        Secret(secret, source="avatarium-key")  # registered, so ``secrets.redact`` hides it from logs
        salt = _keys.new_salt()
        try:
            with self._write() as conn:
                if conn.execute(sa.select(tenants.c.id).where(tenants.c.id == tenant_id)).first() is None:
                    raise NotFound(f"no tenant with id {tenant_id!r}")
                conn.execute(api_keys.insert().values(
                    key_id=key_id, tenant_id=tenant_id, salt=salt, key_hash=_keys.hash_key(secret, salt),
                    scopes=" ".join(scope_tuple), label=label, created_at=self.clock()))
        except sa.exc.DataError:
            raise NotFound(f"no tenant with id {tenant_id!r}") from None
        return NewKey(key_id=key_id, tenant_id=tenant_id, scopes=scope_tuple, secret=secret)

    def list_keys(self, tenant_id: str | None = None) -> list[KeyInfo]:
        query = sa.select(api_keys.c.key_id, api_keys.c.tenant_id, api_keys.c.scopes, api_keys.c.label,
                          api_keys.c.created_at, api_keys.c.revoked_at, api_keys.c.last_used_at)
        if tenant_id is not None:
            query = query.where(api_keys.c.tenant_id == tenant_id)
        with self._read() as conn:
            rows = conn.execute(query.order_by(api_keys.c.created_at, api_keys.c.key_id)).all()
        return [KeyInfo(key_id=r.key_id, tenant_id=r.tenant_id, scopes=tuple(r.scopes.split()), label=r.label,
                        created_at=r.created_at, revoked_at=r.revoked_at, last_used_at=r.last_used_at)
                for r in rows]

    def revoke_key(self, key_id: str) -> bool:
        """Revoke a key at once; False if there is no such key or it was revoked already."""
        if not isinstance(key_id, str) or len(key_id) > _MAX_ID or "\x00" in key_id:
            return False
        with self._write() as conn:
            result = conn.execute(api_keys.update()
                                  .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                                  .values(revoked_at=self.clock()))
        return result.rowcount > 0

    def authenticate(self, presented: str) -> Principal | None:
        """The principal of a presented key, or None if it is malformed, unknown or revoked (or its tenant is
        gone). One primary-key lookup and one HMAC; the comparison is constant-time."""
        key_id = _keys.parse_key(presented)
        if key_id is None:
            return None
        with self._read() as conn:
            row = conn.execute(
                sa.select(api_keys.c.tenant_id, api_keys.c.salt, api_keys.c.key_hash, api_keys.c.scopes,
                          api_keys.c.revoked_at, api_keys.c.last_used_at)
                .where(api_keys.c.key_id == key_id)).first()
        ok = _keys.verify_key(presented, row.salt if row else None, row.key_hash if row else None)
        if not ok or row is None or row.revoked_at is not None:
            return None
        now = self.clock()
        if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
            with self._write() as conn:
                conn.execute(api_keys.update().where(api_keys.c.key_id == key_id).values(last_used_at=now))
        return Principal(tenant_id=row.tenant_id, key_id=key_id, scopes=frozenset(row.scopes.split()))

    # ---------------------------------------------------------------------------------------- conversations

    def for_tenant(self, tenant_id: str) -> TenantStore:
        """The tenant's view of the store (no I/O; an unknown tenant simply owns nothing)."""
        return TenantStore(self, tenant_id)

    def expire_idle(self) -> int:
        """Mark every conversation idle longer than ``idle_timeout`` as expired and apply the retention
        policy; the number of conversations expired now."""
        with self._write() as conn:
            return len(self._expire(conn, None, None))

    def _cutoff(self) -> float:
        return self.clock() - self.idle_timeout

    def _expire(self, conn: Connection, tenant_id: str | None, conversation_id: str | None) -> list[str]:
        cutoff = self._cutoff()
        where = [conversations.c.status == "active", conversations.c.last_active_at < cutoff]
        if tenant_id is not None:
            where.append(conversations.c.tenant_id == tenant_id)
        if conversation_id is not None:
            where.append(conversations.c.id == conversation_id)
        ids = [r[0] for r in conn.execute(
            conversations.update().where(*where).values(status="expired").returning(conversations.c.id))]
        if ids and self.retention == "delete":
            for chunk in _chunks(ids, 500):
                conn.execute(messages_table.delete().where(messages_table.c.conversation_id.in_(chunk)))
                conn.execute(events_table.delete().where(events_table.c.conversation_id.in_(chunk)))
        return ids


class TenantStore:
    """Everything one tenant owns. Every query is filtered by ``tenant_id``: an id of another tenant raises the
    same ``NotFound`` as an id that never existed."""

    def __init__(self, store: Store, tenant_id: str) -> None:
        if not isinstance(tenant_id, str) or not tenant_id:
            raise ValueError("tenant_id must be a non-empty string")
        self._store = store
        self.tenant_id = tenant_id

    def __repr__(self) -> str:
        return f"TenantStore(tenant_id={self.tenant_id!r})"

    # --------------------------------------------------------------------------------------------- helpers

    def _valid_id(self, value: object) -> bool:
        return isinstance(value, str) and 0 < len(value) <= _MAX_ID and "\x00" not in value

    def _row(self, conn: Connection, conversation_id: str) -> Any:
        if not self._valid_id(conversation_id):
            return None
        return conn.execute(sa.select(conversations).where(
            conversations.c.id == conversation_id, conversations.c.tenant_id == self.tenant_id)).first()

    def _record(self, row: Any) -> ConversationRecord:
        idle = row.status == "active" and row.last_active_at < self._store._cutoff()
        return ConversationRecord(
            id=row.id, tenant_id=row.tenant_id, config=row.config, persona=row.persona,
            status="expired" if idle else row.status, created_at=row.created_at,
            last_active_at=row.last_active_at, metadata=dict(row.meta or {}), message_count=row.message_count)

    def _load(self, conversation_id: str) -> Any:
        """The row, expiring it first (a write of its own) if it is idle beyond the timeout; NotFound if it is
        not this tenant's."""
        with self._store._read() as conn:
            row = self._row(conn, conversation_id)
        if row is None:
            raise ConversationNotFound(f"no conversation {_short(conversation_id)}")
        if row.status == "active" and row.last_active_at < self._store._cutoff():
            with self._store._write() as conn:
                self._store._expire(conn, self.tenant_id, conversation_id)
                row = self._row(conn, conversation_id)
            if row is None:  # deleted meanwhile
                raise ConversationNotFound(f"no conversation {_short(conversation_id)}")
        return row

    def _require_active(self, conn: Connection, conversation_id: str) -> Any:
        row = self._row(conn, conversation_id)
        if row is None:
            raise ConversationNotFound(f"no conversation {_short(conversation_id)}")
        if row.status != "active" or row.last_active_at < self._store._cutoff():
            raise ConversationExpired(f"conversation {_short(conversation_id)} has expired "
                                      f"(idle more than {self._store.idle_timeout:g} s); start a new one")
        return row

    # ---------------------------------------------------------------------------------------- conversations

    def create_conversation(self, *, config: str = "default", persona: str = "",
                            metadata: dict[str, Any] | None = None) -> ConversationRecord:
        now = self._store.clock()
        meta = _json_roundtrip(dict(metadata or {}), "metadata")
        values = dict(id=_new_id(), tenant_id=self.tenant_id, config=_check_name(config, "config", empty=False),
                      persona=_check_name(persona, "persona", empty=True), status="active", created_at=now,
                      last_active_at=now, meta=meta, message_count=0)
        try:
            with self._store._write() as conn:
                conn.execute(conversations.insert().values(**values))
        except (IntegrityError, sa.exc.DataError):  # the foreign key: no such tenant
            raise NotFound(f"no tenant with id {self.tenant_id!r}") from None
        return ConversationRecord(id=values["id"], tenant_id=self.tenant_id, config=values["config"],
                                  persona=values["persona"], status="active", created_at=now,
                                  last_active_at=now, metadata=meta, message_count=0)

    def get_conversation(self, conversation_id: str) -> ConversationRecord:
        return self._record(self._load(conversation_id))

    def active_conversation(self, conversation_id: str) -> ConversationRecord:
        """The conversation if it can take another turn; ``ConversationExpired`` if it cannot (and it is marked
        expired if it just became so)."""
        record = self.get_conversation(conversation_id)
        if record.status != "active":
            raise ConversationExpired(f"conversation {_short(conversation_id)} has expired "
                                      f"(idle more than {self._store.idle_timeout:g} s); start a new one")
        return record

    def list_conversations(self, *, status: str | None = None, limit: int = 50,
                           offset: int = 0) -> list[ConversationRecord]:
        """Most recently active first. ``status`` ``"active"`` or ``"expired"`` (as the records show it)."""
        if status not in (None, "active", "expired"):
            raise ValueError(f"status must be 'active', 'expired' or None, got {status!r}")
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must be >= 0")
        query = sa.select(conversations).where(conversations.c.tenant_id == self.tenant_id)
        cutoff = self._store._cutoff()
        if status == "active":
            query = query.where(conversations.c.status == "active", conversations.c.last_active_at >= cutoff)
        elif status == "expired":
            query = query.where(sa.or_(conversations.c.status != "active", conversations.c.last_active_at < cutoff))
        query = query.order_by(conversations.c.last_active_at.desc(), conversations.c.id).limit(limit).offset(offset)
        with self._store._read() as conn:
            rows = conn.execute(query).all()
        return [self._record(r) for r in rows]

    def delete_conversation(self, conversation_id: str) -> bool:
        """Delete it with its messages and events; False if there is no such conversation (of this tenant)."""
        with self._store._write() as conn:
            if self._row(conn, conversation_id) is None:
                return False
            conn.execute(messages_table.delete().where(messages_table.c.tenant_id == self.tenant_id,
                                                 messages_table.c.conversation_id == conversation_id))
            conn.execute(events_table.delete().where(events_table.c.tenant_id == self.tenant_id,
                                               events_table.c.conversation_id == conversation_id))
            conn.execute(conversations.delete().where(conversations.c.tenant_id == self.tenant_id,
                                                      conversations.c.id == conversation_id))
        return True

    def count_active(self) -> int:
        """Conversations that are active and not idle beyond the timeout (for the concurrency limit)."""
        with self._store._read() as conn:
            return conn.execute(sa.select(sa.func.count()).select_from(conversations).where(
                conversations.c.tenant_id == self.tenant_id, conversations.c.status == "active",
                conversations.c.last_active_at >= self._store._cutoff())).scalar_one()

    # --------------------------------------------------------------------------------------------- messages

    def add_message(self, conversation_id: str, role: str, content: str, *,
                    turn_id: str | None = None) -> MessageRecord:
        """Append a message (committed on return) and mark the conversation active now."""
        if role not in ROLES:
            raise InvalidMessage(f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if not isinstance(content, str):
            raise InvalidMessage(f"message content must be a string, got {type(content).__name__}")
        if "\x00" in content:
            raise InvalidMessage("message content contains a NUL character")
        if turn_id is not None and (not isinstance(turn_id, str) or len(turn_id) > 200 or "\x00" in turn_id):
            raise InvalidMessage("turn_id must be a string of at most 200 characters")
        now = self._store.clock()
        with self._store._write() as conn:
            self._require_active(conn, conversation_id)
            seq = conn.execute(
                conversations.update()
                .where(conversations.c.id == conversation_id, conversations.c.tenant_id == self.tenant_id)
                .values(message_count=conversations.c.message_count + 1,
                        last_active_at=sa.func.max(conversations.c.last_active_at, now)
                        if self._store.dialect == "sqlite"
                        else sa.func.greatest(conversations.c.last_active_at, now))
                .returning(conversations.c.message_count)).scalar_one()
            conn.execute(messages_table.insert().values(tenant_id=self.tenant_id, conversation_id=conversation_id,
                                                  seq=seq, role=role, content=content, turn_id=turn_id,
                                                  created_at=now))
        return MessageRecord(seq=seq, role=role, content=content, turn_id=turn_id, created_at=now)

    def messages(self, conversation_id: str) -> list[MessageRecord]:
        """Every stored message in order (none for an expired conversation under ``retention="delete"``)."""
        self._load(conversation_id)
        with self._store._read() as conn:
            rows = conn.execute(
                sa.select(messages_table.c.seq, messages_table.c.role, messages_table.c.content, messages_table.c.turn_id,
                          messages_table.c.created_at)
                .where(messages_table.c.tenant_id == self.tenant_id, messages_table.c.conversation_id == conversation_id)
                .order_by(messages_table.c.seq)).all()
        return [MessageRecord(seq=r.seq, role=r.role, content=r.content, turn_id=r.turn_id,
                              created_at=r.created_at) for r in rows]

    def context(self, conversation_id: str) -> list[dict[str, str]]:
        """The messages as ``[{"role", "content"}]``, ready for ``pipeline.Conversation(messages=...)``."""
        return [{"role": m.role, "content": m.content} for m in self.messages(conversation_id)]

    # ----------------------------------------------------------------------------------------------- events

    def add_events(self, conversation_id: str, events: Iterable[Any]) -> int:
        """Store analytics/turn events (JSON dicts with a ``"type"``, or ``events.Event`` objects) in one
        transaction; the number stored."""
        now = self._store.clock()
        rows = []
        for item in events:
            payload = item.to_dict() if hasattr(item, "to_dict") and not isinstance(item, Mapping) else item
            if not isinstance(payload, Mapping) or not isinstance(payload.get("type"), str) or not payload["type"]:
                raise InvalidMessage(f"an event is a JSON object with a non-empty string 'type', got {item!r:.80}")
            payload = _json_roundtrip(dict(payload), "event")
            turn_id = payload.get("turn_id")
            rows.append(dict(tenant_id=self.tenant_id, conversation_id=conversation_id, type=payload["type"][:64],
                             turn_id=str(turn_id)[:200] if turn_id is not None else None, created_at=now,
                             payload=payload))
        with self._store._write() as conn:
            self._require_active(conn, conversation_id)
            if rows:
                conn.execute(events_table.insert(), rows)
        return len(rows)

    def events(self, conversation_id: str | None = None, *, types: Iterable[str] | None = None,
               since: float | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Stored events, oldest first: each event's dict plus ``conversation_id`` and ``created_at`` (store
        time). ``since`` keeps events stored at or after that time; ``limit`` the first so many."""
        query = sa.select(events_table.c.conversation_id, events_table.c.created_at, events_table.c.payload) \
            .where(events_table.c.tenant_id == self.tenant_id)
        if conversation_id is not None:
            self._load(conversation_id)  # NotFound for ids that are not this tenant's
            query = query.where(events_table.c.conversation_id == conversation_id)
        if types is not None:
            type_list = [types] if isinstance(types, str) else list(types)
            query = query.where(events_table.c.type.in_(type_list))
        if since is not None:
            query = query.where(events_table.c.created_at >= since)
        query = query.order_by(events_table.c.id)
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must be >= 0")
            query = query.limit(limit)
        with self._store._read() as conn:
            rows = conn.execute(query).all()
        return [{**r.payload, "conversation_id": r.conversation_id, "created_at": r.created_at} for r in rows]

    def events_frame(self, conversation_id: str | None = None, *, types: Iterable[str] | None = None,
                     since: float | None = None, limit: int | None = None) -> pandas.DataFrame:
        """The events as a DataFrame: ``conversation_id, type, turn_id, created_at`` then the payload's other
        fields, nested objects flattened with dots (``usage.tokens``)."""
        import pandas as pd

        rows = self.events(conversation_id, types=types, since=since, limit=limit)
        first = ["conversation_id", "type", "turn_id", "created_at"]
        if not rows:
            return pd.DataFrame({c: pd.Series(dtype="float64" if c == "created_at" else "object") for c in first})
        frame = pd.json_normalize(rows, sep=".")
        if "turn_id" not in frame.columns:
            frame["turn_id"] = None
        return frame[first + [c for c in frame.columns if c not in first]]

    # ---------------------------------------------------------------------------------------------- uploads

    def add_upload(self, name: str, data: bytes, *, report: dict[str, Any], sha256: str) -> UploadRecord:
        """Store an uploaded file (checked by the caller; ``report`` is its check report)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("upload data must be bytes")
        data = bytes(data)
        if hashlib.sha256(data).hexdigest() != str(sha256).lower():
            raise ValueError("sha256 does not match the uploaded data")
        record = UploadRecord(id=_new_id(), name=_check_name(name, "upload name", empty=False, limit=500),
                              size=len(data), sha256=str(sha256).lower(),
                              report=_json_roundtrip(dict(report), "report"), created_at=self._store.clock())
        try:
            with self._store._write() as conn:
                conn.execute(uploads.insert().values(
                    id=record.id, tenant_id=self.tenant_id, name=record.name, size=record.size,
                    sha256=record.sha256, report=record.report, data=data, created_at=record.created_at))
        except (IntegrityError, sa.exc.DataError):
            raise NotFound(f"no tenant with id {self.tenant_id!r}") from None
        return record

    def get_upload(self, upload_id: str) -> tuple[UploadRecord, bytes]:
        row = None
        if self._valid_id(upload_id):
            with self._store._read() as conn:
                row = conn.execute(sa.select(uploads).where(
                    uploads.c.id == upload_id, uploads.c.tenant_id == self.tenant_id)).first()
        if row is None:
            raise UploadNotFound(f"no upload {_short(upload_id)}")
        return self._upload(row), bytes(row.data)

    def list_uploads(self) -> list[UploadRecord]:
        with self._store._read() as conn:
            rows = conn.execute(
                sa.select(uploads.c.id, uploads.c.name, uploads.c.size, uploads.c.sha256, uploads.c.report,
                          uploads.c.created_at)
                .where(uploads.c.tenant_id == self.tenant_id)
                .order_by(uploads.c.created_at, uploads.c.id)).all()
        return [self._upload(r) for r in rows]

    @staticmethod
    def _upload(row: Any) -> UploadRecord:
        return UploadRecord(id=row.id, name=row.name, size=row.size, sha256=row.sha256,
                            report=dict(row.report or {}), created_at=row.created_at)


# ---------------------------------------------------------------------------------------------------- helpers


def _check_name(value: object, what: str, *, empty: bool = False, limit: int = 200) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    value = value.strip()
    if (not value and not empty) or len(value) > limit or "\x00" in value:
        raise ValueError(f"{what} must be {'' if empty else 'non-empty, '}at most {limit} characters, no NUL")
    return value


def _json_roundtrip(value: dict[str, Any], what: str) -> dict[str, Any]:
    """A copy that is plain JSON (so what is returned equals what is stored, on every backend)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, ensure_ascii=False))
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(f"{what} must be JSON-serializable: {exc}") from None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 70 else text[:67] + "..."


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
