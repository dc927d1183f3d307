// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IJobMarket} from "./IJobMarket.sol";
import {IArbiter} from "./IArbiter.sol";

/// @title JobMarket
/// @notice Escrow for Hearth inference jobs: clients lock payment when they post, providers lock
///         collateral when they claim, clients lock a bond when they dispute, and the rules below
///         release all three.
/// @dev Invariant: token.balanceOf(this) == sum(balance) + sum(stake) + payments of open jobs
///      + collateral of claimed, completed and disputed jobs + bonds of disputed jobs. Amounts are
///      uint96: the token's fixed supply is below 2**96, so no balance can exceed it. Timestamps
///      are uint40 (good for 34,000 years) and every period is at most MAX_PERIOD, so
///      `uint40(block.timestamp) + period` cannot overflow.
///
///      When is the provider paid? With a dispute window of 0, at `complete`. With a window, the
///      payment stays in escrow until `settle` after the window (or the dispute's outcome): a
///      refund then comes out of escrow, so a client that wins a dispute is made whole even if
///      the provider has withdrawn everything it had. Paying at `complete` and holding only the
///      collateral would refund at most the collateral, or need the provider's other funds.
contract JobMarket is IJobMarket, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The highest protocol fee the owner can ever set: 10%.
    uint16 public constant MAX_FEE_BPS = 1000;
    /// @notice The longest any period (windows, timeouts, delays) may be: 30 days.
    uint256 public constant MAX_PERIOD = 30 days;
    /// @notice Gas the arbiter's `onDispute` always gets: a dispute with less gas left reverts,
    ///         so a client cannot silence the arbiter with a tight gas limit.
    uint256 public constant ARBITER_GAS = 100_000;
    /// @notice Gas a dispute must still have before calling the arbiter: ARBITER_GAS survives
    ///         the 63/64 rule, with room for the call itself and what follows it.
    uint256 public constant ARBITER_GAS_FLOOR = ARBITER_GAS * 64 / 63 + 10_000;

    /// @notice The payment token.
    IERC20 public immutable token;
    /// @notice Decides disputes; fixed at deploy so no one can swap it under an open dispute.
    address public immutable arbiter;
    /// @notice Collateral a claimer locks, in basis points of the payment.
    uint16 public immutable collateralBps;
    /// @notice Least collateral a claim locks, whatever the payment.
    uint96 public immutable minCollateral;
    /// @notice Seconds after completion during which the client may dispute (0: pay at once).
    uint40 public immutable disputeWindow;
    /// @notice What a client locks to dispute.
    uint96 public immutable disputeBond;
    /// @notice Seconds the arbiter has to decide; after them the result stands.
    uint40 public immutable arbitrationTimeout;
    /// @notice Longest completion window a job may ask for.
    uint40 public immutable maxCompletionWindow;
    /// @notice Seconds between `unbond` and `withdrawStake`.
    uint40 public immutable unbondingDelay;
    /// @notice Least stake a provider must hold to register.
    uint96 public immutable minStake;

    /// @notice Receives the fee of jobs posted from now on, in its internal balance.
    address public feeRecipient;
    /// @notice Protocol fee for new jobs, in basis points.
    uint16 public feeBps;
    /// @notice Id the next posted job will get (ids start at 1).
    /// @dev Packed with the fee and its recipient in one slot: a post reads all three and
    ///      writes the counter.
    uint80 public nextJobId = 1;

    /// @dev A provider's advertised price and its registration number: models are served only
    ///      under the registration that added them, so `withdrawStake` clears them all at once.
    struct ProviderRecord {
        uint96 minPrice;
        uint32 registration;
    }

    mapping(uint256 jobId => JobSlot) private _jobs;
    mapping(address account => Account) private _accounts;
    mapping(address provider => mapping(bytes32 modelKey => uint32 registration)) private _serves;
    mapping(address provider => ProviderRecord) private _providers;

    /// @dev An account's current X25519 public key for private jobs and how many it has set.
    struct EncryptionKey {
        bytes32 key;
        uint32 version;
    }

    mapping(address account => EncryptionKey) private _encryptionKeys;

    /// @param token_ the payment token
    /// @param arbiter_ the dispute arbiter (a contract implementing IArbiter, or an account)
    /// @param cfg the market's parameters (see IJobMarket.Config)
    constructor(IERC20 token_, address arbiter_, Config memory cfg) Ownable(msg.sender) {
        if (address(token_) == address(0) || arbiter_ == address(0)) revert ZeroAddress();
        if (cfg.collateralBps > 10_000) revert InvalidBps(cfg.collateralBps, 10_000);
        token = token_;
        arbiter = arbiter_;
        collateralBps = uint16(cfg.collateralBps);
        minCollateral = SafeCast.toUint96(cfg.minCollateral);
        disputeWindow = _period(cfg.disputeWindow, 0);
        disputeBond = SafeCast.toUint96(cfg.disputeBond);
        arbitrationTimeout = _period(cfg.arbitrationTimeout, 1);
        maxCompletionWindow = _period(cfg.maxCompletionWindow, 1);
        unbondingDelay = _period(cfg.unbondingDelay, 0);
        minStake = SafeCast.toUint96(cfg.minStake);
        feeRecipient = msg.sender;
    }

    // ---------------------------------------------------------------- views

    /// @notice A job's state, current deadline and commitment to its terms.
    /// @dev A settled job's slot is deleted (the gas refund pays for a good part of its
    ///      completion), so an issued id with an empty slot reads as Settled.
    function getJob(uint256 jobId) external view returns (JobSlot memory job) {
        job = _jobs[jobId];
        if (job.state == State.None && jobId != 0 && jobId < nextJobId) job.state = State.Settled;
    }

    /// @notice An account's internal balance and provider record.
    function getAccount(address account) external view returns (Account memory) {
        return _accounts[account];
    }

    /// @notice Whether `provider` is registered and serves the model with this key.
    function serves(address provider, bytes32 modelKey) external view returns (bool) {
        return _accounts[provider].status != Status.None
            && _serves[provider][modelKey] == _providers[provider].registration;
    }

    /// @notice A registered provider's advertised minimum price (0 when not registered).
    function minPrice(address provider) external view returns (uint256) {
        return _providers[provider].minPrice;
    }

    /// @notice The collateral a claimer locks for a job paying `payment`: collateralBps of it,
    ///         and at least minCollateral.
    function collateralFor(uint96 payment) public view returns (uint96) {
        // collateralBps <= 10,000, so the share fits in uint96 like the payment.
        uint96 share = uint96(uint256(payment) * collateralBps / 10_000);
        return share < minCollateral ? minCollateral : share;
    }

    /// @notice The commitment stored for job `jobId` with these terms.
    function commitmentOf(uint256 jobId, JobTerms memory terms) public pure returns (uint208) {
        return uint208(uint256(keccak256(abi.encode(jobId, terms))));
    }

    // ---------------------------------------------------------------- balances

    /// @inheritdoc IJobMarket
    function deposit(uint96 amount) external nonReentrant {
        _deposit(amount);
    }

    /// @inheritdoc IJobMarket
    function depositWithPermit(uint96 amount, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
    {
        _permit(amount, permitDeadline, v, r, s);
        _deposit(amount);
    }

    /// @inheritdoc IJobMarket
    function withdraw(uint96 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Account storage a = _accounts[msg.sender];
        if (a.balance < amount) revert InsufficientBalance(msg.sender, a.balance, amount);
        a.balance -= amount;
        emit Withdrawn(msg.sender, amount);
        token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- providers

    /// @inheritdoc IJobMarket
    function register(uint96 stake, uint96 price, bytes[] calldata modelCids) external nonReentrant {
        Account storage a = _accounts[msg.sender];
        if (a.status != Status.None) revert ProviderAlreadyRegistered(msg.sender);
        if (stake < minStake) revert StakeBelowMinimum(stake, minStake);
        if (a.balance < stake) revert InsufficientBalance(msg.sender, a.balance, stake);
        a.balance -= stake;
        a.stake += stake;
        a.status = Status.Active;
        a.unbondingEnd = 0;
        ProviderRecord storage pr = _providers[msg.sender];
        uint32 registration = pr.registration + 1;
        pr.registration = registration;
        pr.minPrice = price;
        emit ProviderRegistered(msg.sender, stake, price);
        _addModels(modelCids, registration);
    }

    /// @inheritdoc IJobMarket
    function addStake(uint96 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        Account storage a = _activeProvider();
        if (a.balance < amount) revert InsufficientBalance(msg.sender, a.balance, amount);
        a.balance -= amount;
        a.stake += amount;
        emit StakeAdded(msg.sender, amount);
    }

    /// @inheritdoc IJobMarket
    function setPrice(uint96 price) external {
        _activeProvider();
        _providers[msg.sender].minPrice = price;
        emit PriceSet(msg.sender, price);
    }

    /// @inheritdoc IJobMarket
    function addModels(bytes[] calldata modelCids) external {
        _activeProvider();
        _addModels(modelCids, _providers[msg.sender].registration);
    }

    /// @inheritdoc IJobMarket
    function removeModels(bytes[] calldata modelCids) external {
        _activeProvider();
        for (uint256 i = 0; i < modelCids.length; ++i) {
            bytes32 key = keccak256(modelCids[i]);
            delete _serves[msg.sender][key];
            emit ModelRemoved(msg.sender, key, modelCids[i]);
        }
    }

    /// @inheritdoc IJobMarket
    function unbond() external {
        Account storage a = _activeProvider();
        uint40 end = uint40(block.timestamp) + unbondingDelay;
        a.status = Status.Unbonding;
        a.unbondingEnd = end;
        emit UnbondingStarted(msg.sender, end);
    }

    /// @inheritdoc IJobMarket
    function withdrawStake() external nonReentrant {
        Account storage a = _accounts[msg.sender];
        if (a.status != Status.Unbonding) revert ProviderNotUnbonding(msg.sender);
        if (block.timestamp < a.unbondingEnd) revert UnbondingNotOver(a.unbondingEnd, block.timestamp);
        if (a.openJobs != 0) revert ProviderHasOpenJobs(msg.sender, a.openJobs);
        uint96 stake = a.stake;
        a.balance += stake;
        a.stake = 0;
        a.status = Status.None;
        a.unbondingEnd = 0;
        // The registration number stays, so the models added under it are no longer served.
        _providers[msg.sender].minPrice = 0;
        emit StakeWithdrawn(msg.sender, stake);
    }

    // ---------------------------------------------------------------- jobs

    /// @inheritdoc IJobMarket
    function postJob(PostParams calldata p) external nonReentrant returns (uint256) {
        return _post(p);
    }

    /// @inheritdoc IJobMarket
    function postJobWithPermit(
        PostParams calldata p,
        uint96 depositAmount,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint256) {
        _permit(depositAmount, permitDeadline, v, r, s);
        _deposit(depositAmount);
        return _post(p);
    }

    /// @inheritdoc IJobMarket
    function claim(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Posted);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        if (terms.provider != address(0) && terms.provider != msg.sender) revert NotProvider(jobId, msg.sender);
        Account storage a = _accounts[msg.sender];
        if (a.status != Status.Active) revert ProviderNotActive(msg.sender);
        if (_serves[msg.sender][terms.modelKey] != _providers[msg.sender].registration) {
            revert ModelNotServed(msg.sender, terms.modelKey);
        }
        uint96 collateral = collateralFor(terms.payment);
        if (a.stake < collateral) revert InsufficientStake(msg.sender, a.stake, collateral);
        a.stake -= collateral;
        a.openJobs += 1;

        JobTerms memory t = terms;
        t.provider = msg.sender;
        // completionWindow <= maxCompletionWindow <= MAX_PERIOD: checked at post, committed since.
        uint40 completionDeadline = uint40(block.timestamp) + terms.completionWindow;
        _jobs[jobId] = JobSlot(State.Claimed, completionDeadline, commitmentOf(jobId, t));
        emit JobClaimed(jobId, msg.sender, collateral, completionDeadline);
    }

    /// @inheritdoc IJobMarket
    function complete(uint256 jobId, JobTerms calldata terms, bytes calldata resultCid, bytes32 outputHash)
        external
        nonReentrant
    {
        JobSlot memory job = _load(jobId, terms, State.Claimed);
        if (msg.sender != terms.provider) revert NotProvider(jobId, msg.sender);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        if (resultCid.length == 0) revert EmptyCid();
        if (disputeWindow == 0) {
            delete _jobs[jobId];
            emit JobCompleted(jobId, msg.sender, resultCid, outputHash, block.timestamp);
            _payProvider(jobId, terms, 0);
        } else {
            uint40 disputeDeadline = uint40(block.timestamp) + disputeWindow;
            _jobs[jobId] = JobSlot(State.Completed, disputeDeadline, job.commitment);
            emit JobCompleted(jobId, msg.sender, resultCid, outputHash, disputeDeadline);
        }
    }

    /// @inheritdoc IJobMarket
    function settle(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Completed);
        if (block.timestamp <= job.deadline) revert DeadlineNotPassed(jobId, job.deadline);
        delete _jobs[jobId];
        _payProvider(jobId, terms, 0);
    }

    /// @inheritdoc IJobMarket
    function cancel(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Posted);
        if (msg.sender != terms.client) revert NotClient(jobId, msg.sender);
        _jobs[jobId] = JobSlot(State.Cancelled, 0, job.commitment);
        _accounts[terms.client].balance += terms.payment;
        emit JobCancelled(jobId, terms.client);
    }

    /// @inheritdoc IJobMarket
    function expire(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _slot(jobId, terms);
        if (job.state != State.Posted && job.state != State.Claimed && job.state != State.Disputed) {
            revert InvalidState(jobId, job.state);
        }
        if (block.timestamp <= job.deadline) revert DeadlineNotPassed(jobId, job.deadline);
        if (job.state == State.Disputed) {
            // The arbiter never decided: the result stands. The provider is paid as if nobody
            // had disputed, and the client, not shown wrong either, gets its bond back.
            delete _jobs[jobId];
            uint96 bond = disputeBond;
            _accounts[terms.client].balance += bond;
            emit DisputeBondReleased(jobId, terms.client, bond, true);
            _payProvider(jobId, terms, 0);
            return;
        }
        _jobs[jobId] = JobSlot(State.Expired, 0, job.commitment);
        uint96 refund = terms.payment;
        uint96 slashed = 0;
        if (job.state == State.Claimed) {
            // The claimer never delivered: its collateral compensates the client.
            _accounts[terms.provider].openJobs -= 1;
            slashed = collateralFor(terms.payment);
            refund += slashed;
        }
        _accounts[terms.client].balance += refund;
        emit JobExpired(jobId, terms.client, refund, slashed);
    }

    /// @inheritdoc IJobMarket
    function dispute(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Completed);
        if (msg.sender != terms.client) revert NotClient(jobId, msg.sender);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        uint96 bond = disputeBond;
        Account storage c = _accounts[msg.sender];
        if (c.balance < bond) revert InsufficientBalance(msg.sender, c.balance, bond);
        c.balance -= bond;
        uint40 arbitrationDeadline = uint40(block.timestamp) + arbitrationTimeout;
        _jobs[jobId] = JobSlot(State.Disputed, arbitrationDeadline, job.commitment);
        emit JobDisputed(jobId, msg.sender, bond, arbitrationDeadline);
        if (arbiter.code.length != 0) {
            // After every state change, with a fixed gas allowance the caller cannot shrink: an
            // arbiter that reverts, burns its gas or re-enters (every mutating entry point is
            // nonReentrant) cannot block or bend the dispute, and always hears of it.
            uint256 left = gasleft();
            if (left < ARBITER_GAS_FLOOR) revert InsufficientGasForArbiter(left, ARBITER_GAS_FLOOR);
            try IArbiter(arbiter).onDispute{gas: ARBITER_GAS}(address(this), jobId, terms.client, terms.provider) {}
                catch {}
        }
    }

    /// @inheritdoc IJobMarket
    function resolve(uint256 jobId, JobTerms calldata terms, bool providerWins) external nonReentrant {
        if (msg.sender != arbiter) revert NotArbiter(msg.sender);
        JobSlot memory job = _load(jobId, terms, State.Disputed);
        // One cutoff: the arbiter decides up to the deadline, `expire` applies only after it.
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        uint96 bond = disputeBond;
        if (providerWins) {
            delete _jobs[jobId];
            emit DisputeBondReleased(jobId, terms.provider, bond, false);
            _payProvider(jobId, terms, bond);
        } else {
            _jobs[jobId] = JobSlot(State.Refunded, 0, job.commitment);
            _accounts[terms.provider].openJobs -= 1;
            uint96 refund = terms.payment + collateralFor(terms.payment) + bond;
            _accounts[terms.client].balance += refund;
            emit DisputeBondReleased(jobId, terms.client, bond, false);
            emit JobRefunded(jobId, terms.client, refund);
        }
    }

    /// @inheritdoc IJobMarket
    function setFee(uint16 newFeeBps, address recipient) external onlyOwner {
        if (newFeeBps > MAX_FEE_BPS) revert FeeTooHigh(newFeeBps, MAX_FEE_BPS);
        if (recipient == address(0) || recipient == address(this)) revert InvalidFeeRecipient(recipient);
        feeBps = newFeeBps;
        feeRecipient = recipient;
        emit FeeSet(newFeeBps, recipient);
    }

    // ---------------------------------------------------------------- private jobs

    /// @inheritdoc IJobMarket
    function setEncryptionKey(bytes32 key) external {
        if (key == bytes32(0)) revert InvalidEncryptionKey();
        EncryptionKey storage k = _encryptionKeys[msg.sender];
        // a uint32 of versions: 4 billion rotations, each a transaction paid by the caller
        uint32 version = k.version + 1;
        k.key = key;
        k.version = version;
        emit EncryptionKeySet(msg.sender, version, key);
    }

    /// @inheritdoc IJobMarket
    function encryptionKey(address account) external view returns (bytes32 key, uint32 version) {
        EncryptionKey storage k = _encryptionKeys[account];
        return (k.key, k.version);
    }

    /// @inheritdoc IJobMarket
    function shareJobKey(uint256 jobId, address to, bytes calldata sealedKey) external {
        emit JobKeyShared(jobId, msg.sender, to, sealedKey);
    }

    // ---------------------------------------------------------------- internals

    function _period(uint256 value, uint256 minValue) private pure returns (uint40) {
        if (value < minValue || value > MAX_PERIOD) revert InvalidPeriod(value, minValue, MAX_PERIOD);
        return uint40(value);
    }

    function _deposit(uint96 amount) private {
        if (amount == 0) revert ZeroAmount();
        _accounts[msg.sender].balance += amount;
        emit Deposited(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    function _permit(uint96 amount, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s) private {
        // A front-runner may have used the permit already; the deposit then relies on the
        // allowance it created (OpenZeppelin's recommended pattern for permit + transferFrom).
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {}
            catch {}
    }

    function _post(PostParams calldata p) private returns (uint256 jobId) {
        if (p.payment == 0) revert ZeroAmount();
        if (p.modelCid.length == 0 || p.specCid.length == 0) revert EmptyCid();
        if (p.claimDeadline <= block.timestamp) revert InvalidClaimDeadline(p.claimDeadline, block.timestamp);
        if (p.completionWindow == 0 || p.completionWindow > maxCompletionWindow) {
            revert InvalidCompletionWindow(p.completionWindow, maxCompletionWindow);
        }
        Account storage a = _accounts[msg.sender];
        if (a.balance < p.payment) revert InsufficientBalance(msg.sender, a.balance, p.payment);
        a.balance -= p.payment;

        uint16 fee = feeBps;
        address recipient = feeRecipient;
        jobId = nextJobId++;
        // Unknown before the block that posts the job, so no one can prepare colliding terms.
        uint64 salt = uint64(uint256(keccak256(abi.encode(block.prevrandao, blockhash(block.number - 1), jobId))));
        JobTerms memory t = JobTerms(
            msg.sender, p.payment, p.provider, p.completionWindow, fee, recipient, keccak256(p.modelCid), salt
        );
        _jobs[jobId] = JobSlot(State.Posted, p.claimDeadline, commitmentOf(jobId, t));
        emit JobPosted(
            jobId,
            msg.sender,
            p.provider,
            p.modelCid,
            p.specCid,
            p.payment,
            p.claimDeadline,
            p.completionWindow,
            fee,
            recipient,
            salt
        );
    }

    /// @dev Pays a finished job: payment less fee (plus `extra`, a dispute bond) to the
    ///      provider, the fee to the job's fee recipient, the collateral back into stake.
    function _payProvider(uint256 jobId, JobTerms calldata terms, uint96 extra) private {
        // feeBps <= MAX_FEE_BPS (committed at post), so the fee is below the payment.
        uint96 fee = uint96(uint256(terms.payment) * terms.feeBps / 10_000);
        uint96 toProvider = terms.payment - fee;
        Account storage p = _accounts[terms.provider];
        p.balance += toProvider + extra;
        p.stake += collateralFor(terms.payment);
        p.openJobs -= 1;
        if (fee != 0) _accounts[terms.feeRecipient].balance += fee;
        emit JobSettled(jobId, terms.provider, toProvider, fee);
    }

    function _slot(uint256 jobId, JobTerms calldata terms) private view returns (JobSlot memory job) {
        job = _jobs[jobId];
        if (job.state == State.None) {
            // Settled jobs free their slot; say so instead of "unknown".
            if (jobId != 0 && jobId < nextJobId) revert InvalidState(jobId, State.Settled);
            revert UnknownJob(jobId);
        }
        if (job.commitment != uint208(uint256(keccak256(abi.encode(jobId, terms))))) revert UnknownJob(jobId);
    }

    function _load(uint256 jobId, JobTerms calldata terms, State expected) private view returns (JobSlot memory job) {
        job = _slot(jobId, terms);
        if (job.state != expected) revert InvalidState(jobId, job.state);
    }

    function _activeProvider() private view returns (Account storage a) {
        a = _accounts[msg.sender];
        if (a.status != Status.Active) revert ProviderNotActive(msg.sender);
    }

    function _addModels(bytes[] calldata modelCids, uint32 registration) private {
        for (uint256 i = 0; i < modelCids.length; ++i) {
            if (modelCids[i].length == 0) revert EmptyCid();
            bytes32 key = keccak256(modelCids[i]);
            _serves[msg.sender][key] = registration;
            emit ModelAdded(msg.sender, key, modelCids[i]);
        }
    }
}
