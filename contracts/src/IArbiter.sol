// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IArbiter
/// @notice Decides disputed jobs of a JobMarket. A committee, a re-execution oracle or a proof
///         verifier can implement it. The market notifies the arbiter when a dispute opens
///         (best effort: a reverting arbiter cannot block a dispute), and the arbiter answers by
///         calling `JobMarket.resolve`. If it never answers, anyone can end the dispute after the
///         market's arbitration timeout (payment back to the client, collateral back to the
///         provider), so an absent arbiter strands no funds.
interface IArbiter {
    /// @notice Called by the market right after a client disputes a job.
    /// @param market the JobMarket holding the job
    /// @param jobId the disputed job
    /// @param client who disputed
    /// @param provider who delivered the disputed result
    function onDispute(address market, uint256 jobId, address client, address provider) external;
}
