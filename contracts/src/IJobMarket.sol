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
        Refunded,
        Audited
    }

    /// @notice Where an audit stands: waiting for the current auditor's commitment, for the
    ///         reveals, or for the block whose hash draws a requested audit's auditor or the
    ///         tiebreaker.
    enum Phase {
        None,
        Commit,
        Reveal,
        Draw
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
    /// @param salt drawn by the market at post (see JobPosted); its top bit (OFFERED) is set for a
    ///        job posted under an offer
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

    /// @notice A provider's signed promise to take jobs (EIP-712, see OFFER_TYPEHASH). A client
    ///         posts a job under it with `postJobWithOffer`, which assigns the job at once.
    /// @param provider who signed it
    /// @param modelKey keccak256 of the model's CID bytes
    /// @param reproClass the provider's reproducibility class when it signed: a class change
    ///        raises its offer nonce, voiding its offers, so a client never gets a job run by
    ///        another build than it chose (clients check the class before posting)
    /// @param price least payment per job
    /// @param completionWindow seconds the provider needs; a job under the offer gives at least this
    /// @param maxOpenJobs the offer assigns a job only while the provider has fewer open jobs
    ///        (claimed, completed in their window, audits) than this: never more work than it can run
    /// @param expiry unix time after which the offer is void
    /// @param nonce the offer holds while nonce == offerNonce(provider): raising that voids it, and
    ///        no offer signed ahead survives a raise (a class or model change must void them all)
    struct Offer {
        address provider;
        bytes32 modelKey;
        bytes32 reproClass;
        uint96 price;
        uint32 completionWindow;
        uint16 maxOpenJobs;
        uint40 expiry;
        uint64 nonce;
    }

    /// @notice What `complete` fixed about the result, passed back (like the terms) by every
    ///         call on a completed job and checked against the job's commitment.
    /// @param commitment keccak256(abi.encode(jobId, provider, outputHash, salt)): opens only
    ///        with the output's sha256 and the salt carried in the result
    /// @param completedBlock the block of `complete`; its hash draws the audit
    struct Result {
        bytes32 commitment;
        uint64 completedBlock;
    }

    /// @notice An audit of a completed job. Round 0 has one auditor; a mismatch draws a
    ///         tiebreaker (round 1), and 2 of 3 decide; three different outputs go to the arbiter.
    /// @param requester the client that asked for the audit (zero: drawn at random)
    /// @param bond what the requester locked; it pays the auditors if the result stands
    /// @param auditors the drawn auditors, in round order
    /// @param commits each auditor's keccak256(abi.encode(jobId, auditor, outputHash, salt))
    /// @param outputs each auditor's revealed output hash (zero: not revealed)
    /// @param providerOutput the provider's revealed output hash (zero: not revealed)
    /// @param round 0 or 1
    /// @param phase what the audit waits for
    /// @param drawBlock the block whose hash draws the auditor of a requested or aged audit or the tiebreaker
    /// @param aged a random audit of a job whose completion block's hash had left history: drawn
    ///        whatever it was, so its auditor's reward (the job's audit fee) comes out of the
    ///        provider's payout, not the pool
    /// @param redrawn its draw already moved once to a later block, nobody having drawn while the
    ///        hash could be read: the next time, the arbiter decides (whoever started the audit
    ///        could otherwise wait out every seed it does not like)
    struct Audit {
        address requester;
        uint96 bond;
        address[2] auditors;
        bytes32[2] commits;
        bytes32[2] outputs;
        bytes32 providerOutput;
        uint8 round;
        Phase phase;
        uint64 drawBlock;
        bool aged;
        bool redrawn;
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
    /// @param collateralBps claimer (and auditor) collateral in basis points of the payment, at
    ///        most MAX_COLLATERAL_BPS: all of it is lost on proven fraud, so it must be well over
    ///        (1 / audit rate) x payment
    /// @param minCollateral least collateral a claim locks, whatever the payment
    /// @param disputeWindow seconds after completion during which an audit can be started or
    ///        requested (at least 1: no result is paid before it could be checked)
    /// @param disputeBond what a client locks to request an audit; it pays the auditors (and the
    ///        rest goes to the provider) if the result stands
    /// @param arbitrationTimeout seconds the arbiter has to decide a dispute (at least 1)
    /// @param maxCompletionWindow longest completion window a job may ask for (at least 1)
    /// @param unbondingDelay seconds between unbond and withdrawStake
    /// @param minStake least stake to register
    /// @param auditBps share of completed jobs audited at random, in basis points
    /// @param auditFeeBps share of every payment that goes to the audit pool, which pays the
    ///        auditors of upheld random audits (at most 5,000)
    /// @param auditTimeout seconds each audit phase (commit, reveal) may take (at least 1)
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
        uint256 auditBps;
        uint256 auditFeeBps;
        uint256 auditTimeout;
    }

    // ---------------------------------------------------------------- events

    /// @notice Tokens were moved into an internal balance.
    event Deposited(address indexed account, uint256 amount);
    /// @notice Tokens were moved out of an internal balance to the account's wallet.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice A provider registered (or re-registered) with stake and a minimum price.
    event ProviderRegistered(address indexed provider, uint256 stake, uint256 minPrice);
    /// @notice A provider declared its reproducibility class: the hash of what makes its outputs
    ///         reproducible (llama.cpp build, backend, instruction set, settings). Audits compare
    ///         outputs only within one class.
    event ReproClassSet(address indexed provider, bytes32 indexed reproClass);
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
    /// @notice The claimer delivered a result and committed to its output (see Result).
    event JobCompleted(
        uint256 indexed jobId, address indexed provider, bytes resultCid, bytes32 commitment, uint256 disputeDeadline
    );
    /// @notice The provider was paid (`providerAmount`, `fee` to the job's fee recipient,
    ///         `auditFee` to the audit pool) and its collateral released.
    event JobSettled(
        uint256 indexed jobId, address indexed provider, uint256 providerAmount, uint256 fee, uint256 auditFee
    );
    /// @notice The client cancelled an unclaimed job and got its payment back.
    event JobCancelled(uint256 indexed jobId, address indexed client);
    /// @notice The claimer gave a job back early: the client got its payment back, the claimer
    ///         its collateral.
    event JobDeclined(uint256 indexed jobId, address indexed provider);
    /// @notice A provider published its current offers: a signed document at `cid` (IPFS).
    event OffersPublished(address indexed provider, bytes cid);
    /// @notice Every offer of a provider with a nonce below `nonce` is void: it withdrew them, or
    ///         changed its class, removed models or registered again.
    event OffersWithdrawn(address indexed provider, uint64 nonce);
    /// @notice A job past its deadline was ended: the client got `refund`, of which `slashed`
    ///         was the collateral of a provider that never delivered.
    event JobExpired(uint256 indexed jobId, address indexed client, uint256 refund, uint256 slashed);
    /// @notice A completed job went to the arbiter (no auditor could be drawn, or three outputs
    ///         differ, or the tiebreaker did not answer).
    event JobDisputed(uint256 indexed jobId, address indexed client, uint256 bond, uint256 arbitrationDeadline);
    /// @notice The result was not upheld: the client got its payment and any bond back, and the
    ///         provider lost its collateral (see Slashed).
    event JobRefunded(uint256 indexed jobId, address indexed client, uint256 refund);
    /// @notice An audit started: drawn at random (`requester` zero) or asked for by the client
    ///         with `bond`.
    event AuditStarted(uint256 indexed jobId, address indexed requester, uint256 bond);
    /// @notice `auditor` must re-run the job and commit to its output before `commitDeadline`;
    ///         `collateral` of its stake is locked until the audit ends.
    event AuditorAssigned(
        uint256 indexed jobId, address indexed auditor, uint8 round, uint256 collateral, uint256 commitDeadline
    );
    /// @notice The auditor committed; provider and auditors reveal before `revealDeadline`.
    event AuditCommitted(uint256 indexed jobId, address indexed auditor, uint256 revealDeadline);
    /// @notice `party` (the provider or an auditor) opened its commitment.
    event OutputRevealed(uint256 indexed jobId, address indexed party, bytes32 outputHash);
    /// @notice Provider and auditor disagree: `finalize` draws a tiebreaker from the hash of
    ///         block `drawBlock` once a later block exists.
    event AuditMismatch(uint256 indexed jobId, uint256 drawBlock);
    /// @notice The provider is alone in its reproducibility class: a random audit is skipped
    ///         and the result stands.
    event AuditSkipped(uint256 indexed jobId);
    /// @notice The audit ended. `upheld`: the provider's result stands.
    event AuditEnded(uint256 indexed jobId, bool upheld);
    /// @notice An auditor was released with `reward` for its work.
    event AuditorPaid(uint256 indexed jobId, address indexed auditor, uint256 reward);
    /// @notice `account` lost `amount` of collateral: a provider proven wrong, or an auditor
    ///         that was wrong or did not answer in time.
    event Slashed(uint256 indexed jobId, address indexed account, uint256 amount);
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
    /// @notice A zero reproducibility class.
    error InvalidReproClass();
    /// @notice The block whose hash draws this job's audit is not mined yet: try in a later block.
    error RandomnessNotReady(uint256 blockNumber, uint256 currentBlock);
    /// @notice This job was not drawn for a random audit.
    error NotSelected(uint256 jobId);
    /// @notice This job was drawn for audit: `startAudit` it instead of settling.
    error AuditRequired(uint256 jobId);
    /// @notice settleMany got no jobs, or lists of different lengths.
    error InvalidBatch(uint256 jobs, uint256 terms, uint256 results);
    /// @notice The audit is not in the phase this call needs.
    error InvalidPhase(uint256 jobId, Phase phase);
    /// @notice Only the auditor of the current round may commit.
    error NotAuditor(uint256 jobId, address caller);
    /// @notice The output hash and salt do not open `party`'s commitment, or `party` has
    ///         nothing to open.
    error InvalidReveal(uint256 jobId, address party);
    /// @notice Too little gas left to give the arbiter its full ARBITER_GAS: send the dispute
    ///         with a higher gas limit.
    error InsufficientGasForArbiter(uint256 gasLeft, uint256 needed);
    /// @notice The offer does not match the job (provider, model), or its signature is not
    ///         the provider's.
    error InvalidOffer(address provider);
    /// @notice The offer expired, or its nonce is not the provider's current one (withdrawn).
    error OfferVoid(address provider, uint256 expiry, uint64 nonce);
    /// @notice The job does not pay exactly the offer's price, or gives less time than it asks.
    error OfferTermsUnmet(uint256 payment, uint256 price, uint256 completionWindow, uint256 offerWindow);
    /// @notice The provider has as many open jobs as its offer allows.
    error ProviderBusy(address provider, uint256 openJobs, uint256 maxOpenJobs);
    /// @notice A new offer nonce must be above the current one.
    error NonceNotIncreasing(uint64 nonce, uint64 current);
    /// @notice An offer nonce above `max` would leave no room for the raises that register,
    ///         setReproClass and removeModels make.
    error NonceTooHigh(uint64 nonce, uint64 max);
    /// @notice Only a job posted under an offer can be declined.
    error NotOffered(uint256 jobId);
    /// @notice Too late to decline: half the completion window has passed.
    error DeclineTooLate(uint256 jobId, uint256 lastMoment);
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
    ///         minimum price and the models served (full CID bytes). Models, price and offers of
    ///         an earlier registration do not come back (its offer nonce is raised).
    function register(uint96 stake, uint96 minPrice, bytes32 reproClass, bytes[] calldata modelCids) external;

    /// @notice Change the reproducibility class (active providers without open jobs or audits);
    ///         raises the offer nonce: offers signed under the old class are void.
    function setReproClass(bytes32 reproClass) external;

    /// @notice Move `amount` from the internal balance into stake.
    function addStake(uint96 amount) external;

    /// @notice Set the minimum payment the provider asks for a job (advertised; nodes enforce it).
    function setPrice(uint96 minPrice) external;

    /// @notice Start serving models (full CID bytes). Active providers only.
    function addModels(bytes[] calldata modelCids) external;

    /// @notice Stop serving models (full CID bytes). Active providers only. Raises the offer
    ///         nonce: offers signed before, which may name these models, are void.
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

    /// @notice Post a job already accepted under a provider's signed offer: one transaction
    ///         escrows the payment, locks the provider's collateral and assigns it the job
    ///         (JobPosted then JobClaimed), so nobody races to claim. `p.provider` must be the
    ///         offer's provider, the model its model; the payment exactly its price, the
    ///         completion window at least its window; the provider active, with fewer open jobs
    ///         than the offer allows. Class and models are not read here: the signature is the
    ///         provider's word for them, and everything that changes them (setReproClass,
    ///         removeModels, register) raises its offer nonce, voiding what it signed before.
    function postJobWithOffer(PostParams calldata p, Offer calldata offer, bytes calldata signature)
        external
        returns (uint256 jobId);

    /// @notice Provider: publish where its signed offers are (an IPFS CID). No state: clients
    ///         read the OffersPublished logs, so a node behind NAT needs no open port.
    function publishOffers(bytes calldata cid) external;

    /// @notice Provider: void every offer signed so far; from now on offers with nonce `nonce`
    ///         (higher than the current one, at most 2**63) hold.
    function withdrawOffers(uint64 nonce) external;

    /// @notice The nonce a provider's offers must carry to hold.
    function offerNonce(address provider) external view returns (uint64);

    /// @notice The EIP-712 digest a provider signs for `offer`.
    function offerDigest(Offer calldata offer) external view returns (bytes32);

    /// @notice Claim a posted job; locks collateral from the caller's free stake.
    function claim(uint256 jobId, JobTerms calldata terms) external;

    /// @notice The provider gives back a job an offer assigned it, within the first half of its
    ///         completion window (a spec it cannot run, say): the client gets the payment back,
    ///         the provider its collateral. Later, or for a job it claimed itself, a job it
    ///         cannot finish expires and costs it collateral.
    function decline(uint256 jobId, JobTerms calldata terms) external;

    /// @notice Deliver a claimed job's result: its CID bytes and the commitment to the output
    ///         (see Result). `settle` pays once the window has passed, unless the job was drawn
    ///         for audit.
    function complete(uint256 jobId, JobTerms calldata terms, bytes calldata resultCid, bytes32 commitment)
        external;

    /// @notice Pay the provider of a completed job once its window is over and the job was not
    ///         drawn for audit (anyone).
    function settle(uint256 jobId, JobTerms calldata terms, Result calldata result) external;

    /// @notice Settle several completed jobs in one transaction (anyone), exactly as `settle`
    ///         would one after another; if any of them cannot be settled, none is and the call
    ///         reverts with that job's error. Cheaper per job than `settle` (see the gas table).
    function settleMany(uint256[] calldata jobIds, JobTerms[] calldata terms, Result[] calldata results)
        external;

    /// @notice Whether a completed job was drawn for a random audit: the hash of its completion
    ///         block, unknown when the provider sent `complete`, decides. Once that hash is gone
    ///         from history (8,191 blocks with EIP-2935, else 256) every job counts as drawn, so
    ///         waiting cannot dodge an audit (see startAudit).
    function auditSelected(uint256 jobId, JobTerms calldata terms, Result calldata result)
        external
        view
        returns (bool);

    /// @notice Start the random audit of a completed job drawn for one (anyone), after its
    ///         window: draws an auditor among the other active providers of the provider's class
    ///         that serve the model. Settles at once if the provider is alone in its class; goes
    ///         to the arbiter if none of the classmates looked at can audit. Once the completion
    ///         block's hash is gone from history (see auditSelected), `finalize` draws the auditor
    ///         in a later block from the hash of this one, and the provider pays its reward (the
    ///         job's audit fee) out of its payout.
    function startAudit(uint256 jobId, JobTerms calldata terms, Result calldata result) external;

    /// @notice The current round's auditor commits to its output.
    function commitAudit(uint256 jobId, bytes32 commitment) external;

    /// @notice Open `party`'s commitment (anyone may carry it: the hash proves it), after the
    ///         auditor committed. The last reveal of a round decides it.
    function reveal(
        uint256 jobId,
        JobTerms calldata terms,
        Result calldata result,
        address party,
        bytes32 outputHash,
        bytes32 salt
    ) external;

    /// @notice Move an audit on (anyone): draw a pending auditor or the tiebreaker once the
    ///         block that asked for it is mined (if its hash has left history, from the hash of
    ///         this call's block, in a later call), or end a
    ///         phase whose deadline passed (an auditor that did not commit or reveal loses its
    ///         collateral; a provider that did not reveal is held wrong; a silent tiebreaker
    ///         sends the job to the arbiter), or end an arbitration the arbiter let lapse (the
    ///         result stands, the bond goes back).
    function finalize(uint256 jobId, JobTerms calldata terms, Result calldata result) external;

    /// @notice The client cancels a job nobody claimed yet.
    function cancel(uint256 jobId, JobTerms calldata terms) external;

    /// @notice End a job whose deadline passed (anyone). Unclaimed: the client is refunded.
    ///         Claimed and never delivered: the client is refunded and gets up to the payment
    ///         again out of the claimer's collateral; the rest goes back to the claimer's stake.
    function expire(uint256 jobId, JobTerms calldata terms) external;

    /// @notice The client asks for an audit of a completed job within the window, locking the
    ///         dispute bond. The auditor is drawn by `finalize` (anyone) in a later block, from
    ///         the hash of this one; with no auditor to draw, that `finalize` sends the job to the
    ///         arbiter, and needs enough gas to give it ARBITER_GAS (InsufficientGasForArbiter).
    function dispute(uint256 jobId, JobTerms calldata terms, Result calldata result) external;

    /// @notice The arbiter decides a disputed job before its arbitration deadline. Provider
    ///         wins: it is paid (with the bond, less the auditors' rewards). Client wins: it gets
    ///         payment and bond back, and the provider loses its collateral. Auditors that agreed
    ///         with the decision are paid; the others lose their collateral.
    function resolve(uint256 jobId, JobTerms calldata terms, Result calldata result, bool providerWins) external;

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
