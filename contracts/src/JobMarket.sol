// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IJobMarket} from "./IJobMarket.sol";
import {IArbiter} from "./IArbiter.sol";

/// @title JobMarket
/// @notice Escrow for Hearth inference jobs: clients lock payment when they post, providers lock
///         collateral when they claim, and the rules below release both.
/// @dev Invariant: token.balanceOf(this) == sum(balance) + sum(stake) + payments of open jobs
///      + collateral of claimed, completed and disputed jobs. Amounts are uint96: the token's
///      fixed supply is below 2**96, so no balance can exceed it.
contract JobMarket is IJobMarket, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The highest protocol fee the owner can ever set: 10%.
    uint16 public constant MAX_FEE_BPS = 1000;

    /// @notice The payment token.
    IERC20 public immutable token;
    /// @notice Decides disputes; fixed at deploy so no one can swap it under an open dispute.
    address public immutable arbiter;
    /// @notice Collateral a claimer locks, in basis points of the payment.
    uint256 public immutable collateralBps;
    /// @notice Seconds after completion during which the client may dispute (0: pay at once).
    uint256 public immutable disputeWindow;
    /// @notice Seconds the arbiter has to decide before anyone can unwind the dispute.
    uint256 public immutable arbitrationTimeout;
    /// @notice Seconds between `unbond` and `withdrawStake`.
    uint256 public immutable unbondingDelay;
    /// @notice Least stake a provider must hold to register.
    uint256 public immutable minStake;

    /// @notice Receives protocol fees in its internal balance.
    address public feeRecipient;
    /// @notice Protocol fee for new jobs, in basis points.
    uint16 public feeBps;
    /// @notice Id the next posted job will get (ids start at 1).
    /// @dev Packed with the fee in one slot: a post reads both and writes the counter.
    uint80 public nextJobId = 1;

    mapping(uint256 jobId => JobSlot) private _jobs;
    mapping(address account => Account) private _accounts;
    mapping(address provider => mapping(bytes32 modelKey => bool)) private _serves;
    mapping(address provider => uint96) private _minPrice;

    /// @param token_ the payment token
    /// @param arbiter_ the dispute arbiter (a contract implementing IArbiter, or an account)
    /// @param collateralBps_ claimer collateral in basis points of the payment
    /// @param disputeWindow_ seconds to dispute after completion
    /// @param arbitrationTimeout_ seconds the arbiter has to decide
    /// @param unbondingDelay_ seconds between unbond and stake withdrawal
    /// @param minStake_ least stake to register
    constructor(
        IERC20 token_,
        address arbiter_,
        uint256 collateralBps_,
        uint256 disputeWindow_,
        uint256 arbitrationTimeout_,
        uint256 unbondingDelay_,
        uint256 minStake_
    ) Ownable(msg.sender) {
        token = token_;
        arbiter = arbiter_;
        collateralBps = collateralBps_;
        disputeWindow = disputeWindow_;
        arbitrationTimeout = arbitrationTimeout_;
        unbondingDelay = unbondingDelay_;
        minStake = minStake_;
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

    /// @notice Whether `provider` serves the model with this key.
    function serves(address provider, bytes32 modelKey) external view returns (bool) {
        return _serves[provider][modelKey];
    }

    /// @notice A provider's advertised minimum price.
    function minPrice(address provider) external view returns (uint256) {
        return _minPrice[provider];
    }

    /// @notice The collateral a claimer locks for a job paying `payment`.
    function collateralFor(uint256 payment) public view returns (uint96) {
        // payment < 2**96 and collateralBps is set by the deployer; the result fits when bps <= 10000.
        return uint96(payment * collateralBps / 10_000);
    }

    /// @notice The commitment stored for these terms.
    function commitmentOf(JobTerms memory terms) public pure returns (uint208) {
        // 208 bits of keccak256: a forged set of terms needs a 2**208 second preimage.
        return uint208(uint256(keccak256(abi.encode(terms))));
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
        _minPrice[msg.sender] = price;
        emit ProviderRegistered(msg.sender, stake, price);
        _addModels(modelCids);
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
        _minPrice[msg.sender] = price;
        emit PriceSet(msg.sender, price);
    }

    /// @inheritdoc IJobMarket
    function addModels(bytes[] calldata modelCids) external {
        _activeProvider();
        _addModels(modelCids);
    }

    /// @inheritdoc IJobMarket
    function removeModels(bytes[] calldata modelCids) external {
        for (uint256 i = 0; i < modelCids.length; ++i) {
            bytes32 key = keccak256(modelCids[i]);
            delete _serves[msg.sender][key];
            emit ModelRemoved(msg.sender, key, modelCids[i]);
        }
    }

    /// @inheritdoc IJobMarket
    function unbond() external {
        Account storage a = _activeProvider();
        uint32 end = uint32(block.timestamp + unbondingDelay);
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
        if (!_serves[msg.sender][terms.modelKey]) revert ModelNotServed(msg.sender, terms.modelKey);
        uint96 collateral = collateralFor(terms.payment);
        if (a.stake < collateral) revert InsufficientStake(msg.sender, a.stake, collateral);
        a.stake -= collateral;
        a.openJobs += 1;

        JobTerms memory t = terms;
        t.provider = msg.sender;
        uint40 completionDeadline = uint40(block.timestamp + terms.completionWindow);
        _jobs[jobId] = JobSlot(State.Claimed, completionDeadline, commitmentOf(t));
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
            _payProvider(jobId, terms);
        } else {
            uint40 disputeDeadline = uint40(block.timestamp + disputeWindow);
            _jobs[jobId] = JobSlot(State.Completed, disputeDeadline, job.commitment);
            emit JobCompleted(jobId, msg.sender, resultCid, outputHash, disputeDeadline);
        }
    }

    /// @inheritdoc IJobMarket
    function settle(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Completed);
        if (block.timestamp <= job.deadline) revert DeadlineNotPassed(jobId, job.deadline);
        delete _jobs[jobId];
        _payProvider(jobId, terms);
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
        _jobs[jobId] = JobSlot(State.Expired, 0, job.commitment);
        uint96 refund = terms.payment;
        uint96 slashed = 0;
        if (job.state != State.Posted) {
            Account storage p = _accounts[terms.provider];
            p.openJobs -= 1;
            uint96 collateral = collateralFor(terms.payment);
            if (job.state == State.Claimed) {
                // The claimer never delivered: its collateral compensates the client.
                slashed = collateral;
                refund += collateral;
            } else {
                // The arbiter never decided: unwind, nobody is punished.
                p.stake += collateral;
            }
        }
        _accounts[terms.client].balance += refund;
        emit JobExpired(jobId, terms.client, refund, slashed);
    }

    /// @inheritdoc IJobMarket
    function dispute(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Completed);
        if (msg.sender != terms.client) revert NotClient(jobId, msg.sender);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        uint40 arbitrationDeadline = uint40(block.timestamp + arbitrationTimeout);
        _jobs[jobId] = JobSlot(State.Disputed, arbitrationDeadline, job.commitment);
        emit JobDisputed(jobId, msg.sender, arbitrationDeadline);
        if (arbiter.code.length != 0) {
            // Best effort and after every state change: an arbiter that reverts or re-enters
            // (every mutating entry point is nonReentrant) cannot block or bend the dispute.
            try IArbiter(arbiter).onDispute(address(this), jobId, terms.client, terms.provider) {} catch {}
        }
    }

    /// @inheritdoc IJobMarket
    function resolve(uint256 jobId, JobTerms calldata terms, bool providerWins) external nonReentrant {
        if (msg.sender != arbiter) revert NotArbiter(msg.sender);
        JobSlot memory job = _load(jobId, terms, State.Disputed);
        if (providerWins) {
            delete _jobs[jobId];
            _payProvider(jobId, terms);
        } else {
            _jobs[jobId] = JobSlot(State.Refunded, 0, job.commitment);
            _accounts[terms.provider].openJobs -= 1;
            uint96 refund = terms.payment + collateralFor(terms.payment);
            _accounts[terms.client].balance += refund;
            emit JobRefunded(jobId, terms.client, refund);
        }
    }

    /// @inheritdoc IJobMarket
    function setFee(uint16 newFeeBps, address recipient) external onlyOwner {
        if (newFeeBps > MAX_FEE_BPS) revert FeeTooHigh(newFeeBps, MAX_FEE_BPS);
        feeBps = newFeeBps;
        feeRecipient = recipient;
        emit FeeSet(newFeeBps, recipient);
    }

    // ---------------------------------------------------------------- internals

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
        if (p.completionWindow == 0) revert InvalidCompletionWindow(0);
        Account storage a = _accounts[msg.sender];
        if (a.balance < p.payment) revert InsufficientBalance(msg.sender, a.balance, p.payment);
        a.balance -= p.payment;

        uint16 fee = feeBps;
        jobId = nextJobId++;
        bytes32 modelKey = keccak256(p.modelCid);
        JobTerms memory t = JobTerms(msg.sender, p.payment, p.provider, p.completionWindow, fee, modelKey);
        _jobs[jobId] = JobSlot(State.Posted, p.claimDeadline, commitmentOf(t));
        emit JobPosted(
            jobId,
            msg.sender,
            p.provider,
            p.modelCid,
            p.specCid,
            p.payment,
            p.claimDeadline,
            p.completionWindow,
            fee
        );
    }

    function _payProvider(uint256 jobId, JobTerms calldata terms) private {
        uint96 fee = uint96(uint256(terms.payment) * terms.feeBps / 10_000);
        uint96 toProvider = terms.payment - fee;
        Account storage p = _accounts[terms.provider];
        p.balance += toProvider;
        p.stake += collateralFor(terms.payment);
        p.openJobs -= 1;
        if (fee != 0) _accounts[feeRecipient].balance += fee;
        emit JobSettled(jobId, terms.provider, toProvider, fee);
    }

    function _slot(uint256 jobId, JobTerms calldata terms) private view returns (JobSlot memory job) {
        job = _jobs[jobId];
        if (job.state == State.None) {
            // Settled jobs free their slot; say so instead of "unknown".
            if (jobId != 0 && jobId < nextJobId) revert InvalidState(jobId, State.Settled);
            revert UnknownJob(jobId);
        }
        if (job.commitment != commitmentOf(terms)) revert UnknownJob(jobId);
    }

    function _load(uint256 jobId, JobTerms calldata terms, State expected) private view returns (JobSlot memory job) {
        job = _slot(jobId, terms);
        if (job.state != expected) revert InvalidState(jobId, job.state);
    }

    function _activeProvider() private view returns (Account storage a) {
        a = _accounts[msg.sender];
        if (a.status != Status.Active) revert ProviderNotActive(msg.sender);
    }

    function _addModels(bytes[] calldata modelCids) private {
        for (uint256 i = 0; i < modelCids.length; ++i) {
            if (modelCids[i].length == 0) revert EmptyCid();
            bytes32 key = keccak256(modelCids[i]);
            _serves[msg.sender][key] = true;
            emit ModelAdded(msg.sender, key, modelCids[i]);
        }
    }
}
