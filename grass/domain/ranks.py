"""Referral ranks: named steps by the number of qualified referrals (configuration)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs


class InvalidRanks(ValueError):
    pass


@attrs.frozen(kw_only=True)
class Rank:
    name: str
    #: Qualified direct (level-1) referrals needed.
    min_qualified: int


def parse_ranks(specs: Iterable[str]) -> tuple[Rank, ...]:
    """``"name:count"`` entries, counts strictly increasing and the first 0."""
    ranks: list[Rank] = []
    for spec in specs:
        name, sep, count = spec.rpartition(":")
        if not sep or not name.strip() or not count.strip().isdigit():
            raise InvalidRanks(f"expected name:count, got {spec!r}")
        rank = Rank(name=name.strip(), min_qualified=int(count))
        if ranks and rank.min_qualified <= ranks[-1].min_qualified:
            raise InvalidRanks(f"counts must increase: {spec!r}")
        ranks.append(rank)
    if not ranks or ranks[0].min_qualified != 0:
        raise InvalidRanks("the first rank must need 0 referrals")
    return tuple(ranks)


def rank_of(qualified: int, ranks: Sequence[Rank]) -> tuple[Rank, Rank | None]:
    """The rank held with ``qualified`` referrals, and the next one (None at the top)."""
    held = ranks[0]
    for rank in ranks:
        if qualified >= rank.min_qualified:
            held = rank
        else:
            return held, rank
    return held, None
