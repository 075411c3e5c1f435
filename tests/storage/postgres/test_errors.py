"""Driver errors become storage errors, with safe messages, in one place."""

from __future__ import annotations

import datetime as dt

import pytest
import triopg.exceptions as pg

from grass.errors import (
    IntegrityViolation,
    InvalidValue,
    RowRefused,
    StorageConflict,
    StorageUnavailable,
)
from grass.ids import short_id
from grass.postgres.errors import SerializationConflict, storage_error, translate_errors

AT = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
SECRET_EMAIL = "private.person@example.org"


async def _add_user(conn, user_id=None, email=None):
    user_id = user_id or short_id()
    await conn.execute(
        "INSERT INTO users (id, email, referral_code, password_hash, password_changed_at,"
        " created_at) VALUES ($1, $2, $3, 'x', $4, $4)",
        user_id,
        email or f"{user_id}@example.org",
        "c" + user_id[:10].replace("-", "a"),
        AT,
    )
    return user_id


async def test_unique_violation_is_a_conflict_without_the_value(pg_migrated):
    await pg_migrated.run(lambda c: _add_user(c, email=SECRET_EMAIL))
    with pytest.raises(StorageConflict) as caught:
        await pg_migrated.run(lambda c: _add_user(c, email=SECRET_EMAIL))
    error = caught.value
    assert type(error) is StorageConflict
    assert error.message == "unique constraint users_email_key violated"
    assert error.details == {"sqlstate": "23505", "constraint": "users_email_key", "table": "users"}
    assert SECRET_EMAIL not in repr(error.details)
    assert isinstance(error.__cause__, pg.UniqueViolationError)


@pytest.mark.parametrize(
    ("sql", "constraint"),
    [
        # 23503: a session of a user that does not exist
        (
            "INSERT INTO sessions (token_hash, user_id, created_at, expires_at)"
            f" VALUES (repeat('a', 64), '{'u' * 21}', now(), now())",
            "sessions_user_id_fkey",
        ),
        # 23514: an unknown device type
        ("UPDATE users SET role = 'emperor'", "users_role_check"),
    ],
)
async def test_reference_and_check_violations_are_integrity_errors(pg_migrated, sql, constraint):
    await pg_migrated.run(_add_user)
    with pytest.raises(IntegrityViolation) as caught:
        await pg_migrated.run(lambda c: c.execute(sql))
    assert caught.value.details["constraint"] == constraint
    assert constraint in caught.value.message
    assert caught.value.http_status == 409


async def test_not_null_violation_is_an_integrity_error(pg_migrated):
    with pytest.raises(IntegrityViolation) as caught:
        await pg_migrated.run(
            lambda c: c.execute("INSERT INTO feature_flags (name, enabled) VALUES ('x', NULL)")
        )
    assert caught.value.details["sqlstate"] == "23502"
    assert caught.value.details["column"] == "enabled"
    assert caught.value.message == "not-null constraint enabled violated"


async def test_exclusion_violation_is_a_conflict(pg_migrated):
    insert = (
        "INSERT INTO epochs (number, name, starts_at, ends_at)"
        " VALUES ($1, 'e', $2::timestamptz, $2::timestamptz + interval '7 days')"
    )
    await pg_migrated.run(lambda c: c.execute(insert, 1, AT))
    with pytest.raises(StorageConflict) as caught:
        await pg_migrated.run(lambda c: c.execute(insert, 2, AT + dt.timedelta(days=3)))
    assert caught.value.details["constraint"] == "epochs_no_overlap"


async def test_statement_timeout_is_unavailable(pg_open):
    async with pg_open(server_settings={"statement_timeout": "50ms"}) as db:
        with pytest.raises(StorageUnavailable, match="canceling statement due to statement"):
            await db.run(lambda c: c.execute("SELECT pg_sleep(5)"))


async def test_a_bug_in_sql_is_not_disguised(pg_db):
    with pytest.raises(pg.PostgresSyntaxError):
        await pg_db.run(lambda c: c.execute("SELEKT 1"))


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (pg.TooManyConnectionsError("sorry, too many clients already"), StorageUnavailable),
        (pg.AdminShutdownError("terminating connection"), StorageUnavailable),
        (pg.CannotConnectNowError("the database system is starting up"), StorageUnavailable),
        (pg.ConnectionFailureError("connection failure"), StorageUnavailable),
        (pg.DiskFullError("could not extend file"), StorageUnavailable),
        (pg.InterfaceError("connection is closed"), StorageUnavailable),
        (pg.InternalClientError("cannot switch to state 15"), StorageUnavailable),
        (ConnectionResetError(104, "Connection reset by peer"), StorageUnavailable),
        (TimeoutError(), StorageUnavailable),
        (pg.SerializationError("could not serialize access"), SerializationConflict),
        (pg.DeadlockDetectedError("deadlock detected"), SerializationConflict),
        (pg.UniqueViolationError("duplicate key"), StorageConflict),
        (pg.ForeignKeyViolationError("violates foreign key"), IntegrityViolation),
        (pg.CheckViolationError("violates check"), IntegrityViolation),
        (pg.NotNullViolationError("null value"), IntegrityViolation),
    ],
)
def test_each_code_maps_to_its_kind(exc, kind):
    mapped = storage_error(exc, target="db:5432/grass")
    assert type(mapped) is kind
    with pytest.raises(kind) as caught, translate_errors(target="db:5432/grass"):
        raise exc
    assert caught.value.__cause__ is exc


