"""Conversations that outlive a process: context, idle expiry, analytics events, uploads, and the API keys of
the gateway -- SQLite by default, PostgreSQL by URL (``Store("postgresql+psycopg://...")``).

>>> store = Store("sqlite:///avatarium.db")
>>> tenant = store.create_tenant("acme")
>>> key = store.create_key(tenant.id)             # key.secret is shown once; only a salted hash is stored
>>> principal = store.authenticate(key.secret)
>>> conversations = store.for_tenant(principal.tenant_id)
>>> conv = conversations.create_conversation(persona="nova")
>>> conversations.add_message(conv.id, "user", "Hello!")
"""

from .keys import DEFAULT_SCOPES, SCOPES
from .store import (
    DB_URL_ENV,
    ConversationRecord,
    KeyInfo,
    MessageRecord,
    NewKey,
    Principal,
    Store,
    Tenant,
    TenantStore,
    UploadRecord,
    default_url,
)

__all__ = [
    "DB_URL_ENV", "DEFAULT_SCOPES", "SCOPES", "ConversationRecord", "KeyInfo", "MessageRecord", "NewKey",
    "Principal", "Store", "Tenant", "TenantStore", "UploadRecord", "default_url",
]
