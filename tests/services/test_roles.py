"""How an operator gets an administrator: ``accounts.admin_emails`` at login (every backend),
and ``grass user promote|demote`` on PostgreSQL (a real process); both audited."""

from __future__ import annotations

import datetime as dt
import sys
from urllib.parse import quote

import attrs
import pytest
import trio

from grass.domain.admin import AuditAction
from grass.domain.users import Role
from grass.services.roles import EmailNotVerified, Roles, UnknownEmail
from grass.storage.postgres.storage import open_postgres_storage
from tests.foundation.test_cli import _env
from tests.http.conftest import PASSWORD, make_actor, open_full_app, quick_config
from tests.http.helpers import bearer
from tests.storage.conftest import T0, add_user


def clock() -> dt.datetime:
    return T0


async def test_a_listed_verified_email_is_promoted_at_login_and_audited(storage):
    roles = Roles(storage, clock)
    listed = await add_user(storage, email="ops@example.com", email_verified=True)
    unverified = await add_user(storage, email="ops2@example.com")
    other = await add_user(storage, email_verified=True)
    admins = ["OPS@example.com", "ops2@example.com"]
    promoted = await roles.at_login(listed, admins, "203.0.113.5")
    assert promoted.role is Role.ADMIN
    assert (await storage.users.get_user(listed.id)).role is Role.ADMIN
    assert (await roles.at_login(unverified, admins, None)).role is Role.USER
    assert (await roles.at_login(other, admins, None)).role is Role.USER
    # Logging in again changes nothing, and writes no second audit entry.
    assert (await roles.at_login(promoted, admins, None)).role is Role.ADMIN
    (entry,) = (await storage.audit.list_audit()).items
    assert (entry.action, entry.target_id, entry.actor_id) == (
        AuditAction.USER_PROMOTE,
        listed.id,
        None,
    )
    assert entry.details == {"by": "config", "email": "ops@example.com"}
    assert entry.ip == "203.0.113.5"


async def test_promote_and_demote_by_email(storage):
    roles = Roles(storage, clock)
    user = await add_user(storage, email="ann@example.com", email_verified=True)
    assert (await roles.set_role("Ann@Example.com", Role.ADMIN, by="cli")).role is Role.ADMIN
    assert (await roles.set_role("ann@example.com", Role.ADMIN, by="cli")).role is Role.ADMIN
    assert (await roles.set_role("ann@example.com", Role.USER, by="cli")).role is Role.USER
    actions = [e.action for e in (await storage.audit.list_audit()).items]
    assert actions == [AuditAction.USER_DEMOTE, AuditAction.USER_PROMOTE]
    with pytest.raises(UnknownEmail):
        await roles.set_role("nobody@example.com", Role.ADMIN, by="cli")
    fresh = await add_user(storage, email="new@example.com")
    with pytest.raises(EmailNotVerified):
        await roles.set_role(fresh.email, Role.ADMIN, by="cli")
    assert (await storage.users.get_user(user.id)).role is Role.USER


async def test_admin_emails_over_http():
    config = quick_config(accounts={"admin_emails": ("ops@example.com",)})
    async with open_full_app(config) as full:
        me = await make_actor(full.storage, email="ops@example.com")
        client = full.client()
        login = {"email": "ops@example.com", "password": PASSWORD}
        before = await client.post("/api/v1/auth/login", json=login)
        assert (await before.get_json())["user"]["role"] == "user"  # not verified yet
        await full.storage.users.update_user(attrs.evolve(me.user, email_verified=True))
        after = await client.post("/api/v1/auth/login", json=login)
        assert (await after.get_json())["user"]["role"] == "admin"
        token = (await after.get_json())["token"]
        flags = await client.get("/api/v1/admin/flags", headers=bearer(token))
        assert flags.status_code == 200
        audit = await client.get("/api/v1/admin/audit", headers=bearer(token))
        (entry,) = (await audit.get_json())["items"]
        assert (entry["action"], entry["target_id"]) == ("user.promote", me.id)


async def grass_user(dsn: str, *args: str) -> trio.Process:
    return await trio.run_process(
        [sys.executable, "-m", "grass", "user", *args],
        env=_env(GRASS_STORAGE="postgres", GRASS_POSTGRES_DSN=dsn),
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def test_grass_user_promote_and_demote_on_postgresql(postgres_dsn, pg_fresh_schema):
    dsn = f"{postgres_dsn}?options={quote(f'-csearch_path={pg_fresh_schema}')}"
    async with open_postgres_storage(postgres_dsn, schema=pg_fresh_schema) as storage:
        user = await add_user(storage, email="ops@example.com", email_verified=True)
        done = await grass_user(dsn, "promote", "ops@example.com")
        assert done.returncode == 0, done.stderr.decode()
        assert f"ops@example.com ({user.id}) is now an administrator" in done.stdout.decode()
        assert (await storage.users.get_user(user.id)).role is Role.ADMIN
        missing = await grass_user(dsn, "promote", "nobody@example.com")
        assert missing.returncode == 1
        assert b"no user with the email nobody@example.com" in missing.stderr
        done = await grass_user(dsn, "demote", "ops@example.com")
        assert done.returncode == 0, done.stderr.decode()
        assert (await storage.users.get_user(user.id)).role is Role.USER
        entries = (await storage.audit.list_audit()).items
        assert [(e.action, e.details["by"]) for e in entries] == [
            (AuditAction.USER_DEMOTE, "cli"),
            (AuditAction.USER_PROMOTE, "cli"),
        ]


async def test_grass_user_on_memory_points_to_admin_emails():
    done = await trio.run_process(
        [sys.executable, "-m", "grass", "user", "promote", "ops@example.com"],
        env=_env(),
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 2
    assert b"accounts.admin_emails" in done.stderr
