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
/// @dev Invariant: token.balanceOf(this) == sum(balance) + sum(stake) + auditPool + payments of
///      open jobs + collateral of claimed, completed, audited and disputed jobs + the collateral
///      of their drawn auditors + bonds of requested audits. Amounts are
///      uint96: the token's fixed supply is below 2**96, so no balance can exceed it. Timestamps
///      are uint40 (good for 34,000 years) and every period is at most MAX_PERIOD, so
///      `uint40(block.timestamp) + period` cannot overflow.
///
///      When is the provider paid? After the window (every deployment has one), by `settle`, or
///      when its audit upholds the result: a refund then comes out of escrow, so a client is made
///      whole even if the provider has withdrawn everything else it had, and the collateral that
///      a proven fraud loses is still locked.
///
///      Audits: `complete` commits to the output with a salt only the result carries. The hash
///      of the completion block (unknown to the provider when it sent `complete`) draws a share
///      auditBps of jobs; an auditor of the same reproducibility class re-runs the job and
///      commits before anyone reveals; a mismatch draws a tiebreaker (2 of 3 decide) and three
///      different outputs go to the arbiter. A provider proven wrong loses its whole collateral
///      (collateralBps of the payment).
contract JobMarket is IJobMarket, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The highest protocol fee the owner can ever set: 10%.
    uint16 public constant MAX_FEE_BPS = 1000;
    /// @notice The longest any period (windows, timeouts, delays) may be: 30 days.
    uint256 public constant MAX_PERIOD = 30 days;
    /// @notice The highest collateral rate: 100x the payment.
    uint32 public constant MAX_COLLATERAL_BPS = 1_000_000;
    /// @notice The highest audit fee: half the payment.
    uint16 public constant MAX_AUDIT_FEE_BPS = 5000;
    /// @notice Candidates an auditor draw looks at, from a random start in the class's list.
    uint256 public constant MAX_DRAW = 16;
    /// @notice EIP-2935's block-hash history (Prague): hashes of the last 8,191 blocks, so an
    ///         audit can be drawn after BLOCKHASH's 256-block horizon.
    address public constant HISTORY = 0x0000F90827F1C53a10cb7A02335B175320002935;
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
    uint32 public immutable collateralBps;
    /// @notice Least collateral a claim locks, whatever the payment.
    uint96 public immutable minCollateral;
    /// @notice Seconds after completion during which an audit can be started or requested.
    uint40 public immutable disputeWindow;
    /// @notice What a client locks to request an audit.
    uint96 public immutable disputeBond;
    /// @notice Seconds the arbiter has to decide; after them the result stands.
    uint40 public immutable arbitrationTimeout;
    /// @notice Longest completion window a job may ask for.
    uint40 public immutable maxCompletionWindow;
    /// @notice Seconds between `unbond` and `withdrawStake`.
    uint40 public immutable unbondingDelay;
    /// @notice Least stake a provider must hold to register.
    uint96 public immutable minStake;
    /// @notice Share of completed jobs audited at random, in basis points.
    uint16 public immutable auditBps;
    /// @notice Share of every payment paid into the audit pool, in basis points.
    uint16 public immutable auditFeeBps;
    /// @notice Seconds each audit phase may take.
    uint40 public immutable auditTimeout;

    /// @notice Funds the auditors of upheld random audits; fed by audit fees and the remainder
    ///         of slashed collateral.
    uint96 public auditPool;

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
    mapping(uint256 jobId => Audit) private _audits;
    /// @notice A registered provider's reproducibility class.
    mapping(address provider => bytes32 reproClass) public reproClassOf;
    mapping(bytes32 reproClass => address[] members) private _classMembers;
    mapping(address provider => uint256 indexPlusOne) private _classIndex;

    /// @param token_ the payment token
    /// @param arbiter_ the dispute arbiter (a contract implementing IArbiter, or an account)
    /// @param cfg the market's parameters (see IJobMarket.Config)
    constructor(IERC20 token_, address arbiter_, Config memory cfg) Ownable(msg.sender) {
        if (address(token_) == address(0) || arbiter_ == address(0)) revert ZeroAddress();
        if (cfg.collateralBps > MAX_COLLATERAL_BPS) revert InvalidBps(cfg.collateralBps, MAX_COLLATERAL_BPS);
        if (cfg.auditBps > 10_000) revert InvalidBps(cfg.auditBps, 10_000);
        if (cfg.auditFeeBps > MAX_AUDIT_FEE_BPS) revert InvalidBps(cfg.auditFeeBps, MAX_AUDIT_FEE_BPS);
        token = token_;
        arbiter = arbiter_;
        collateralBps = uint32(cfg.collateralBps);
        minCollateral = SafeCast.toUint96(cfg.minCollateral);
        disputeWindow = _period(cfg.disputeWindow, 1);
        disputeBond = SafeCast.toUint96(cfg.disputeBond);
        arbitrationTimeout = _period(cfg.arbitrationTimeout, 1);
        maxCompletionWindow = _period(cfg.maxCompletionWindow, 1);
        unbondingDelay = _period(cfg.unbondingDelay, 0);
        minStake = SafeCast.toUint96(cfg.minStake);
        auditBps = uint16(cfg.auditBps);
        auditFeeBps = uint16(cfg.auditFeeBps);
        auditTimeout = _period(cfg.auditTimeout, 1);
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
        // Up to 100x a payment can pass uint96: SafeCast reverts rather than wrap.
        uint96 share = SafeCast.toUint96(uint256(payment) * collateralBps / 10_000);
        return share < minCollateral ? minCollateral : share;
    }

    /// @notice A job's audit (empty when it has none running).
    function getAudit(uint256 jobId) external view returns (Audit memory) {
        return _audits[jobId];
    }

    /// @notice The active and unbonding providers registered in a class (auditor candidates).
    function classMembers(bytes32 reproClass) external view returns (address[] memory) {
        return _classMembers[reproClass];
    }

    /// @notice The commitment `complete` expects: only a holder of the output and the salt can
    ///         open it, and it names the job and the provider, so no one can reuse another's.
    function resultCommitment(uint256 jobId, address provider, bytes32 outputHash, bytes32 salt)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(jobId, provider, outputHash, salt));
    }

    /// @inheritdoc IJobMarket
    function auditSelected(uint256 jobId, JobTerms calldata terms, Result calldata result)
        public
        view
        returns (bool)
    {
        _loadDone(jobId, terms, result, State.Completed);
        return _selected(jobId, terms, result);
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
    function register(uint96 stake, uint96 price, bytes32 reproClass, bytes[] calldata modelCids)
        external
        nonReentrant
    {
        Account storage a = _accounts[msg.sender];
        if (a.status != Status.None) revert ProviderAlreadyRegistered(msg.sender);
        if (reproClass == bytes32(0)) revert InvalidReproClass();
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
        _joinClass(reproClass);
        _addModels(modelCids, registration);
    }

    /// @inheritdoc IJobMarket
    function setReproClass(bytes32 reproClass) external {
        Account storage a = _activeProvider();
        if (reproClass == bytes32(0)) revert InvalidReproClass();
        // A class change under an open job could leave its audit without same-class auditors.
        if (a.openJobs != 0) revert ProviderHasOpenJobs(msg.sender, a.openJobs);
        _leaveClass();
        _joinClass(reproClass);
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
        _leaveClass();
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
    function complete(uint256 jobId, JobTerms calldata terms, bytes calldata resultCid, bytes32 commitment)
        external
        nonReentrant
    {
        JobSlot memory job = _load(jobId, terms, State.Claimed);
        if (msg.sender != terms.provider) revert NotProvider(jobId, msg.sender);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        if (resultCid.length == 0) revert EmptyCid();
        uint40 disputeDeadline = uint40(block.timestamp) + disputeWindow;
        // The slot now commits to the result too, so later calls must pass it back unchanged.
        Result memory r = Result(commitment, uint64(block.number));
        _jobs[jobId] = JobSlot(State.Completed, disputeDeadline, _doneCommitment(jobId, terms, r));
        emit JobCompleted(jobId, msg.sender, resultCid, commitment, disputeDeadline);
    }

    /// @inheritdoc IJobMarket
    function settle(uint256 jobId, JobTerms calldata terms, Result calldata result) external nonReentrant {
        JobSlot memory job = _loadDone(jobId, terms, result, State.Completed);
        if (block.timestamp <= job.deadline) revert DeadlineNotPassed(jobId, job.deadline);
        if (_selected(jobId, terms, result)) revert AuditRequired(jobId);
        delete _jobs[jobId];
        _payProvider(jobId, terms, 0);
    }

    /// @inheritdoc IJobMarket
    function startAudit(uint256 jobId, JobTerms calldata terms, Result calldata result) external nonReentrant {
        _loadDone(jobId, terms, result, State.Completed);
        if (!_selected(jobId, terms, result)) revert NotSelected(jobId);
        emit AuditStarted(jobId, address(0), 0);
        bytes32 seed = keccak256(abi.encode(_randomAt(result.completedBlock), jobId, "draw"));
        address auditor = _draw(terms, seed, address(0));
        if (auditor == address(0)) {
            // Nobody can check it: the result stands, as it would have without the draw.
            emit AuditSkipped(jobId);
            delete _jobs[jobId];
            _payProvider(jobId, terms, 0);
            return;
        }
        _openAudit(jobId, terms, result, auditor, address(0), 0);
    }

    /// @inheritdoc IJobMarket
    function commitAudit(uint256 jobId, bytes32 commitment) external {
        Audit storage au = _audits[jobId];
        JobSlot storage job = _jobs[jobId];
        if (job.state != State.Audited || au.phase != Phase.Commit) revert InvalidPhase(jobId, au.phase);
        if (msg.sender != au.auditors[au.round]) revert NotAuditor(jobId, msg.sender);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        au.commits[au.round] = commitment;
        au.phase = Phase.Reveal;
        uint40 revealDeadline = uint40(block.timestamp) + auditTimeout;
        job.deadline = revealDeadline;
        emit AuditCommitted(jobId, msg.sender, revealDeadline);
    }

    /// @inheritdoc IJobMarket
    function reveal(
        uint256 jobId,
        JobTerms calldata terms,
        Result calldata result,
        address party,
        bytes32 outputHash,
        bytes32 salt
    ) external nonReentrant {
        JobSlot memory job = _loadDone(jobId, terms, result, State.Audited);
        Audit storage au = _audits[jobId];
        // Nobody reveals before the round's auditor has committed: nothing to copy.
        if (au.phase != Phase.Reveal) revert InvalidPhase(jobId, au.phase);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        // Zero marks "not revealed", so it cannot be an output hash.
        if (outputHash == bytes32(0)) revert InvalidReveal(jobId, party);
        bytes32 opened = resultCommitment(jobId, party, outputHash, salt);
        if (party == terms.provider && au.providerOutput == bytes32(0) && opened == result.commitment) {
            au.providerOutput = outputHash;
        } else {
            uint256 i = party == au.auditors[0] ? 0 : 1;
            if (party != au.auditors[i] || i > au.round || au.outputs[i] != bytes32(0) || opened != au.commits[i]) {
                revert InvalidReveal(jobId, party);
            }
            au.outputs[i] = outputHash;
        }
        emit OutputRevealed(jobId, party, outputHash);
        _decideRound(jobId, terms, au);
    }

    /// @inheritdoc IJobMarket
    function finalize(uint256 jobId, JobTerms calldata terms, Result calldata result) external nonReentrant {
        JobSlot memory job = _slotDone(jobId, terms, result);
        Audit storage au = _audits[jobId];
        if (job.state == State.Audited && au.phase == Phase.Draw) {
            // A hash gone from history would be known to all: the arbiter decides instead.
            bytes32 h = _randomAt(au.drawBlock);
            address tiebreaker =
                h == bytes32(0) ? address(0) : _draw(terms, keccak256(abi.encode(h, jobId, "tiebreak")), au.auditors[0]);
            if (tiebreaker == address(0)) {
                _toArbiter(jobId, terms);
                return;
            }
            au.auditors[1] = tiebreaker;
            au.round = 1;
            au.phase = Phase.Commit;
            uint40 commitDeadline = uint40(block.timestamp) + auditTimeout;
            _jobs[jobId].deadline = commitDeadline;
            emit AuditorAssigned(jobId, tiebreaker, 1, collateralFor(terms.payment), commitDeadline);
            return;
        }
        if (job.state != State.Audited && job.state != State.Disputed) revert InvalidState(jobId, job.state);
        if (block.timestamp <= job.deadline) revert DeadlineNotPassed(jobId, job.deadline);
        if (job.state == State.Disputed) {
            // The arbiter never decided: the result stands and the requester, not shown wrong
            // either, gets its bond back.
            _conclude(jobId, terms, true, false);
        } else if (au.round == 1) {
            // The tiebreaker did not commit or reveal in time.
            _toArbiter(jobId, terms);
        } else {
            // Round 0: the provider's commitment is on chain since `complete`; one it does not
            // open is held wrong. An auditor that did not commit or reveal is slashed by
            // _conclude, and a requester whose audit it left unanswered keeps its bond.
            bool upheld = au.phase == Phase.Commit || au.providerOutput != bytes32(0);
            _conclude(jobId, terms, upheld, au.outputs[0] != bytes32(0));
        }
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
        if (job.state != State.Posted && job.state != State.Claimed) revert InvalidState(jobId, job.state);
        if (block.timestamp <= job.deadline) revert DeadlineNotPassed(jobId, job.deadline);
        _jobs[jobId] = JobSlot(State.Expired, 0, job.commitment);
        uint96 refund = terms.payment;
        uint96 slashed = 0;
        if (job.state == State.Claimed) {
            // The claimer never delivered: the client gets up to the payment again out of its
            // collateral. Not all of it: the collateral is sized to punish fraud, and a crashed
            // node is not a fraud.
            Account storage p = _accounts[terms.provider];
            p.openJobs -= 1;
            uint96 collateral = collateralFor(terms.payment);
            slashed = collateral < terms.payment ? collateral : terms.payment;
            p.stake += collateral - slashed;
            refund += slashed;
        }
        _accounts[terms.client].balance += refund;
        emit JobExpired(jobId, terms.client, refund, slashed);
    }

    /// @inheritdoc IJobMarket
    function dispute(uint256 jobId, JobTerms calldata terms, Result calldata result) external nonReentrant {
        JobSlot memory job = _loadDone(jobId, terms, result, State.Completed);
        if (msg.sender != terms.client) revert NotClient(jobId, msg.sender);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        uint96 bond = disputeBond;
        Account storage c = _accounts[msg.sender];
        if (c.balance < bond) revert InsufficientBalance(msg.sender, c.balance, bond);
        c.balance -= bond;
        emit AuditStarted(jobId, msg.sender, bond);
        // The client chooses when to ask, so the previous block's hash (fixed before its
        // request) draws; the client cannot pick the auditor without mining.
        bytes32 seed = keccak256(abi.encode(blockhash(block.number - 1), jobId, "draw"));
        address auditor = _draw(terms, seed, address(0));
        _openAudit(jobId, terms, result, auditor, msg.sender, bond);
        if (auditor == address(0)) _toArbiter(jobId, terms);
    }

    /// @inheritdoc IJobMarket
    function resolve(uint256 jobId, JobTerms calldata terms, Result calldata result, bool providerWins)
        external
        nonReentrant
    {
        if (msg.sender != arbiter) revert NotArbiter(msg.sender);
        JobSlot memory job = _loadDone(jobId, terms, result, State.Disputed);
        // One cutoff: the arbiter decides up to the deadline, `finalize` applies only after it.
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        _conclude(jobId, terms, providerWins, true);
    }

    /// @inheritdoc IJobMarket
    function setFee(uint16 newFeeBps, address recipient) external onlyOwner {
        if (newFeeBps > MAX_FEE_BPS) revert FeeTooHigh(newFeeBps, MAX_FEE_BPS);
        if (recipient == address(0) || recipient == address(this)) revert InvalidFeeRecipient(recipient);
        feeBps = newFeeBps;
        feeRecipient = recipient;
        emit FeeSet(newFeeBps, recipient);
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

    /// @dev Pays a finished job: payment less fee and audit fee (plus `extra`, what is left of
    ///      a bond) to the provider, the fee to the job's fee recipient, the audit fee to the
    ///      pool, the collateral back into stake.
    function _payProvider(uint256 jobId, JobTerms calldata terms, uint96 extra) private {
        // feeBps <= MAX_FEE_BPS and auditFeeBps <= MAX_AUDIT_FEE_BPS: together below the payment.
        uint96 fee = uint96(uint256(terms.payment) * terms.feeBps / 10_000);
        uint96 auditFee = uint96(uint256(terms.payment) * auditFeeBps / 10_000);
        uint96 toProvider = terms.payment - fee - auditFee;
        Account storage p = _accounts[terms.provider];
        p.balance += toProvider + extra;
        p.stake += collateralFor(terms.payment);
        p.openJobs -= 1;
        if (fee != 0) _accounts[terms.feeRecipient].balance += fee;
        if (auditFee != 0) auditPool += auditFee;
        emit JobSettled(jobId, terms.provider, toProvider, fee, auditFee);
    }

    /// @dev Opens an audit with its first auditor (none: the caller sends the job to the arbiter).
    function _openAudit(
        uint256 jobId,
        JobTerms calldata terms,
        Result calldata result,
        address auditor,
        address requester,
        uint96 bond
    ) private {
        Audit storage au = _audits[jobId];
        au.requester = requester;
        au.bond = bond;
        au.auditors[0] = auditor;
        au.phase = Phase.Commit;
        uint40 commitDeadline = uint40(block.timestamp) + auditTimeout;
        _jobs[jobId] = JobSlot(State.Audited, commitDeadline, _doneCommitment(jobId, terms, result));
        if (auditor != address(0)) {
            emit AuditorAssigned(jobId, auditor, 0, collateralFor(terms.payment), commitDeadline);
        }
    }

    /// @dev After a reveal: decide the round once every output of it is known.
    function _decideRound(uint256 jobId, JobTerms calldata terms, Audit storage au) private {
        bytes32 p = au.providerOutput;
        bytes32 a0 = au.outputs[0];
        if (p == bytes32(0) || a0 == bytes32(0)) return;
        if (au.round == 0) {
            if (a0 == p) {
                _conclude(jobId, terms, true, true);
            } else {
                // One says yes, one says no: a tiebreaker, drawn by `finalize` from the hash of
                // this block, which nobody knows while sending this reveal.
                au.phase = Phase.Draw;
                au.drawBlock = uint64(block.number);
                emit AuditMismatch(jobId, block.number);
            }
            return;
        }
        bytes32 a1 = au.outputs[1];
        if (a1 == bytes32(0)) return;
        if (a1 == p) _conclude(jobId, terms, true, true);
        else if (a1 == a0) _conclude(jobId, terms, false, true);
        else _toArbiter(jobId, terms);
    }

    /// @dev Ends a job's audit or arbitration. `upheld`: the provider is paid; otherwise it loses
    ///      its collateral and the client gets payment and bond back. Each drawn auditor that
    ///      revealed the side that won (the provider's output if upheld, another if not) gets its
    ///      collateral back and a reward of one payment, from the bond (upheld, requested), the
    ///      slashed collateral (not upheld) or the pool (upheld, random); the others lose their
    ///      collateral to the pool. `bondForfeit` false: the bond goes back to the requester.
    function _conclude(uint256 jobId, JobTerms calldata terms, bool upheld, bool bondForfeit) private {
        Audit memory au = _audits[jobId];
        delete _audits[jobId];
        uint96 collateral = collateralFor(terms.payment);
        // What pays the rewards: `fund`, drawn down, with the rest to its owner below.
        uint96 fund = upheld ? (bondForfeit ? au.bond : 0) : collateral;
        for (uint256 i = 0; i < 2; ++i) {
            address who = au.auditors[i];
            if (who == address(0)) continue;
            Account storage a = _accounts[who];
            a.openJobs -= 1;
            bytes32 out = au.outputs[i];
            if (out == bytes32(0) || (out == au.providerOutput) != upheld) {
                auditPool += collateral;
                emit Slashed(jobId, who, collateral);
                continue;
            }
            uint96 reward = terms.payment;
            if (upheld && au.requester == address(0)) {
                if (reward > auditPool) reward = auditPool;
                auditPool -= reward;
            } else {
                if (reward > fund) reward = fund;
                fund -= reward;
            }
            a.stake += collateral;
            a.balance += reward;
            emit AuditorPaid(jobId, who, reward);
        }
        emit AuditEnded(jobId, upheld);
        if (upheld) {
            delete _jobs[jobId];
            if (!bondForfeit) _accounts[au.requester].balance += au.bond;
            _payProvider(jobId, terms, fund);
            return;
        }
        _jobs[jobId].state = State.Refunded;
        _jobs[jobId].deadline = 0;
        Account storage p = _accounts[terms.provider];
        p.openJobs -= 1;
        auditPool += fund;
        emit Slashed(jobId, terms.provider, collateral);
        uint96 refund = terms.payment + au.bond;
        _accounts[terms.client].balance += refund;
        emit JobRefunded(jobId, terms.client, refund);
    }

    /// @dev Hands a job to the arbiter, after every state change, with a fixed gas allowance
    ///      the caller cannot shrink: an arbiter that reverts, burns its gas or re-enters (every
    ///      mutating entry point is nonReentrant) cannot block or bend the dispute, and always
    ///      hears of it.
    function _toArbiter(uint256 jobId, JobTerms calldata terms) private {
        Audit storage au = _audits[jobId];
        au.phase = Phase.None;
        uint40 arbitrationDeadline = uint40(block.timestamp) + arbitrationTimeout;
        _jobs[jobId].state = State.Disputed;
        _jobs[jobId].deadline = arbitrationDeadline;
        emit JobDisputed(jobId, terms.client, au.bond, arbitrationDeadline);
        if (arbiter.code.length != 0) {
            uint256 left = gasleft();
            if (left < ARBITER_GAS_FLOOR) revert InsufficientGasForArbiter(left, ARBITER_GAS_FLOOR);
            try IArbiter(arbiter).onDispute{gas: ARBITER_GAS}(address(this), jobId, terms.client, terms.provider) {}
                catch {}
        }
    }

    /// @dev Draws an auditor: from a random start in the class's list, the first of MAX_DRAW
    ///      candidates that is active, serves the model, is neither the provider nor `exclude`,
    ///      and has the collateral free, which is locked. Zero if none.
    function _draw(JobTerms calldata terms, bytes32 seed, address exclude) private returns (address) {
        address[] storage members = _classMembers[reproClassOf[terms.provider]];
        uint256 n = members.length;
        if (n == 0) return address(0);
        uint96 collateral = collateralFor(terms.payment);
        uint256 start = uint256(seed) % n;
        uint256 tries = n < MAX_DRAW ? n : MAX_DRAW;
        for (uint256 i = 0; i < tries; ++i) {
            address c = members[(start + i) % n];
            if (c == terms.provider || c == exclude) continue;
            Account storage a = _accounts[c];
            if (a.status != Status.Active || a.stake < collateral) continue;
            if (_serves[c][terms.modelKey] != _providers[c].registration) continue;
            a.stake -= collateral;
            a.openJobs += 1;
            return c;
        }
        return address(0);
    }

    /// @dev Whether the hash of the completion block draws the job for audit. A hash that can no
    ///      longer be read (over 8,191 blocks old) counts as drawn: waiting must not dodge audits.
    function _selected(uint256 jobId, JobTerms calldata terms, Result calldata result) private view returns (bool) {
        if (auditBps == 0) return false;
        bytes32 h = _randomAt(result.completedBlock);
        if (h == bytes32(0)) return true;
        return uint256(keccak256(abi.encode(h, jobId, terms.salt))) % 10_000 < auditBps;
    }

    /// @dev The hash of block `n`, which must be mined: BLOCKHASH for the last 256 blocks, then
    ///      EIP-2935's history contract; zero beyond both.
    function _randomAt(uint256 n) private view returns (bytes32) {
        if (n >= block.number) revert RandomnessNotReady(n, block.number);
        if (block.number - n <= 256) return blockhash(n);
        if (HISTORY.code.length == 0) return bytes32(0);
        (bool ok, bytes memory out) = HISTORY.staticcall(abi.encode(n));
        return ok && out.length == 32 ? abi.decode(out, (bytes32)) : bytes32(0);
    }

    function _doneCommitment(uint256 jobId, JobTerms calldata terms, Result memory result)
        private
        pure
        returns (uint208)
    {
        return uint208(uint256(keccak256(abi.encode(jobId, terms, result))));
    }

    function _joinClass(bytes32 reproClass) private {
        _classMembers[reproClass].push(msg.sender);
        _classIndex[msg.sender] = _classMembers[reproClass].length;
        reproClassOf[msg.sender] = reproClass;
        emit ReproClassSet(msg.sender, reproClass);
    }

    /// @dev Swap-and-pop out of the class list.
    function _leaveClass() private {
        uint256 idx = _classIndex[msg.sender];
        if (idx == 0) return;
        address[] storage members = _classMembers[reproClassOf[msg.sender]];
        address last = members[members.length - 1];
        members[idx - 1] = last;
        _classIndex[last] = idx;
        members.pop();
        delete _classIndex[msg.sender];
        delete reproClassOf[msg.sender];
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

    /// @dev A completed (or audited, disputed) job's slot, checked against terms and result.
    function _slotDone(uint256 jobId, JobTerms calldata terms, Result calldata result)
        private
        view
        returns (JobSlot memory job)
    {
        job = _jobs[jobId];
        if (job.state == State.None) {
            if (jobId != 0 && jobId < nextJobId) revert InvalidState(jobId, State.Settled);
            revert UnknownJob(jobId);
        }
        if (job.commitment != _doneCommitment(jobId, terms, result)) {
            // Right terms, but the job is not (or no longer) completed: say which state it is in.
            if (job.commitment == commitmentOf(jobId, terms)) revert InvalidState(jobId, job.state);
            revert UnknownJob(jobId);
        }
    }

    function _loadDone(uint256 jobId, JobTerms calldata terms, Result calldata result, State expected)
        private
        view
        returns (JobSlot memory job)
    {
        job = _slotDone(jobId, terms, result);
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
