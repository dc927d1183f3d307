"""How `hearth job submit` orders the offers that fit a job (hearth.offers.ranked): the record on
this market first, then the price. Pure: the market only answers the collateral a price needs.
The counts come from the chain's logs in tests/e2e/test_audits.py, where a provider proven wrong
is ranked last."""

from __future__ import annotations

from hearth.formats.offers import Offer
from hearth.offers import Candidate, ranked, slash_weight


class Collateral:  # the one call ranked() makes of the market
    def collateral_for(self, payment: int) -> int:
        return payment * 15


def candidate(name: str, price: int = 10, window: int = 300, stake: int = 10_000, **record: int) -> Candidate:
    offer = Offer(name, b"m" * 32, b"c" * 32, price, window, 4, 2**40, 1)
    return Candidate(offer, stake, **{"claimed": 0, "completed": 0, **record})


def order(*cands: Candidate, payment: int = 10, window: int = 300) -> list[str]:
    return [c.offer.provider for c in ranked(Collateral(), list(cands), payment, window)]  # type: ignore[arg-type]


def test_a_newcomer_counts_as_one_success_and_one_failure() -> None:
    assert candidate("new").score == 0.5
    assert order(candidate("new"), candidate("good", claimed=3, completed=3)) == ["good", "new"]
    assert order(candidate("new"), candidate("bad", claimed=3, completed=0)) == ["new", "bad"]


def test_a_declined_job_counts_neither_way() -> None:
    declining = candidate("declining", claimed=10, completed=5, declined=5)
    assert declining.score == candidate("perfect", claimed=5, completed=5).score == 6 / 7


def test_a_slashing_casts_doubt_on_as_many_completions_as_audits_find() -> None:
    assert [slash_weight(bps) for bps in (1000, 10_000, 300, 0)] == [10, 1, 33, 1]
    assert candidate("new").slash_weight == 10  # the default market's 10%
    once = candidate("once", claimed=20, completed=20, slashed=1)
    assert once.score == 11 / 22 == candidate("new").score  # half its completions doubted: an unknown
    # completing every job does not hide proven frauds: a newcomer is preferred
    twice = candidate("twice", claimed=20, completed=20, slashed=2)
    assert twice.score == 1 / 22  # all twenty doubted
    assert order(twice, candidate("new"), candidate("honest", claimed=20, completed=20)) == ["honest", "new", "twice"]
    # slashed as an auditor with nothing completed: failures, not a newcomer's benefit of the doubt
    assert candidate("auditor", slashed=1).score == 1 / 12


def test_the_price_breaks_ties_and_what_does_not_fit_is_left_out() -> None:
    cands = (candidate("dear", price=9), candidate("cheap", price=5), candidate("too-dear", price=11),
             candidate("too-slow", window=301), candidate("no-stake", stake=149), candidate("free", price=0))
    assert order(*cands) == ["cheap", "dear"]
