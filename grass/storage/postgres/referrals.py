"""ReferralStore on PostgreSQL: one row per (referee, level), unique per (referrer, referee)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from grass.domain.pages import DEFAULT_PAGE_SIZE, Page, micros
from grass.domain.referrals import MAX_LEVEL, REF_LENGTH, Referral, ReferralStatus
from grass.postgres.connection import Connection, Record
from grass.storage.postgres.rows import after_time_text, page_of, row_count
from grass.storage.postgres.scope import Scope

__all__ = ["PgReferralStore"]

_COLUMNS = "referrer_id, referee_id, level, status, code, created_at"
#: Referral.ref in SQL: the first hex characters of sha256("<referrer>:<referee>"). Ids are
#: ASCII (short ids), so the UTF-8 bytes are the characters.
_REF = (
    "substr(encode(sha256(convert_to(referrer_id || ':' || referee_id, 'UTF8')), 'hex'),"
    f" 1, {REF_LENGTH})"
)


def _referral(row: Record) -> Referral:
    return Referral(
        referrer_id=row["referrer_id"],
        referee_id=row["referee_id"],
        level=row["level"],
        status=ReferralStatus(row["status"]),
        code=row["code"],
        created_at=row["created_at"],
    )


class PgReferralStore:
    def __init__(self, scope: Scope) -> None:
        self._scope = scope

    async def add_referrals(self, referrals: Sequence[Referral]) -> None:
        if not referrals:
            return
        columns = list(
            zip(
                *(
                    (r.referrer_id, r.referee_id, r.level, r.status.value, r.code, r.created_at)
                    for r in referrals
                ),
                strict=True,
            )
        )

        async def insert(conn: Connection) -> None:
            await conn.execute(
                f"INSERT INTO referrals ({_COLUMNS}) SELECT * FROM unnest($1::text[],"
                " $2::text[], $3::smallint[], $4::text[], $5::text[], $6::timestamptz[])",
                *(list(column) for column in columns),
            )

        await self._scope.write(insert)

    async def referrers_of(self, referee_ids: Collection[str]) -> dict[str, tuple[Referral, ...]]:
        wanted = sorted(set(referee_ids))
        if not wanted:
            return {}

        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                f"SELECT {_COLUMNS} FROM referrals WHERE referee_id = ANY($1::text[])"
                ' ORDER BY referee_id COLLATE "C", level',
                wanted,
            )

        chains: dict[str, list[Referral]] = {}
        for row in await self._scope.read(fetch):
            chains.setdefault(row["referee_id"], []).append(_referral(row))
        return {referee: tuple(chain) for referee, chain in chains.items()}

    async def list_referrals(
        self,
        referrer_id: str,
        *,
        level: int | None = None,
        cursor: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
    ) -> Page[Referral]:
        after_at, after_ref = after_time_text(cursor, limit)

        async def fetch(conn: Connection) -> list[Record]:
            # The referee's reference (grass.domain.referrals.referral_ref), not its id, is
            # the tie-breaker: it ends up in the cursor the referrer is handed.
            return await conn.fetch(
                f"SELECT {_COLUMNS} FROM (SELECT {_COLUMNS}, {_REF} AS ref FROM referrals"
                " WHERE referrer_id = $1::text AND ($2::smallint IS NULL OR level = $2)"
                " AND ($3::timestamptz IS NULL OR created_at >= $3)) AS r"
                ' WHERE $3::timestamptz IS NULL OR (created_at, ref COLLATE "C") > ($3, $4::text)'
                ' ORDER BY created_at, ref COLLATE "C" LIMIT $5',
                referrer_id,
                level,
                after_at,
                after_ref,
                limit + 1,
            )

        rows = await self._scope.read(fetch)
        return page_of(rows, limit, _referral, lambda r: (micros(r.created_at), r.ref))

    async def count_referrals(
        self, referrer_id: str, *, status: ReferralStatus | None = None
    ) -> dict[int, int]:
        async def fetch(conn: Connection) -> list[Record]:
            return await conn.fetch(
                "SELECT level, count(*) AS n FROM referrals WHERE referrer_id = $1::text"
                " AND ($2::text IS NULL OR status = $2) GROUP BY level",
                referrer_id,
                None if status is None else status.value,
            )

        counts = dict.fromkeys(range(1, MAX_LEVEL + 1), 0)
        for row in await self._scope.read(fetch):
            counts[row["level"]] = int(row["n"])
        return counts

    async def promote_referees(self, referee_ids: Collection[str], status: ReferralStatus) -> int:
        async def update(conn: Connection) -> str:
            return await conn.execute(
                "UPDATE referrals SET status = $2"
                " WHERE referee_id = ANY($1::text[]) AND status = ANY($3::text[])",
                list(referee_ids),
                status.value,
                [s.value for s in status.below()],
            )

        return row_count(await self._scope.write(update))
