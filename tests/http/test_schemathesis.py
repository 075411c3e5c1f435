"""Schemathesis against the live server (``grass.app.run`` on loopback, hypercorn on port 0),
with every check, including ``ignored_auth`` and ``object_level_authorization``.

Two registered users, alice and bob, log in through ``POST /api/v1/auth/login`` (a Web Fuzzing
Commons auth file) and are declared *peers*: neither may see the other's objects. Each has two
devices, so the lists hand schemathesis real ids of one peer to try as the other. The routes that
end the caller's own session (logout, revoking a session) run in a second pass as alice alone:
run among the others they kill the identity schemathesis is testing with, and its per-operation
identity switching then reports its own confusion, not the API's. The admin routes run a third
time as carol, an administrator through ``accounts.admin_emails`` (with the peers they only ever
get 403).

Where the schema cannot say that a well-formed request may still fail because of the server's
state (an unknown referral code, a mailed token that does not exist, a wrong current password, a
cursor no list produced), the statuses of the errors the route declares are accepted for
schema-valid data (positive_data_acceptance); nothing else is relaxed. Login lockouts and rate
limits are off for the run (they answer 429, which every check accepts, and would only make the
run slower); tests/services and tests/http/test_accounts_http.py cover them.

The summary (operations, cases, failures) is printed; ``pytest -s`` shows it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
from pathlib import Path

import attrs
import httpx
import pytest
import trio

from grass.app import Server, run
from grass.domain.admin import Ban, BanKind
from grass.domain.devices import Device, DeviceType
from grass.http.api import Route, api_of
from grass.ids import new_uuid, short_id
from grass.storage.abc import Storage
from tests.http.conftest import open_full_app, quick_config

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 12
SESSION_ENDERS = ("logout", "revoke_session")
USERS = {"alice": "password-alice", "bob": "password-bob", "carol": "password-carol"}
ADMIN = "carol"
SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
DEFAULT_POSITIVE = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]
ADMIN_ROUTES = ["--include-tag", "admin"]


def wfc_auth(names: list[str]) -> dict:
    return {
        "auth": [
            {
                "name": name,
                "loginEndpointAuth": {
                    "endpoint": "/api/v1/auth/login",
                    "verb": "POST",
                    "contentType": "application/json",
                    "payloadUserPwd": {
                        "username": f"{name}@example.com",
                        "usernameField": "email",
                        "password": USERS[name],
                        "passwordField": "password",
                    },
                    "token": {
                        "extractFrom": "body",
                        "extractSelector": "/token",
                        "sendIn": "header",
                        "sendName": "Authorization",
                        "sendTemplate": "Bearer {token}",
                    },
                },
            }
            for name in names
        ]
    }


def toml_config(routes: list[Route], auth_file: Path, peers: list[str]) -> str:
    lines = [
        "[auth.wfc]",
        f'path = "{auth_file}"',
        "refresh_interval = 1",
    ]
    if len(peers) > 1:
        lines.append(f"peers = {json.dumps(peers)}")
    for route in routes:
        stateful = {str(e.http_status) for e in route.errors}
        if route.page_of is not None:
            stateful.add("400")
        if stateful - set(DEFAULT_POSITIVE):
            statuses = DEFAULT_POSITIVE + sorted(stateful - set(DEFAULT_POSITIVE))
            lines += [
                "",
                "[[operations]]",
                f'include-operation-id = "{route.name}"',
                f"checks.positive_data_acceptance.expected-statuses = {json.dumps(statuses)}",
            ]
    return "\n".join(lines) + "\n"


def summary(output: str) -> dict[str, int]:
    operations = re.search(r"Tested: (\d+)", output)
    cases = re.search(r"(\d+) generated", output)
    failures = re.search(r"(\d+) found (\d+) unique failures?", output)
    return {
        "operations": int(operations.group(1)) if operations else 0,
        "cases": int(cases.group(1)) if cases else 0,
        "failures": int(failures.group(2)) if failures else 0,
    }


async def schemathesis(
    server: Server, tmp: Path, label: str, names: list[str], select: list[str]
) -> tuple[int, str]:
    async with open_full_app() as full:  # the same declarations as the server's
        routes = list(api_of(full.app).routes)
    auth_file = tmp / f"{label}-auth.json"
    auth_file.write_text(json.dumps(wfc_auth(names)))
    config_file = tmp / f"{label}.toml"
    config_file.write_text(toml_config(routes, auth_file, names))
    command = [
        SCHEMATHESIS,
        "--config-file",
        str(config_file),
        "run",
        f"http://127.0.0.1:{server.http_port}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        "20261122",
        "--workers",
        "1",
        "--no-color",
        *select,
    ]
    done = await trio.run_process(
        command, capture_stdout=True, capture_stderr=True, check=False, cwd=tmp
    )
    return done.returncode, done.stdout.decode() + done.stderr.decode()


async def give_devices(storage: Storage, user_id: str, count: int = 2) -> None:
    at = dt.datetime.now(dt.UTC)
    for n in range(count):
        await storage.devices.create_device(
            Device(
                device_id=new_uuid(),
                user_id=user_id,
                type=DeviceType.EXTENSION,
                ip=f"198.51.100.{n + 1}",
                first_seen=at,
                last_seen=at,
            )
        )


async def test_schemathesis_finds_no_failure(tmp_path):
    config = quick_config(
        server={"http_host": "127.0.0.1", "http_port": 0, "node_host": "127.0.0.1", "node_port": 0},
        accounts={
            "max_failures_per_account": 0,
            "max_failures_per_ip": 0,
            "admin_emails": (f"{ADMIN}@example.com",),
        },
    )
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(run, config)
        storage = server.backends.storage
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.http_port}") as client:
            for name, password in USERS.items():
                response = await client.post(
                    "/api/v1/auth/register",
                    json={"email": f"{name}@example.com", "password": password},
                )
                assert response.status_code == 201, response.text
                user = await storage.users.get_user(response.json()["id"])
                if name == ADMIN:  # verified: promoted when it logs in
                    await storage.users.update_user(attrs.evolve(user, email_verified=True))
                else:
                    await give_devices(storage, user.id)
        # Something for the admin pass to list and lift.
        ban = Ban(
            id=short_id(),
            kind=BanKind.IP_RANGE,
            target="192.0.2.0/24",
            created_by=None,
            created_at=dt.datetime.now(dt.UTC),
        )
        await storage.bans.add_ban(ban)
        peers = ["alice", "bob"]
        excluded = [arg for name in SESSION_ENDERS for arg in ("--exclude-operation-id", name)]
        included = [arg for name in SESSION_ENDERS for arg in ("--include-operation-id", name)]
        passes = [
            ("peers", await schemathesis(server, tmp_path, "peers", peers, excluded)),
            ("session-enders", await schemathesis(server, tmp_path, "enders", ["alice"], included)),
            ("admin", await schemathesis(server, tmp_path, "admin", [ADMIN], ADMIN_ROUTES)),
        ]
        server.shutdown()
    totals = dict.fromkeys(("operations", "cases", "failures"), 0)
    for label, (code, output) in passes:
        figures = summary(output)
        print(f"schemathesis {label}: {figures}")
        totals = {k: totals[k] + figures[k] for k in totals}
        if label == "admin":  # carol is an admin: the admin routes answered her, not 403
            assert "admin_only" not in output, output[-3000:]
        assert figures["operations"] > 0, output[-3000:]
        if label == "peers":  # object_level_authorization needs two peers, and has them here
            assert "will not run" not in output, output[-3000:]
        assert code == 0, output[-6000:]
        assert figures["failures"] == 0, output[-6000:]
    print(f"schemathesis in all: {totals}")
