"""Services run on every storage backend, like the conformance suite."""

from tests.storage.conftest import open_storage, pg_storage_schema, storage  # noqa: F401
