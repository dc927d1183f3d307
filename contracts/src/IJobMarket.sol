// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title IJobMarket
/// @notice Escrow and rules of the Hearth inference market.
/// @dev Storage keeps one slot per job: its state, its current deadline and a 208-bit commitment
///      to the job's id and terms. The terms themselves travel in events and in calldata: every
///      call that moves a job passes them back and the market checks them against the commitment.
///      The terms carry a salt drawn at post (from prevrandao and the previous block hash), so
///      nobody can search for two sets of terms with one commitment before the job exists; after
///      it exists, forging terms needs a 2**208 second preimage.
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
    /// @param completionWindow seconds the claimer has to complete (at most maxCompletionWindow)
    /// @param feeBps protocol fee in basis points, fixed when the job was posted
    /// @param feeRecipient receives the fee, fixed when the job was posted
    /// @param modelKey keccak256 of the model's CID bytes
    /// @param salt drawn by the market at post (see JobPosted)
    struct JobTerms {
        address client;
        uint96 payment;
        address provider;
        uint32 completionWindow;
        uint16 feeBps;
        address feeRecipient;
        bytes32 modelKey;
        uint64 salt;
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
        uint40 claimDeadline;
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
    /// @param openJobs jobs claimed and not yet finished (at most 65,535 at once)
    /// @param unbondingEnd when an unbonding provider may withdraw its stake
    /// @param status provider status
    struct Account {
        uint96 balance;
        uint96 stake;
        uint16 openJobs;
        uint40 unbondingEnd;
        Status status;
    }

    /// @notice Deployment parameters, checked by the constructor.
    /// @param collateralBps claimer collateral in basis points of the payment (at most 10,000)
    /// @param minCollateral least collateral a claim locks, whatever the payment
    /// @param disputeWindow seconds after completion during which the client may dispute
    ///        (0: the provider is paid at completion and nothing can be disputed)
    /// @param disputeBond what a client locks to dispute; it goes to the provider if the result stands
    /// @param arbitrationTimeout seconds the arbiter has to decide a dispute (at least 1)
    /// @param maxCompletionWindow longest completion window a job may ask for (at least 1)
    /// @param unbondingDelay seconds between unbond and withdrawStake
    /// @param minStake least stake to register
    /// @dev Every period is at most MAX_PERIOD (30 days); amounts must fit in uint96.
    struct Config {
        uint256 collateralBps;
        uint256 minCollateral;
        uint256 disputeWindow;
        uint256 disputeBond;
        uint256 arbitrationTimeout;
        uint256 maxCompletionWindow;
        uint256 unbondingDelay;
        uint256 minStake;
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
    /// @notice A provider's stake went back to its internal balance and its record (models,
    ///         price) was cleared.
    event StakeWithdrawn(address indexed provider, uint256 amount);
    /// @notice A job was posted and its payment locked. The model's key is keccak256(modelCid);
    ///         the fee, its recipient and the salt complete the job's terms.
    event JobPosted(
        uint256 indexed jobId,
        address indexed client,
        address indexed provider,
        bytes modelCid,
        bytes specCid,
        uint96 payment,
        uint40 claimDeadline,
        uint32 completionWindow,
        uint16 feeBps,
        address feeRecipient,
        uint64 salt
    );
    /// @notice A provider claimed a job and locked collateral.
    event JobClaimed(uint256 indexed jobId, address indexed provider, uint256 collateral, uint256 completionDeadline);
    /// @notice The claimer delivered a result.
    event JobCompleted(
        uint256 indexed jobId, address indexed provider, bytes resultCid, bytes32 outputHash, uint256 disputeDeadline
    );
    /// @notice The provider was paid (`providerAmount`, `fee` to the job's fee recipient) and
    ///         its collateral released.
    event JobSettled(uint256 indexed jobId, address indexed provider, uint256 providerAmount, uint256 fee);
    /// @notice The client cancelled an unclaimed job and got its payment back.
    event JobCancelled(uint256 indexed jobId, address indexed client);
    /// @notice A job past its deadline was ended: the client got `refund`, of which `slashed`
    ///         was the collateral of a provider that never delivered.
    event JobExpired(uint256 indexed jobId, address indexed client, uint256 refund, uint256 slashed);
    /// @notice The client disputed a completed job and locked `bond`.
    event JobDisputed(uint256 indexed jobId, address indexed client, uint256 bond, uint256 arbitrationDeadline);
    /// @notice The arbiter decided against the provider: payment, collateral and the client's
    ///         bond went to the client.
    event JobRefunded(uint256 indexed jobId, address indexed client, uint256 refund);
    /// @notice A dispute ended and its bond went to `to`: the provider if the arbiter upheld the
    ///         result, the client if the arbiter refunded it or never decided (`lapsed`).
    event DisputeBondReleased(uint256 indexed jobId, address indexed to, uint256 bond, bool lapsed);
    /// @notice The protocol fee changed (applies to jobs posted from now on).
    event FeeSet(uint256 feeBps, address recipient);
    /// @notice `account` published X25519 public key `key` for private jobs; `version` counts
    ///         its keys (1 for the first), so a reader knows which of its secrets opens a seal.
    event EncryptionKeySet(address indexed account, uint32 version, bytes32 key);
    /// @notice `from` handed job `jobId`'s key, sealed to `to`'s encryption key (an auditor, the
    ///         arbiter). The market checks nothing: the reader accepts it only from the job's
    ///         client or provider, and the key's commitment in the job's envelope proves it.
    event JobKeyShared(uint256 indexed jobId, address indexed from, address indexed to, bytes sealedKey);

    // ---------------------------------------------------------------- errors

    /// @notice An amount of zero where a positive one is needed.
    error ZeroAmount();
    /// @notice The zero address where an account or contract is needed.
    error ZeroAddress();
    /// @notice A basis-point parameter above its cap.
    error InvalidBps(uint256 bps, uint256 maxBps);
    /// @notice A period (seconds) outside its bounds.
    error InvalidPeriod(uint256 period, uint256 minPeriod, uint256 maxPeriod);
    /// @notice A fee recipient that is zero or the market itself.
    error InvalidFeeRecipient(address recipient);
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
    /// @notice The completion window is zero or above the market's maximum.
    error InvalidCompletionWindow(uint256 completionWindow, uint256 maxCompletionWindow);
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
    /// @notice Too little gas left to give the arbiter its full ARBITER_GAS: send the dispute
    ///         with a higher gas limit.
    error InsufficientGasForArbiter(uint256 gasLeft, uint256 needed);
    /// @notice An encryption key of zero (no X25519 public key is all zeros in practice).
    error InvalidEncryptionKey();

    // ---------------------------------------------------------------- balances

    /// @notice Move `amount` tokens from the caller's wallet into its internal balance (needs allowance).
    function deposit(uint96 amount) external;

    /// @notice Deposit with an EIP-2612 permit instead of a prior approval.
    function depositWithPermit(uint96 amount, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s) external;

    /// @notice Move `amount` tokens from the caller's internal balance to its wallet.
    function withdraw(uint96 amount) external;

    // ---------------------------------------------------------------- providers

    /// @notice Become a provider: move `stake` from the internal balance into stake, set a
    ///         minimum price and the models served (full CID bytes). Models and price of an
    ///         earlier registration do not come back.
    function register(uint96 stake, uint96 minPrice, bytes[] calldata modelCids) external;

    /// @notice Move `amount` from the internal balance into stake.
    function addStake(uint96 amount) external;

    /// @notice Set the minimum payment the provider asks for a job (advertised; nodes enforce it).
    function setPrice(uint96 minPrice) external;

    /// @notice Start serving models (full CID bytes). Active providers only.
    function addModels(bytes[] calldata modelCids) external;

    /// @notice Stop serving models (full CID bytes). Active providers only.
    function removeModels(bytes[] calldata modelCids) external;

    /// @notice Stop claiming jobs; stake can be withdrawn after the unbonding delay.
    function unbond() external;

    /// @notice After unbonding, with no open jobs: move the stake back to the internal balance
    ///         and clear the provider record (models served and minimum price).
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

    /// @notice Deliver a claimed job's result (CID bytes and sha256 of the output text). With a
    ///         dispute window of 0 the provider is paid now; otherwise `settle` pays it once the
    ///         window has passed without a dispute.
    function complete(uint256 jobId, JobTerms calldata terms, bytes calldata resultCid, bytes32 outputHash)
        external;

    /// @notice Pay the provider of a completed job once its dispute window is over (anyone).
    function settle(uint256 jobId, JobTerms calldata terms) external;

    /// @notice The client cancels a job nobody claimed yet.
    function cancel(uint256 jobId, JobTerms calldata terms) external;

    /// @notice End a job whose deadline passed (anyone). Unclaimed: the client is refunded.
    ///         Claimed and never delivered: the client is refunded and gets the claimer's
    ///         collateral. Disputed and the arbiter never decided: the result stands, so the
    ///         provider is paid as by `settle` and the client's bond goes back to the client.
    function expire(uint256 jobId, JobTerms calldata terms) external;

    /// @notice The client disputes a completed job within the dispute window, locking the
    ///         dispute bond from its internal balance. Needs enough gas to give the arbiter
    ///         ARBITER_GAS (InsufficientGasForArbiter otherwise).
    function dispute(uint256 jobId, JobTerms calldata terms) external;

    /// @notice The arbiter decides a disputed job before its arbitration deadline. Provider
    ///         wins: it is paid and gets the bond. Client wins: it gets payment, the claimer's
    ///         collateral and its bond back.
    function resolve(uint256 jobId, JobTerms calldata terms, bool providerWins) external;

    /// @notice Owner: set the protocol fee and its recipient for jobs posted from now on (the fee
    ///         is capped by MAX_FEE_BPS; the recipient is neither zero nor the market).
    function setFee(uint16 feeBps, address recipient) external;

    // ---------------------------------------------------------------- private jobs

    /// @notice Publish the caller's X25519 public key for private jobs (any account), replacing
    ///         its previous one and incrementing its version.
    function setEncryptionKey(bytes32 key) external;

    /// @notice The current encryption key of `account` and its version (0 and 0: none yet).
    function encryptionKey(address account) external view returns (bytes32 key, uint32 version);

    /// @notice Emit JobKeyShared: the caller hands job `jobId`'s key, sealed to `to`. No state.
    function shareJobKey(uint256 jobId, address to, bytes calldata sealedKey) external;
}
