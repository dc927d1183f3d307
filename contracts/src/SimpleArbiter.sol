// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IArbiter} from "./IArbiter.sol";
import {IJobMarket} from "./IJobMarket.sol";

/// @title SimpleArbiter
/// @notice An arbiter run by one owner account: it forwards the owner's decision to the market.
///         A stand-in for a committee or a re-execution oracle on devnets.
contract SimpleArbiter is IArbiter {
    /// @notice Who decides.
    address public immutable owner;

    /// @notice Emitted when the market reports a dispute.
    event DisputeReceived(address market, uint256 jobId, address client, address provider);

    /// @notice Only the owner may decide.
    error NotOwner(address caller);

    constructor(address owner_) {
        owner = owner_;
    }

    /// @inheritdoc IArbiter
    function onDispute(address market, uint256 jobId, address client, address provider) external {
        emit DisputeReceived(market, jobId, client, provider);
    }

    /// @notice Decide a disputed job of `market`.
    function decide(
        IJobMarket market,
        uint256 jobId,
        IJobMarket.JobTerms calldata terms,
        IJobMarket.Result calldata result,
        bool providerWins
    ) external {
        if (msg.sender != owner) revert NotOwner(msg.sender);
        market.resolve(jobId, terms, result, providerWins);
    }
}
