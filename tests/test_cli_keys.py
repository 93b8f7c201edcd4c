"""`avatarium keys create|list|revoke`: the secret is printed once, listings never show secrets or hashes, a
revoked key stops working. Driven through a parser built with ``add_keys_parser`` (as cli.py wires it)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from avatarium_lab.conversation import Store
from avatarium_lab.conversation import store as store_module
from avatarium_lab.conversation.cli import add_keys_parser, run_keys

KEY_RE = re.compile(r"avk_[0-9a-f]{16}_[A-Za-z0-9_\-]{43}")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="avatarium")
    sub = parser.add_subparsers(dest="command", required=True)
    add_keys_parser(sub)
    args = parser.parse_args(argv)
    assert args.func is run_keys
    return args.func(args)


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.delenv("AVATARIUM_DB_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the default database is never the user's
    return f"sqlite:///{tmp_path / 'keys.db'}"


def stored_hashes(db: str) -> list[str]:
    with Store(db) as store, store._engine.connect() as conn:
        return list(conn.execute(sa.select(store_module.api_keys.c.key_hash)).scalars())


def test_create_prints_the_secret_once_with_a_warning_and_it_authenticates(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["keys", "create", "--tenant", "acme", "--label", "laptop", "--db", db]) == 0
    out, err = capsys.readouterr()
    secrets = KEY_RE.findall(out)
    assert len(secrets) == 1 and out.count(secrets[0]) == 1
    assert "Created tenant 'acme'" in out and "chat,read,upload" in out
    assert "will not be shown again" in err and secrets[0] not in err
    with Store(db) as store:
        principal = store.authenticate(secrets[0])
        assert principal is not None and principal.tenant_id == store.get_tenant("acme").id  # type: ignore[union-attr]
        assert principal.scopes == {"chat", "read", "upload"}

    # a second key for the same tenant reuses it; --json gives the secret in a field
    assert run(["keys", "create", "--tenant", "acme", "--scopes", "read", "--db", db, "--json"]) == 0
    out, err = capsys.readouterr()
    data = json.loads(out)
    assert data["tenant"] == "acme" and data["tenant_created"] is False and data["scopes"] == ["read"]
    assert KEY_RE.fullmatch(data["secret"]) and "will not be shown again" in err
    with Store(db) as store:
        assert store.authenticate(data["secret"]).scopes == {"read"}  # type: ignore[union-attr]


def test_list_never_shows_secrets_or_hashes(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(["keys", "create", "--tenant", "acme", "--db", db, "--json"])
    run(["keys", "create", "--tenant", "beta", "--label", "ci", "--db", db, "--json"])
    created = [json.loads(chunk) for chunk in re.findall(r"\{.*?\n\}", capsys.readouterr().out, re.S)]
    secrets = [c["secret"] for c in created]
    hashes = stored_hashes(db)
    assert len(secrets) == len(hashes) == 2

    assert run(["keys", "list", "--db", db]) == 0
    text = capsys.readouterr().out
    assert run(["keys", "list", "--db", db, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for output in (text, json.dumps(rows)):
        for secret in secrets:
            assert secret not in output and secret[-43:] not in output
        for h in hashes:
            assert h not in output
    assert {r["tenant"] for r in rows} == {"acme", "beta"} and all("secret" not in r for r in rows)
    assert all(c["key_id"] in text for c in created) and "ci" in text

    assert run(["keys", "list", "--tenant", "beta", "--db", db, "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["key_id"] == created[1]["key_id"] and row["label"] == "ci" and row["revoked_at"] is None
    assert run(["keys", "list", "--tenant", "nobody", "--db", db]) == 1
    assert "no tenant named 'nobody'" in capsys.readouterr().err


def test_revoke_stops_the_key_at_once(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    run(["keys", "create", "--tenant", "acme", "--db", db, "--json"])
    key = json.loads(capsys.readouterr().out)
    assert run(["keys", "revoke", key["key_id"], "--db", db]) == 0
    assert f"Revoked key {key['key_id']}" in capsys.readouterr().out
    with Store(db) as store:
        assert store.authenticate(key["secret"]) is None
    assert run(["keys", "revoke", key["key_id"], "--db", db]) == 1
    assert "revoked already" in capsys.readouterr().err
    assert run(["keys", "revoke", "0123456789abcdef", "--db", db]) == 1
    assert "does not exist" in capsys.readouterr().err
    run(["keys", "list", "--db", db, "--json"])
    assert json.loads(capsys.readouterr().out)[0]["revoked_at"] is not None


def test_db_defaults_to_the_environment_variable(db: str, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("AVATARIUM_DB_URL", db)
    assert run(["keys", "create", "--tenant", "acme", "--json"]) == 0
    key = json.loads(capsys.readouterr().out)
    with Store(db) as store:
        assert store.authenticate(key["secret"]) is not None


def test_the_default_database_is_in_the_users_data_directory(db: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["keys", "create", "--tenant", "acme"]) == 0
    assert (tmp_path / "home/.local/share/avatarium-lab/avatarium.db").is_file()


def test_bad_input_fails_clearly(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["keys", "create", "--tenant", "acme", "--scopes", "chat,root", "--db", db]) == 2
    err = capsys.readouterr().err
    assert "unknown scope" in err and "root" in err
    with Store(db) as store:
        assert store.get_tenant("acme") is None, "nothing is created when the scopes are wrong"
    assert run(["keys", "list", "--db", "nosuchdriver://x"]) == 2
    assert "cannot open the database" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(["keys"])  # an action is required
    with pytest.raises(SystemExit):
        run(["keys", "create", "--db", db])  # --tenant is required
