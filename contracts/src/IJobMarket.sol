// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IJobMarket
/// @notice Escrow and rules of the Hearth inference market.
/// @dev Storage keeps one slot per job: its state, its current deadline and a 208-bit commitment
///      to the job's terms. The terms themselves travel in events and in calldata: every call
///      that moves a job passes them back and the market checks them against the commitment.
///      This keeps the whole lifecycle near one new storage slot of gas.
interface IJobMarket {
    /// @notice Lifecycle of a job. Terminal states: Settled, Cancelled, Expired, Refunded.
    enum State {
        None,
        Posted,
        Claimed,
        Completed,
        Disputed,
        Settled,
        Cancelled,
        Expired,
        Refunded
    }

    /// @notice Provider record status.
    enum Status {
        None,
        Active,
        Unbonding
    }

    /// @notice The terms of a job, committed to at post and updated at claim.
    /// @param client who posted and paid
    /// @param payment escrowed payment
    /// @param provider chosen provider while Posted (zero: anyone), the claimer once Claimed
    /// @param completionWindow seconds the claimer has to complete
    /// @param feeBps protocol fee in basis points, fixed when the job was posted
    /// @param modelKey keccak256 of the model's CID bytes
    struct JobTerms {
        address client;
        uint96 payment;
        address provider;
        uint32 completionWindow;
        uint16 feeBps;
        bytes32 modelKey;
    }

    /// @notice What a client passes to post a job.
    /// @param modelCid full CID bytes of the GGUF model
    /// @param specCid full CID bytes of the job spec
    /// @param payment amount to escrow, taken from the client's internal balance
    /// @param claimDeadline unix time after which an unclaimed job can be expired
    /// @param completionWindow seconds the claimer has to complete after claiming
    /// @param provider the only provider allowed to claim, or zero for anyone
    struct PostParams {
        bytes modelCid;
        bytes specCid;
        uint96 payment;
        uint32 claimDeadline;
        uint32 completionWindow;
        address provider;
    }

    /// @notice One slot of storage per job.
    struct JobSlot {
        State state;
        uint40 deadline;
        uint208 commitment;
    }

    /// @notice One slot of storage per account (client and provider alike).
    /// @param balance internal balance, free to withdraw or spend on jobs
    /// @param stake free provider stake (collateral of open jobs is not in it)
    /// @param openJobs jobs claimed and not yet finished
    /// @param unbondingEnd when an unbonding provider may withdraw its stake
    /// @param status provider status
    struct Account {
        uint96 balance;
        uint96 stake;
        uint24 openJobs;
        uint32 unbondingEnd;
        Status status;
    }

    // ---------------------------------------------------------------- events

    /// @notice Tokens were moved into an internal balance.
    event Deposited(address indexed account, uint256 amount);
    /// @notice Tokens were moved out of an internal balance to the account's wallet.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice A provider registered (or re-registered) with stake and a minimum price.
    event ProviderRegistered(address indexed provider, uint256 stake, uint256 minPrice);
    /// @notice A provider added stake.
    event StakeAdded(address indexed provider, uint256 amount);
    /// @notice A provider changed its minimum price.
    event PriceSet(address indexed provider, uint256 minPrice);
    /// @notice A provider started serving a model.
    event ModelAdded(address indexed provider, bytes32 indexed modelKey, bytes modelCid);
    /// @notice A provider stopped serving a model.
    event ModelRemoved(address indexed provider, bytes32 indexed modelKey, bytes modelCid);
    /// @notice A provider started unbonding; it can claim no more jobs.
    event UnbondingStarted(address indexed provider, uint256 unbondingEnd);
    /// @notice A provider's stake went back to its internal balance and its record closed.
    event StakeWithdrawn(address indexed provider, uint256 amount);
    /// @notice A job was posted and its payment locked. The model's key is keccak256(modelCid).
    event JobPosted(
        uint256 indexed jobId,
        address indexed client,
        address indexed provider,
        bytes modelCid,
        bytes specCid,
        uint96 payment,
        uint32 claimDeadline,
        uint32 completionWindow,
        uint16 feeBps
    );
    /// @notice A provider claimed a job and locked collateral.
    event JobClaimed(uint256 indexed jobId, address indexed provider, uint256 collateral, uint256 completionDeadline);
    /// @notice The claimer delivered a result.
    event JobCompleted(
        uint256 indexed jobId, address indexed provider, bytes resultCid, bytes32 outputHash, uint256 disputeDeadline
    );
    /// @notice The provider was paid and its collateral released.
    event JobSettled(uint256 indexed jobId, address indexed provider, uint256 providerAmount, uint256 fee);
    /// @notice The client cancelled an unclaimed job and got its payment back.
    event JobCancelled(uint256 indexed jobId, address indexed client);
    /// @notice A job past its deadline was ended: the client got `refund`, of which `slashed`
    ///         was the collateral of a provider that never delivered.
    event JobExpired(uint256 indexed jobId, address indexed client, uint256 refund, uint256 slashed);
    /// @notice The client disputed a completed job.
    event JobDisputed(uint256 indexed jobId, address indexed client, uint256 arbitrationDeadline);
    /// @notice The arbiter decided against the provider: payment and collateral went to the client.
    event JobRefunded(uint256 indexed jobId, address indexed client, uint256 refund);
    /// @notice The protocol fee changed (applies to jobs posted from now on).
    event FeeSet(uint256 feeBps, address recipient);

