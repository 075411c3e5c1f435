"""Earnings, epochs and referrals: the caller's own figures (no object ids in the paths)."""

from __future__ import annotations

from tests.http.matrix import Case, static

CASES: dict[str, Case] = {
    "earnings_totals": static("/api/v1/earnings/totals"),
    "earnings_history": static("/api/v1/earnings/history"),
    "earnings_breakdown": static("/api/v1/earnings/breakdown"),
    "earnings_referrals": static("/api/v1/earnings/referrals"),
    "list_epochs": static("/api/v1/epochs"),
    "list_referrals": static("/api/v1/referrals"),
    "referral_summary": static("/api/v1/referrals/summary"),
}
