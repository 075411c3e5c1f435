"""Services run on every storage backend, like the conformance suite."""

from tests.storage.conftest import open_storage, pg_storage_schema, storage  # noqa: F401
from tests.storage.postgres.conftest import pg_fresh_schema  # noqa: F401
