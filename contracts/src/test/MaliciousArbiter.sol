// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IArbiter} from "../IArbiter.sol";
import {IJobMarket} from "../IJobMarket.sol";

/// @title MaliciousArbiter
/// @notice For tests only: on dispute it either reverts or tries to re-enter the market.
contract MaliciousArbiter is IArbiter {
    /// @notice 0: revert on dispute; 1: re-enter resolve; 2: re-enter withdraw.
    uint8 public mode;
    /// @notice Whether the last re-entry attempt succeeded (it must never).
    bool public reentered;
    IJobMarket.JobTerms private _terms;

    /// @notice Choose the misbehaviour and the terms to replay.
    function configure(uint8 mode_, IJobMarket.JobTerms calldata terms) external {
        mode = mode_;
        _terms = terms;
    }

    /// @inheritdoc IArbiter
    function onDispute(address market, uint256 jobId, address, address) external {
        if (mode == 0) revert("arbiter down");
        if (mode == 1) {
            try IJobMarket(market).resolve(jobId, _terms, true) {
                reentered = true;
            } catch {}
        } else {
            try IJobMarket(market).withdraw(1) {
                reentered = true;
            } catch {}
        }
    }

    /// @notice Decide honestly (used to show a decision after a failed re-entry still works once).
    function decide(IJobMarket market, uint256 jobId, IJobMarket.JobTerms calldata terms, bool providerWins) external {
        market.resolve(jobId, terms, providerWins);
    }
}
