// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IArbiter} from "../IArbiter.sol";
import {IJobMarket} from "../IJobMarket.sol";

/// @title MaliciousArbiter
/// @notice For tests only: an arbiter that misbehaves when told of a dispute, and records what
///         happened so a test can tell a blocked attempt from one never made.
contract MaliciousArbiter is IArbiter {
    /// @notice 0: revert; 1: re-enter resolve; 2: re-enter withdraw; 3: burn all its gas;
    ///         4: record the gas it was given.
    uint8 public mode;
    /// @notice Whether a re-entry attempt succeeded (it must never).
    bool public reentered;
    /// @notice Selector of the error the last re-entry attempt reverted with.
    bytes4 public lastError;
    /// @notice gasleft() on entry to the last onDispute (mode 4).
    uint256 public gasAtEntry;
    /// @notice Storage the burner writes.
    uint256 public burned;
    IJobMarket.JobTerms private _terms;
    IJobMarket.Result private _result;

    /// @notice Choose the misbehaviour and the terms and result to replay.
    function configure(uint8 mode_, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result) external {
        mode = mode_;
        _terms = terms;
        _result = result;
    }

    /// @notice Give this contract an internal balance in `market`, so that a re-entrant
    ///         withdraw would have something to take.
    function fund(IJobMarket market, IERC20 token, uint96 amount) external {
        token.approve(address(market), amount);
        market.deposit(amount);
    }

    /// @notice Withdraw from `market` outside any dispute (shows the balance is really there).
    function withdrawFrom(IJobMarket market, uint96 amount) external {
        market.withdraw(amount);
    }

    /// @inheritdoc IArbiter
    function onDispute(address market, uint256 jobId, address, address) external {
        uint256 g = gasleft();
        if (mode == 0) revert("arbiter down");
        if (mode == 1) {
            try IJobMarket(market).resolve(jobId, _terms, _result, true) {
                reentered = true;
            } catch (bytes memory reason) {
                lastError = bytes4(reason);
            }
        } else if (mode == 2) {
            try IJobMarket(market).withdraw(1) {
                reentered = true;
            } catch (bytes memory reason) {
                lastError = bytes4(reason);
            }
        } else if (mode == 3) {
            for (;;) {
                burned += 1;
            }
        } else {
            gasAtEntry = g;
        }
    }

    /// @notice Decide through the front door (a decision after a failed re-entry still works once).
    function decide(
        IJobMarket market,
        uint256 jobId,
        IJobMarket.JobTerms calldata terms,
        IJobMarket.Result calldata result,
        bool providerWins
    ) external {
        market.resolve(jobId, terms, result, providerWins);
    }
}
