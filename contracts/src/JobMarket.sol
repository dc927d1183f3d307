// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {IJobMarket} from "./IJobMarket.sol";
import {JobAudits} from "./JobAudits.sol";

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
contract JobMarket is IJobMarket, Ownable, ReentrancyGuardTransient, EIP712 {
    using SafeERC20 for IERC20;

    /// @notice The highest protocol fee the owner can ever set: 10%.
    uint16 public constant MAX_FEE_BPS = 1000;
    /// @notice The longest any period (windows, timeouts, delays) may be: 30 days.
    uint256 public constant MAX_PERIOD = 30 days;
    /// @notice The highest collateral rate: 100x the payment.
    uint32 public constant MAX_COLLATERAL_BPS = 1_000_000;
    /// @notice The highest audit fee: half the payment.
    uint16 public constant MAX_AUDIT_FEE_BPS = 5000;
    /// @notice Gas the arbiter's `onDispute` always gets (see JobAudits).
    uint256 public constant ARBITER_GAS = JobAudits.ARBITER_GAS;
    /// @notice Gas a call that reaches the arbiter must still have (see JobAudits).
    uint256 public constant ARBITER_GAS_FLOOR = JobAudits.ARBITER_GAS_FLOOR;
    /// @dev Highest nonce withdrawOffers sets (2**63): each register, setReproClass and removeModels
    ///         adds one more, and 2**63 of those will never be sent.
    uint64 internal constant MAX_OFFER_NONCE = 1 << 63;
    /// @notice The bit of a job's salt that marks a job posted under an offer.
    uint64 public constant OFFERED = 1 << 63;
    /// @notice The EIP-712 type of an Offer (domain: name "Hearth JobMarket", version "2").
    bytes32 public constant OFFER_TYPEHASH = keccak256(
        "Offer(address provider,bytes32 modelKey,bytes32 reproClass,uint96 price,uint32 completionWindow,"
        "uint16 maxOpenJobs,uint40 expiry,uint64 nonce)"
    );

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

    /// @notice Receives the fee of jobs posted from now on, in its internal balance.
    address public feeRecipient;
    /// @notice Protocol fee for new jobs, in basis points.
    uint16 public feeBps;
    /// @notice Id the next posted job will get (ids start at 1).
    /// @dev Packed with the fee and its recipient in one slot: a post reads all three and
    ///      writes the counter.
    uint80 public nextJobId = 1;

    /// @notice Funds the auditors of upheld random audits; fed by audit fees and the remainder
    ///         of slashed collateral.
    function auditPool() external view returns (uint96) {
        return _s.auditPool;
    }

    /// @notice A registered provider's reproducibility class.
    function reproClassOf(address provider) external view returns (bytes32) {
        return _s.reproClassOf[provider];
    }

    JobAudits.Store private _s;

    /// @dev An account's current X25519 public key for private jobs and how many it has set.
    struct EncryptionKey {
        bytes32 key;
        uint32 version;
    }

    mapping(address account => EncryptionKey) private _encryptionKeys;

    /// @inheritdoc IJobMarket
    function offerNonce(address provider) external view returns (uint64) {
        return _s.providers[provider].offerNonce;
    }

    /// @param token_ the payment token
    /// @param arbiter_ the dispute arbiter (a contract implementing IArbiter, or an account)
    /// @param cfg the market's parameters (see IJobMarket.Config)
    constructor(IERC20 token_, address arbiter_, Config memory cfg)
        Ownable(msg.sender)
        EIP712("Hearth JobMarket", "2")
    {
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
        job = _s.jobs[jobId];
        if (job.state == State.None && jobId != 0 && jobId < nextJobId) job.state = State.Settled;
    }

    /// @notice An account's internal balance and provider record.
    function getAccount(address account) external view returns (Account memory) {
        return _s.accounts[account];
    }

    /// @notice Whether `provider` is registered and serves the model with this key.
    function serves(address provider, bytes32 modelKey) external view returns (bool) {
        return _s.accounts[provider].status != Status.None
            && _s.serves[provider][modelKey] == _s.providers[provider].registration;
    }

    /// @notice A registered provider's advertised minimum price (0 when not registered).
    function minPrice(address provider) external view returns (uint256) {
        return _s.providers[provider].minPrice;
    }

    /// @notice The collateral a claimer locks for a job paying `payment`: collateralBps of it,
    ///         and at least minCollateral.
    function collateralFor(uint96 payment) public view returns (uint96) {
        return JobAudits.collateralFor(_params(), payment);
    }

    /// @notice A job's audit (empty when it has none running).
    function getAudit(uint256 jobId) external view returns (Audit memory) {
        return _s.audits[jobId];
    }

    /// @notice The active and unbonding providers registered in a class (auditor candidates),
    ///         in the order they joined it.
    function classMembers(bytes32 reproClass) external view returns (address[] memory live) {
        JobAudits.Member[] storage all = _s.classMembers[reproClass];
        live = new address[](_s.classSize[reproClass]);
        uint256 k = 0;
        for (uint256 i = 0; i < all.length; ++i) {
            if (!all[i].left) live[k++] = all[i].account;
        }
    }

    /// @inheritdoc IJobMarket
    function auditSelected(uint256 jobId, JobTerms calldata terms, Result calldata result)
        external
        view
        returns (bool)
    {
        return JobAudits.auditSelected(_s, _params(), jobId, terms, result);
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
        Account storage a = _s.accounts[msg.sender];
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
        Account storage a = _s.accounts[msg.sender];
        if (a.status != Status.None) revert ProviderAlreadyRegistered(msg.sender);
        if (reproClass == bytes32(0)) revert InvalidReproClass();
        if (stake < minStake) revert StakeBelowMinimum(stake, minStake);
        if (a.balance < stake) revert InsufficientBalance(msg.sender, a.balance, stake);
        a.balance -= stake;
        a.stake += stake;
        a.status = Status.Active;
        a.unbondingEnd = 0;
        JobAudits.ProviderRecord storage pr = _s.providers[msg.sender];
        uint32 registration = pr.registration + 1;
        pr.registration = registration;
        pr.minPrice = price;
        emit ProviderRegistered(msg.sender, stake, price);
        _voidOffers(pr);
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
        _voidOffers(_s.providers[msg.sender]);
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
        _s.providers[msg.sender].minPrice = price;
        emit PriceSet(msg.sender, price);
    }

    /// @inheritdoc IJobMarket
    function addModels(bytes[] calldata modelCids) external {
        _activeProvider();
        _addModels(modelCids, _s.providers[msg.sender].registration);
    }

    /// @inheritdoc IJobMarket
    function removeModels(bytes[] calldata modelCids) external {
        _activeProvider();
        for (uint256 i = 0; i < modelCids.length; ++i) {
            bytes32 key = keccak256(modelCids[i]);
            delete _s.serves[msg.sender][key];
            emit ModelRemoved(msg.sender, key, modelCids[i]);
        }
        _voidOffers(_s.providers[msg.sender]);
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
        Account storage a = _s.accounts[msg.sender];
        if (a.status != Status.Unbonding) revert ProviderNotUnbonding(msg.sender);
        if (block.timestamp < a.unbondingEnd) revert UnbondingNotOver(a.unbondingEnd, block.timestamp);
        if (a.openJobs != 0) revert ProviderHasOpenJobs(msg.sender, a.openJobs);
        uint96 stake = a.stake;
        a.balance += stake;
        a.stake = 0;
        a.status = Status.None;
        a.unbondingEnd = 0;
        // The registration number stays, so the models added under it are no longer served.
        _s.providers[msg.sender].minPrice = 0;
        _leaveClass();
        emit StakeWithdrawn(msg.sender, stake);
    }

    // ---------------------------------------------------------------- jobs

    /// @inheritdoc IJobMarket
    function postJob(PostParams calldata p) external nonReentrant returns (uint256 jobId) {
        (jobId,) = _post(p, false);
    }

    /// @inheritdoc IJobMarket
    function postJobWithPermit(
        PostParams calldata p,
        uint96 depositAmount,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint256 jobId) {
        _permit(depositAmount, permitDeadline, v, r, s);
        _deposit(depositAmount);
        (jobId,) = _post(p, false);
    }

    /// @inheritdoc IJobMarket
    function postJobWithOffer(PostParams calldata p, Offer calldata offer, bytes calldata signature)
        external
        nonReentrant
        returns (uint256 jobId)
    {
        address provider = offer.provider;
        // Not the provider's class or models: its signature vouches for them, and changing either
        // raises its nonce (two cold reads less a post: 4,537 gas, measured).
        if (
            p.provider != provider || keccak256(p.modelCid) != offer.modelKey
                || ECDSA.recover(_offerDigest(offer), signature) != provider
        ) revert InvalidOffer(provider);
        if (block.timestamp > offer.expiry || offer.nonce != _s.providers[provider].offerNonce) {
            revert OfferVoid(provider, offer.expiry, offer.nonce);
        }
        // Exactly the price: a client paying more would raise what the provider's collateral
        // owes it if the job expires (a node that died with its offers live).
        if (p.payment != offer.price || p.completionWindow < offer.completionWindow) {
            revert OfferTermsUnmet(p.payment, offer.price, p.completionWindow, offer.completionWindow);
        }
        uint16 open = _s.accounts[provider].openJobs;
        if (open >= offer.maxOpenJobs) revert ProviderBusy(provider, open, offer.maxOpenJobs);
        JobTerms memory t;
        (jobId, t) = _post(p, true);
        _assign(jobId, t, provider, true);
    }

    /// @inheritdoc IJobMarket
    function publishOffers(bytes calldata cid) external {
        _activeProvider();
        if (cid.length == 0) revert EmptyCid();
        emit OffersPublished(msg.sender, cid);
    }

    /// @inheritdoc IJobMarket
    function withdrawOffers(uint64 nonce) external {
        JobAudits.ProviderRecord storage pr = _s.providers[msg.sender];
        uint64 current = pr.offerNonce;
        if (nonce <= current) revert NonceNotIncreasing(nonce, current);
        if (nonce > MAX_OFFER_NONCE) revert NonceTooHigh(nonce, MAX_OFFER_NONCE);
        pr.offerNonce = nonce;
        emit OffersWithdrawn(msg.sender, nonce);
    }

    /// @inheritdoc IJobMarket
    function offerDigest(Offer calldata offer) external view returns (bytes32) {
        return _offerDigest(offer);
    }

    /// @inheritdoc IJobMarket
    function claim(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Posted);
        if (block.timestamp > job.deadline) revert DeadlinePassed(jobId, job.deadline);
        if (terms.provider != address(0) && terms.provider != msg.sender) revert NotProvider(jobId, msg.sender);
        _assign(jobId, terms, msg.sender, false);
    }

    /// @inheritdoc IJobMarket
    function decline(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Claimed);
        if (msg.sender != terms.provider) revert NotProvider(jobId, msg.sender);
        // Only a job an offer assigned: a claimer of an open job chose it, and giving it back
        // free would let it hold jobs away from other providers.
        if (terms.salt & OFFERED == 0) revert NotOffered(jobId);
        // The deadline is the claim time plus the window; declining late would let a claimer
        // sit on a job and walk away free instead of paying for an expiry.
        uint256 lastMoment = job.deadline - terms.completionWindow / 2;
        if (block.timestamp > lastMoment) revert DeclineTooLate(jobId, lastMoment);
        _s.jobs[jobId] = JobSlot(State.Cancelled, 0, job.commitment);
        Account storage a = _s.accounts[msg.sender];
        a.openJobs -= 1;
        a.stake += collateralFor(terms.payment);
        _s.accounts[terms.client].balance += terms.payment;
        emit JobDeclined(jobId, msg.sender);
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
        _s.jobs[jobId] = JobSlot(State.Completed, disputeDeadline, JobAudits.doneCommitment(jobId, terms, r));
        emit JobCompleted(jobId, msg.sender, resultCid, commitment, disputeDeadline);
    }

    /// @inheritdoc IJobMarket
    function settle(uint256 jobId, JobTerms calldata terms, Result calldata result) external nonReentrant {
        JobAudits.settle(_s, _params(), jobId, terms, result);
    }

    /// @inheritdoc IJobMarket
    function settleMany(uint256[] calldata jobIds, JobTerms[] calldata terms, Result[] calldata results)
        external
        nonReentrant
    {
        JobAudits.settleMany(_s, _params(), jobIds, terms, results);
    }

    /// @inheritdoc IJobMarket
    function startAudit(uint256 jobId, JobTerms calldata terms, Result calldata result) external nonReentrant {
        JobAudits.startAudit(_s, _params(), jobId, terms, result);
    }

    /// @inheritdoc IJobMarket
    function commitAudit(uint256 jobId, bytes32 commitment) external nonReentrant {
        JobAudits.commitAudit(_s, _params(), jobId, commitment);
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
        JobAudits.reveal(_s, _params(), jobId, terms, result, party, outputHash, salt);
    }

    /// @inheritdoc IJobMarket
    function finalize(uint256 jobId, JobTerms calldata terms, Result calldata result) external nonReentrant {
        JobAudits.finalize(_s, _params(), jobId, terms, result);
    }

    /// @inheritdoc IJobMarket
    function dispute(uint256 jobId, JobTerms calldata terms, Result calldata result) external nonReentrant {
        JobAudits.dispute(_s, _params(), jobId, terms, result);
    }

    /// @inheritdoc IJobMarket
    function resolve(uint256 jobId, JobTerms calldata terms, Result calldata result, bool providerWins)
        external
        nonReentrant
    {
        JobAudits.resolve(_s, _params(), jobId, terms, result, providerWins);
    }

    /// @inheritdoc IJobMarket
    function cancel(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _load(jobId, terms, State.Posted);
        if (msg.sender != terms.client) revert NotClient(jobId, msg.sender);
        _s.jobs[jobId] = JobSlot(State.Cancelled, 0, job.commitment);
        _s.accounts[terms.client].balance += terms.payment;
        emit JobCancelled(jobId, terms.client);
    }

    /// @inheritdoc IJobMarket
    function expire(uint256 jobId, JobTerms calldata terms) external nonReentrant {
        JobSlot memory job = _slot(jobId, terms);
        if (job.state != State.Posted && job.state != State.Claimed) revert InvalidState(jobId, job.state);
        if (block.timestamp <= job.deadline) revert DeadlineNotPassed(jobId, job.deadline);
        _s.jobs[jobId] = JobSlot(State.Expired, 0, job.commitment);
        uint96 refund = terms.payment;
        uint96 slashed = 0;
        if (job.state == State.Claimed) {
            // The claimer never delivered: the client gets up to the payment again out of its
            // collateral. Not all of it: the collateral is sized to punish fraud, and a crashed
            // node is not a fraud.
            Account storage p = _s.accounts[terms.provider];
            p.openJobs -= 1;
            uint96 collateral = collateralFor(terms.payment);
            slashed = collateral < terms.payment ? collateral : terms.payment;
            p.stake += collateral - slashed;
            refund += slashed;
        }
        _s.accounts[terms.client].balance += refund;
        emit JobExpired(jobId, terms.client, refund, slashed);
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

    function _params() private view returns (JobAudits.Params memory) {
        return JobAudits.Params(
            arbiter,
            collateralBps,
            minCollateral,
            disputeBond,
            arbitrationTimeout,
            auditTimeout,
            auditBps,
            auditFeeBps,
            nextJobId
        );
    }

    function _period(uint256 value, uint256 minValue) private pure returns (uint40) {
        if (value < minValue || value > MAX_PERIOD) revert InvalidPeriod(value, minValue, MAX_PERIOD);
        return uint40(value);
    }

    function _deposit(uint96 amount) private {
        if (amount == 0) revert ZeroAmount();
        _s.accounts[msg.sender].balance += amount;
        emit Deposited(msg.sender, amount);
        token.safeTransferFrom(msg.sender, address(this), amount);
    }

    function _permit(uint96 amount, uint256 permitDeadline, uint8 v, bytes32 r, bytes32 s) private {
        // A front-runner may have used the permit already; the deposit then relies on the
        // allowance it created (OpenZeppelin's recommended pattern for permit + transferFrom).
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, permitDeadline, v, r, s) {}
            catch {}
    }

    /// @dev `offered`: the job is posted under an offer; the top bit of its salt says so (the
    ///      terms are committed, so the flag cannot be forged later; 63 random bits remain).
    function _post(PostParams calldata p, bool offered) private returns (uint256 jobId, JobTerms memory t) {
        if (p.payment == 0) revert ZeroAmount();
        if (p.modelCid.length == 0 || p.specCid.length == 0) revert EmptyCid();
        if (p.claimDeadline <= block.timestamp) revert InvalidClaimDeadline(p.claimDeadline, block.timestamp);
        if (p.completionWindow == 0 || p.completionWindow > maxCompletionWindow) {
            revert InvalidCompletionWindow(p.completionWindow, maxCompletionWindow);
        }
        Account storage a = _s.accounts[msg.sender];
        if (a.balance < p.payment) revert InsufficientBalance(msg.sender, a.balance, p.payment);
        a.balance -= p.payment;

        uint16 fee = feeBps;
        address recipient = feeRecipient;
        jobId = nextJobId++;
        // Unknown before the block that posts the job, so no one can prepare colliding terms.
        uint64 salt = uint64(uint256(keccak256(abi.encode(block.prevrandao, blockhash(block.number - 1), jobId))));
        salt = offered ? salt | OFFERED : salt & ~OFFERED;
        t = JobTerms(
            msg.sender, p.payment, p.provider, p.completionWindow, fee, recipient, keccak256(p.modelCid), salt
        );
        _s.jobs[jobId] = JobSlot(State.Posted, p.claimDeadline, JobAudits.commitmentOf(jobId, t));
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

    /// @dev Give a posted job to `provider`: it must be active and (a claimer; an offer's
    ///      signature vouches for it) serve the model; its collateral is locked and the terms
    ///      name it from now on.
    function _assign(uint256 jobId, JobTerms memory t, address provider, bool offered) private {
        Account storage a = _s.accounts[provider];
        if (a.status != Status.Active) revert ProviderNotActive(provider);
        if (!offered && _s.serves[provider][t.modelKey] != _s.providers[provider].registration) {
            revert ModelNotServed(provider, t.modelKey);
        }
        uint96 collateral = collateralFor(t.payment);
        if (a.stake < collateral) revert InsufficientStake(provider, a.stake, collateral);
        a.stake -= collateral;
        a.openJobs += 1;
        t.provider = provider;
        // completionWindow <= maxCompletionWindow <= MAX_PERIOD: checked at post, committed since.
        uint40 completionDeadline = uint40(block.timestamp) + t.completionWindow;
        _s.jobs[jobId] = JobSlot(State.Claimed, completionDeadline, JobAudits.commitmentOf(jobId, t));
        emit JobClaimed(jobId, provider, collateral, completionDeadline);
    }

    /// @dev Void every offer the caller signed so far (its class, models or registration changed).
    function _voidOffers(JobAudits.ProviderRecord storage pr) private {
        uint64 nonce = pr.offerNonce + 1;
        pr.offerNonce = nonce;
        emit OffersWithdrawn(msg.sender, nonce);
    }

    function _offerDigest(Offer calldata o) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(OFFER_TYPEHASH, o)));
    }

    /// @dev Appended, never moved: see JobAudits.Member.
    function _joinClass(bytes32 reproClass) private {
        JobAudits.Member[] storage members = _s.classMembers[reproClass];
        members.push(JobAudits.Member(msg.sender, uint64(block.number), false));
        _s.classIndex[msg.sender] = members.length;
        _s.classSize[reproClass] += 1;
        _s.reproClassOf[msg.sender] = reproClass;
        emit ReproClassSet(msg.sender, reproClass);
    }

    /// @dev The entry stays where it is, marked as left (swap-and-pop would reorder the list
    ///      under draws whose seed is already known).
    function _leaveClass() private {
        uint256 idx = _s.classIndex[msg.sender];
        if (idx == 0) return;
        bytes32 reproClass = _s.reproClassOf[msg.sender];
        _s.classMembers[reproClass][idx - 1].left = true;
        _s.classSize[reproClass] -= 1;
        delete _s.classIndex[msg.sender];
        delete _s.reproClassOf[msg.sender];
    }

    function _slot(uint256 jobId, JobTerms calldata terms) private view returns (JobSlot memory job) {
        job = _s.jobs[jobId];
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
        a = _s.accounts[msg.sender];
        if (a.status != Status.Active) revert ProviderNotActive(msg.sender);
    }

    function _addModels(bytes[] calldata modelCids, uint32 registration) private {
        for (uint256 i = 0; i < modelCids.length; ++i) {
            if (modelCids[i].length == 0) revert EmptyCid();
            bytes32 key = keccak256(modelCids[i]);
            _s.serves[msg.sender][key] = registration;
            emit ModelAdded(msg.sender, key, modelCids[i]);
        }
    }
}