def test_unavailable_messages_name_the_target_and_the_phase():
    refused = ConnectionRefusedError(111, "Connect call failed ('10.1.1.1', 5432)")
    at_start = storage_error(refused, target="10.1.1.1:5432/grass", connecting=True)
    assert at_start is not None
    assert at_start.message == (
        "cannot connect to PostgreSQL at 10.1.1.1:5432/grass: "
        "[Errno 111] Connect call failed ('10.1.1.1', 5432)"
    )
    later = storage_error(pg.AdminShutdownError("terminating"), target="h:1/d")
    assert later is not None
    assert later.message == "lost connection to PostgreSQL at h:1/d: terminating"


def test_values_the_database_cannot_store_are_invalid_values_that_do_not_quote_them():
    encode = UnicodeEncodeError("utf-8", "4\udfff", 1, 2, "surrogates not allowed")
    wrapped = pg.DataError("invalid input for query argument $4: ['4\\udfff'] (surrogates ...)")
    wrapped.__cause__ = encode
    overflow = OverflowError("value out of int32 range")
    for exc in (
        encode,  # COPY raises it as it is
        wrapped,  # a statement's argument: wrapped in the driver's DataError
        overflow,
        pg.CharacterNotInRepertoireError('invalid byte sequence for encoding "UTF8": 0x00'),
        pg.UntranslatableCharacterError("unsupported Unicode escape sequence"),
        pg.StringDataRightTruncationError("value too long for type character varying(64)"),
    ):
        mapped = storage_error(exc, target="t")
        assert type(mapped) is InvalidValue, exc
        assert isinstance(mapped, RowRefused)
        assert mapped.http_status == 422
        assert "udfff" not in mapped.message
        assert "0x00" not in mapped.message
    wrong_type = pg.DataError("invalid input for query argument $1: 'x' (an integer is required)")
    wrong_type.__cause__ = TypeError("an integer is required")
    assert storage_error(wrong_type, target="t") is None  # our bug, not the row's


async def test_text_the_database_cannot_store_is_an_invalid_value(pg_migrated):
    async def insert(conn, email):
        await _add_user(conn, email=email)

    for email in ("x\udfff@example.org", "x\x00@example.org"):
        with pytest.raises(InvalidValue):
            await pg_migrated.run(lambda c, email=email: insert(c, email))
    await pg_migrated.run(_add_user)  # the pool goes on


def test_misuse_of_the_driver_and_other_errors_pass_through():
    assert storage_error(pg.InterfaceError("another operation is in progress"), target="t") is None
    assert storage_error(pg.DivisionByZeroError("division by zero"), target="t") is None
    assert storage_error(ValueError("x"), target="t") is None
    assert storage_error(StorageConflict("already mapped"), target="t") is None


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("SELECT $1::bigint", 2**63),  # the driver's DataError from OverflowError
        ("SELECT $1::bigint", -(2**63) - 1),
        ("SELECT $1::int", 2**31),
        ("SELECT $1::smallint", 2**15),
        ("SELECT $1::bigint[]", [1, 2**63]),  # an array element: wrapped the same way
        ("SELECT $1::float8", 10**400),
        ("SELECT $1::numeric(5, 0)", 10**10),  # the server's 22003
        ("SELECT $1::int + 1", 2**31 - 1),
    ],
)
async def test_every_number_out_of_range_is_an_invalid_value(pg_migrated, sql, value):
    """Whichever way the driver or the server refuses a number, the row is at fault."""
    with pytest.raises(InvalidValue) as caught:
        await pg_migrated.run(lambda c: c.fetchval(sql, value))
    assert caught.value.message == "cannot store a number out of its column's range"
    assert str(value) not in repr(caught.value.details)


@pytest.mark.parametrize("row", [(2**31, 1), (1, 2**63), (1, 2**64)])
async def test_a_number_out_of_range_in_copy_is_an_invalid_value(pg_migrated, row):
    """COPY raises the encoder's OverflowError as it is (not wrapped in a DataError)."""

    async def copy(conn):
        await conn.execute("CREATE TEMP TABLE numbers (small int, big bigint)")
        await conn.copy_records_to_table("numbers", records=[row], columns=["small", "big"])

    with pytest.raises(InvalidValue) as caught:
        await pg_migrated.run(copy)
    assert isinstance(caught.value.__cause__, OverflowError)
