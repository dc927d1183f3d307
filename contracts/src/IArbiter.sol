// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IArbiter
/// @notice Decides disputed jobs of a JobMarket. A committee, a re-execution oracle or a proof
///         verifier can implement it. The market notifies the arbiter when a dispute opens, with
///         exactly `JobMarket.ARBITER_GAS` gas (a dispute sent with too little gas to give it
///         that reverts, so a client cannot silence the arbiter; an arbiter that reverts cannot
///         block a dispute), and the arbiter answers by calling `JobMarket.resolve` before the
///         market's arbitration deadline. If it never answers, anyone can `expire` the dispute
///         after that deadline: the result stands (the provider is paid) and the client's bond
///         goes back to the client, so an absent arbiter strands no funds and refunds nothing.
interface IArbiter {
    /// @notice Called by the market right after a client disputes a job.
    /// @param market the JobMarket holding the job
    /// @param jobId the disputed job
    /// @param client who disputed
    /// @param provider who delivered the disputed result
    function onDispute(address market, uint256 jobId, address client, address provider) external;
}
