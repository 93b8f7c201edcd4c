"""``avatarium keys``: create, list and revoke the gateway's API keys.

Wire it into ``avatarium_lab.cli.build_parser`` with::

    from .conversation.cli import add_keys_parser
    add_keys_parser(sub)          # sets func=run_keys on the ``keys`` parser

The database is ``--db URL``, else ``$AVATARIUM_DB_URL``, else the store's default SQLite file.
A key's secret is printed once, by ``keys create``; nothing prints it (or its hash) again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from ..errors import AvatariumError
from .keys import DEFAULT_SCOPES, SCOPES, normalize_scopes
from .store import DB_URL_ENV, KeyInfo, Store

WARNING = "Store this key now: it will not be shown again (only a salted hash is kept)."


def add_keys_parser(subparsers: Any) -> None:
    """Add the ``keys`` command (``create``, ``list``, ``revoke``) to an ``add_subparsers()`` object."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=None, metavar="URL",
                        help=f"database URL (default: ${DB_URL_ENV}, else ~/.local/share/avatarium-lab/avatarium.db)")
    common.add_argument("--json", action="store_true", help="print JSON")

    keys = subparsers.add_parser("keys", help="create, list and revoke the gateway's API keys")
    actions = keys.add_subparsers(dest="keys_action", required=True, metavar="{create,list,revoke}")

    create = actions.add_parser("create", parents=[common], help="create a key (and its tenant if it is new)")
    create.add_argument("--tenant", required=True, metavar="NAME", help="tenant name (created if missing)")
    create.add_argument("--scopes", default=",".join(DEFAULT_SCOPES),
                        help=f"comma-separated scopes from {','.join(SCOPES)} (default {','.join(DEFAULT_SCOPES)})")
    create.add_argument("--label", default="", help="a note to recognise the key by (not secret)")

    listing = actions.add_parser("list", parents=[common], help="list keys (never their secrets)")
    listing.add_argument("--tenant", default=None, metavar="NAME", help="only this tenant's keys")

    revoke = actions.add_parser("revoke", parents=[common], help="revoke a key at once")
    revoke.add_argument("key_id", metavar="KEY_ID")

    keys.set_defaults(func=run_keys)


def db_url(arg: str | None) -> str | None:
    """``--db``, else ``$AVATARIUM_DB_URL``, else None (the store's default)."""
    return arg or os.environ.get(DB_URL_ENV) or None


def run_keys(args: argparse.Namespace) -> int:
    try:
        store = Store(db_url(args.db))
    except Exception as exc:  # noqa: BLE001 - a bad URL or an unreachable server: say which, briefly
        print(f"avatarium: error: cannot open the database: {type(exc).__name__}: {str(exc).splitlines()[0]}",
              file=sys.stderr)
        return 2
    try:
        action = {"create": _create, "list": _list, "revoke": _revoke}[args.keys_action]
        return action(store, args)
    except (AvatariumError, ValueError) as exc:
        code = getattr(exc, "code", "invalid_argument")
        print(f"avatarium: error [{code}]: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    finally:
        store.close()


def _create(store: Store, args: argparse.Namespace) -> int:
    normalize_scopes(args.scopes)  # before creating a tenant: a typo leaves nothing behind
    tenant = store.get_tenant(args.tenant)
    created_tenant = tenant is None
    if tenant is None:
        tenant = store.create_tenant(args.tenant)
    key = store.create_key(tenant.id, scopes=args.scopes, label=args.label)
    if args.json:
        print(json.dumps({"key_id": key.key_id, "tenant": tenant.name, "tenant_id": tenant.id,
                          "tenant_created": created_tenant, "scopes": list(key.scopes), "label": args.label,
                          "secret": key.secret, "warning": WARNING}, indent=1))
    else:
        if created_tenant:
            print(f"Created tenant {tenant.name!r} ({tenant.id}).")
        print(f"Created key {key.key_id} for tenant {tenant.name!r}, scopes {','.join(key.scopes)}:")
        print()
        print(f"    {key.secret}")
        print()
    print(f"WARNING: {WARNING}", file=sys.stderr)
    return 0


def _list(store: Store, args: argparse.Namespace) -> int:
    tenant_id = None
    if args.tenant is not None:
        tenant = store.get_tenant(args.tenant)
        if tenant is None:
            print(f"avatarium: error [not_found]: no tenant named {args.tenant!r}", file=sys.stderr)
            return 1
        tenant_id = tenant.id
    names = {t.id: t.name for t in store.list_tenants()}
    rows = [_key_row(k, names.get(k.tenant_id, "?")) for k in store.list_keys(tenant_id)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    if not rows:
        print("no keys")
        return 0
    print(f"{'key id':<18}{'tenant':<20}{'scopes':<24}{'created':<18}{'last used':<18}{'status':<10}label")
    for r in rows:
        print(f"{r['key_id']:<18}{r['tenant'][:19]:<20}{','.join(r['scopes'])[:23]:<24}{_when(r['created_at']):<18}"
              f"{_when(r['last_used_at']):<18}{'revoked' if r['revoked_at'] else 'active':<10}{r['label']}")
    return 0


def _revoke(store: Store, args: argparse.Namespace) -> int:
    if store.revoke_key(args.key_id):
        print(json.dumps({"key_id": args.key_id, "revoked": True}) if args.json else f"Revoked key {args.key_id}.")
        return 0
    known = any(k.key_id == args.key_id for k in store.list_keys())
    reason = "is revoked already" if known else "does not exist"
    print(f"avatarium: error [not_found]: key {args.key_id!r} {reason}", file=sys.stderr)
    return 1


def _key_row(key: KeyInfo, tenant: str) -> dict[str, Any]:
    return {"key_id": key.key_id, "tenant": tenant, "tenant_id": key.tenant_id, "scopes": list(key.scopes),
            "label": key.label, "created_at": key.created_at, "last_used_at": key.last_used_at,
            "revoked_at": key.revoked_at}


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
