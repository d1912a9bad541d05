"""Per-tenant API tokens: hashed at rest, scoped, revocable; and ``certify tokens`` on the command line."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from certify.errors import UsageError
from certify.service import tokens
from certify.service.db import tokens as tokens_table
from certify.service.store import Store, utcnow
from conftest import run_certify
from pgserver import db_url, postgres_server  # noqa: F401 - fixtures


@pytest.fixture
def store(db_url):
    s = Store.open(db_url)
    yield s
    s.close()


def test_a_token_is_stored_only_as_the_digest_of_its_secret(store):
    made = tokens.create(store, "acme", "submit,read", "ci")
    assert made.secret.startswith("cfy_") and len(made.secret) == 47
    with store.engine.connect() as c:
        row = c.execute(sa.select(tokens_table)).one()
    assert row.secret_sha256 == hashlib.sha256(made.secret.encode()).hexdigest()
    assert made.secret not in json.dumps([str(v) for v in row])


def test_verify_names_the_tenant_and_scopes_and_refuses_unknown_malformed_and_revoked(store):
    made = tokens.create(store, "acme", ["read", "submit"], "ci")
    principal = tokens.verify(store, made.secret)
    assert principal.tenant == "acme" and principal.scopes == {"submit", "read"} and principal.token_id == made.id
    assert principal.allows("submit") and not principal.allows("admin")
    other = made.secret[:-1] + ("A" if made.secret[-1] != "A" else "B")
    for bad in (other, "", "cfy_", "Bearer " + made.secret, made.secret + "x", "cfy_" + "a" * 43, "\x00" * 47):
        assert tokens.verify(store, bad) is None
    assert tokens.revoke(store, made.id).revoked_at is not None
    assert tokens.verify(store, made.secret) is None
    assert tokens.revoke(store, "tok_unknown") is None


def test_tokens_of_two_tenants_never_cross(store):
    acme = tokens.create(store, "acme", "submit")
    globex = tokens.create(store, "globex", "read,admin")
    assert tokens.verify(store, acme.secret).tenant == "acme"
    assert tokens.verify(store, globex.secret).tenant == "globex"
    assert [t.id for t in tokens.list_tokens(store, "acme")] == [acme.id]
    tokens.revoke(store, acme.id)
    assert tokens.verify(store, globex.secret) is not None


def test_last_used_is_recorded_without_a_write_on_every_request(store):
    made = tokens.create(store, "acme", "read")
    t0 = utcnow()
    tokens.verify(store, made.secret, now=t0)
    assert tokens.list_tokens(store)[0].last_used_at == t0
    tokens.verify(store, made.secret, now=t0 + timedelta(seconds=30))
    assert tokens.list_tokens(store)[0].last_used_at == t0
    tokens.verify(store, made.secret, now=t0 + timedelta(minutes=2))
    assert tokens.list_tokens(store)[0].last_used_at == t0 + timedelta(minutes=2)


@pytest.mark.parametrize("scopes", ["", ",", "root", "read,write", ["submit", "sudo"]])
def test_unknown_or_missing_scopes_are_refused(store, scopes):
    with pytest.raises(UsageError):
        tokens.create(store, "acme", scopes)
    assert tokens.list_tokens(store) == []


# -- the command line ----------------------------------------------------------------------------

def test_tokens_create_list_revoke_on_the_command_line(tmp_path):
    data = tmp_path / "data"
    made = run_certify("tokens", "create", "--tenant", "acme", "--scope", "submit,read", "--name", "vendor ci",
                       "--data", str(data))
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert secret.startswith("cfy_") and made.stdout.count("\n") == 1
    token_id = made.stderr.split()[1]
    assert token_id.startswith("tok_") and "shown only now" in made.stderr
    store = Store.open(f"sqlite:///{data / 'certify.db'}", migrate=False)
    try:
        assert tokens.verify(store, secret).tenant == "acme"
        listed = run_certify("tokens", "list", "--data", str(data))
        assert listed.returncode == 0 and token_id in listed.stdout and "vendor ci" in listed.stdout
        assert "active" in listed.stdout and secret not in listed.stdout + listed.stderr
        as_json = json.loads(run_certify("tokens", "list", "--format", "json", "--data", str(data)).stdout)
        assert [(t["id"], t["tenant"], t["scopes"]) for t in as_json] == [(token_id, "acme", ["submit", "read"])]
        revoked = run_certify("tokens", "revoke", token_id, "--data", str(data))
        assert revoked.returncode == 0 and token_id in revoked.stdout
        assert tokens.verify(store, secret) is None
        assert "revoked" in run_certify("tokens", "list", "--data", str(data)).stdout
    finally:
        store.close()


def test_tokens_on_the_command_line_against_postgresql(postgres_server):
    url = postgres_server.new_database()
    made = run_certify("tokens", "create", "--tenant", "acme", "--scope", "admin", "--db", url)
    assert made.returncode == 0, made.stderr
    listed = run_certify("tokens", "list", "--db", url)
    assert "acme" in listed.stdout and made.stdout.strip() not in listed.stdout


def test_tokens_data_directory_comes_from_the_environment(tmp_path):
    import os

    env = {**os.environ, "CERTIFY_DATA": str(tmp_path / "from-env")}
    assert run_certify("tokens", "create", "--tenant", "acme", "--scope", "read", env=env).returncode == 0
    assert (tmp_path / "from-env" / "certify.db").is_file()


@pytest.mark.parametrize(("argv", "complaint", "code"), [
    (["create", "--tenant", "acme", "--scope", "submit,root"], "unknown scope 'root'", 2),
    (["create", "--tenant", "Not A Tenant", "--scope", "read"], "tenant 'Not A Tenant'", 2),
    (["create", "--tenant", "acme"], "the following arguments are required: --scope", 2),
    (["revoke", "tok_nope"], "no token 'tok_nope'", 2),
    (["list", "--db", "mysql://u@h/d"], "unsupported database", 2),
    (["list", "--db", "postgresql://u@127.0.0.1:1/d"], "cannot open the database", 3),
])
def test_tokens_errors_are_one_line_and_store_nothing_they_should_not(tmp_path, argv, complaint, code):
    data = tmp_path / "data"
    done = run_certify("tokens", *argv, *([] if "--db" in argv else ["--data", str(data)]))
    assert done.returncode == code and complaint in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr and done.stdout == ""
    if argv[0] == "create":
        assert not data.exists()  # refused before the database was made


def test_tokens_data_and_db_are_exclusive(tmp_path):
    done = run_certify("tokens", "list", "--data", str(tmp_path), "--db", "sqlite:///x.db")
    assert done.returncode == 2 and "not allowed with" in done.stderr