    // ---------------------------------------------------------------- errors

    /// @notice An amount of zero where a positive one is needed.
    error ZeroAmount();
    /// @notice The internal balance is short.
    error InsufficientBalance(address account, uint256 balance, uint256 needed);
    /// @notice The provider's free stake is short.
    error InsufficientStake(address provider, uint256 freeStake, uint256 needed);
    /// @notice Stake below the market's minimum.
    error StakeBelowMinimum(uint256 stake, uint256 minimum);
    /// @notice The caller has no active provider record.
    error ProviderNotActive(address provider);
    /// @notice The caller already has a provider record.
    error ProviderAlreadyRegistered(address provider);
    /// @notice The provider is not unbonding.
    error ProviderNotUnbonding(address provider);
    /// @notice The unbonding delay has not passed.
    error UnbondingNotOver(uint256 unbondingEnd, uint256 nowTime);
    /// @notice The provider still has open jobs.
    error ProviderHasOpenJobs(address provider, uint256 openJobs);
    /// @notice The provider does not serve the job's model.
    error ModelNotServed(address provider, bytes32 modelKey);
    /// @notice A CID argument was empty.
    error EmptyCid();
    /// @notice The claim deadline is not in the future.
    error InvalidClaimDeadline(uint256 claimDeadline, uint256 nowTime);
    /// @notice The completion window is zero.
    error InvalidCompletionWindow(uint256 completionWindow);
    /// @notice No job with this id, or terms that do not match the job's commitment.
    error UnknownJob(uint256 jobId);
    /// @notice The job is not in a state that allows this call.
    error InvalidState(uint256 jobId, State state);
    /// @notice Only the job's client may do this.
    error NotClient(uint256 jobId, address caller);
    /// @notice Only the job's claimer (or chosen provider) may do this.
    error NotProvider(uint256 jobId, address caller);
    /// @notice Only the arbiter may do this.
    error NotArbiter(address caller);
    /// @notice The job's current deadline has passed.
    error DeadlinePassed(uint256 jobId, uint256 deadline);
    /// @notice The job's current deadline has not passed yet.
    error DeadlineNotPassed(uint256 jobId, uint256 deadline);
    /// @notice A fee above the contract's cap.
    error FeeTooHigh(uint256 feeBps, uint256 maxFeeBps);

    // ---------------------------------------------------------------- balances

    /// @notice Move `amount` tokens from the caller's wallet into its internal balance (needs allowance).
    function deposit(uint96 amount) external;

    /// @notice Deposit with an EIP-2612 permit instead of a prior approval.
    function depositWithPermit(uint96 amount, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s) external;

    /// @notice Move `amount` tokens from the caller's internal balance to its wallet.
    function withdraw(uint96 amount) external;

    // ---------------------------------------------------------------- providers

    /// @notice Become a provider: move `stake` from the internal balance into stake, set a
    ///         minimum price and the models served (full CID bytes).
    function register(uint96 stake, uint96 minPrice, bytes[] calldata modelCids) external;

    /// @notice Move `amount` from the internal balance into stake.
    function addStake(uint96 amount) external;

    /// @notice Set the minimum payment the provider asks for a job (advertised; nodes enforce it).
    function setPrice(uint96 minPrice) external;

    /// @notice Start serving models (full CID bytes).
    function addModels(bytes[] calldata modelCids) external;

    /// @notice Stop serving models (full CID bytes).
    function removeModels(bytes[] calldata modelCids) external;

    /// @notice Stop claiming jobs; stake can be withdrawn after the unbonding delay.
    function unbond() external;

    /// @notice After unbonding, with no open jobs: move the stake back to the internal balance.
    function withdrawStake() external;

    // ---------------------------------------------------------------- jobs

    /// @notice Post a job paid from the internal balance. Returns the new job's id.
    function postJob(PostParams calldata p) external returns (uint256 jobId);

    /// @notice Post a job, first pulling `depositAmount` from the wallet with an EIP-2612 permit.
    function postJobWithPermit(
        PostParams calldata p,
        uint96 depositAmount,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (uint256 jobId);

    /// @notice Claim a posted job; locks collateral from the caller's free stake.
    function claim(uint256 jobId, JobTerms calldata terms) external;

    /// @notice Deliver a claimed job's result (CID bytes and sha256 of the output text).
    function complete(uint256 jobId, JobTerms calldata terms, bytes calldata resultCid, bytes32 outputHash)
        external;

    /// @notice Pay the provider of a completed job once its dispute window is over (anyone).
    function settle(uint256 jobId, JobTerms calldata terms) external;

    /// @notice The client cancels a job nobody claimed yet.
    function cancel(uint256 jobId, JobTerms calldata terms) external;

    /// @notice End a job whose deadline passed (anyone): refund the client; a claimer that never
    ///         delivered loses its collateral to the client; an undecided dispute is unwound.
    function expire(uint256 jobId, JobTerms calldata terms) external;

    /// @notice The client disputes a completed job within the dispute window.
    function dispute(uint256 jobId, JobTerms calldata terms) external;

    /// @notice The arbiter decides a disputed job.
    function resolve(uint256 jobId, JobTerms calldata terms, bool providerWins) external;

    /// @notice Owner: set the protocol fee for jobs posted from now on (capped by MAX_FEE_BPS).
    function setFee(uint16 feeBps, address recipient) external;
}
