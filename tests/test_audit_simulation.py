"""Issue 11: at the default audit rate, over hundreds of jobs on the real contract, a provider that
cheats on a share of its jobs loses money and honest providers are never slashed.

One deterministic run (hearth.dev.auditsim; `pytest -s` prints its figures, which the README
quotes). A change to the contracts changes the draws, and the outcome only by a rare draw: at
p = 10% and a collateral of 15 payments the cheater's result on 600 cheated jobs is negative
unless fewer than 34 are caught (60 expected; P = 5e-5). On 200 it was fewer than 12 of 20
(P = 0.017), and a contract change did draw 10.
"""

from __future__ import annotations

from typing import Any

import pytest
from hearth.cli.bench import audits_text
from hearth.dev.auditsim import simulate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run() -> dict[str, Any]:
    r = simulate()
    print("\n" + audits_text(r) + f"\n({r['blocks']} blocks, head {r['head']})")
    return r


def test_simulation_covers_enough_jobs_and_every_job_ends(run: dict[str, Any]) -> None:
    assert run["jobs"] >= 200
    assert run["unfinished_jobs"] == []
    assert set(run["final_states"]) <= {"Settled", "Refunded"}
    assert run["settled"] + len(run["refunded_jobs"]) == run["jobs"]
    assert all(p["open_jobs"] == 0 for p in run["providers"])
    assert run["disputed"] == 0 and run["audits_skipped"] == 0  # five providers, stake enough for all


def test_audited_share_is_near_the_market_rate(run: dict[str, Any]) -> None:
    assert run["audit_bps"] == 1000
    assert 0.05 <= run["audited"] / run["jobs"] <= 0.15
    assert run["settle_refused"] == run["audited"]  # settle refused every job drawn, and only those


def test_honest_providers_are_never_slashed_and_gain(run: dict[str, Any]) -> None:
    honest = [p for p in run["providers"] if p["role"] == "honest"]
    assert len(honest) == 4
    for p in honest:
        assert p["slashed"] == 0
        assert p["net"] > 0
        assert p["net"] == p["honest_equivalent"]


def test_cheating_loses_money(run: dict[str, Any]) -> None:
    c = run["cheater"]
    assert c["cheated"] >= 600
    assert c["caught"] > 0
    assert c["net_on_cheated"] < 0
    assert c["expected_per_cheated_job"] < 0
    assert c["total"] < c["honest_equivalent"]


def test_refunds_are_exactly_the_caught_cheats(run: dict[str, Any]) -> None:
    # Every cheated job that was audited was caught (no collusion), and nothing else was refunded.
    assert run["refunded_jobs"] == run["cheated_audited_jobs"]
    assert len(run["refunded_jobs"]) == run["cheater"]["caught"]


def test_every_net_result_is_what_the_events_say(run: dict[str, Any]) -> None:
    assert all(p["net_matches_events"] for p in run["providers"])


def test_market_holds_exactly_what_it_owes(run: dict[str, Any]) -> None:
    assert run["market_tokens"] == run["accounted_tokens"]
