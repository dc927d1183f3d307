"""The market's enums as names, indexed by their on-chain value: plain data, cheap to import (the
CLI's option choices need them before anything else of the chain is loaded)."""

from __future__ import annotations

STATES = ("None", "Posted", "Claimed", "Completed", "Disputed", "Settled", "Cancelled", "Expired", "Refunded",
          "Audited")
PHASES = ("None", "Commit", "Reveal", "Draw")
PROVIDER_STATUS = ("None", "Active", "Unbonding")
