// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IJobMarket} from "./IJobMarket.sol";
import {IArbiter} from "./IArbiter.sol";

/// @title JobAudits
/// @notice What happens to a job after `complete`: settlement, random and requested audits
///         with commit-reveal and a tiebreak, arbitration, rewards and slashing.
/// @dev A linked library: JobMarket delegatecalls its external functions, which run on the
///      market's storage (one Store) with the market's parameters (Params). It exists because
///      the market with audits no longer fits EIP-170's 24,576-byte limit as one contract.
///      Events and errors are IJobMarket's, so they come from the market's address as before.
library JobAudits {
    /// @notice Gas the arbiter's `onDispute` always gets: a call with less gas left reverts,
    ///         so nobody can silence the arbiter with a tight gas limit.
    uint256 internal constant ARBITER_GAS = 100_000;
    /// @notice Gas a call must still have before calling the arbiter: ARBITER_GAS survives
    ///         the 63/64 rule, with room for the call itself and what follows it.
    uint256 internal constant ARBITER_GAS_FLOOR = ARBITER_GAS * 64 / 63 + 10_000;
    /// @notice Places in the class's list an auditor draw looks at, each drawn afresh.
    uint256 internal constant MAX_DRAW = 32;
    /// @notice EIP-2935's block-hash history (Prague): hashes of the last 8,191 blocks, so an
    ///         audit can be drawn after BLOCKHASH's 256-block horizon.
    address internal constant HISTORY = 0x0000F90827F1C53a10cb7A02335B175320002935;

    /// @dev A provider's advertised price and its registration number: models are served only
    ///      under the registration that added them, so `withdrawStake` clears them all at once.
    ///      Its offer nonce shares the slot: an offered post reads the registration anyway, so
    ///      the nonce check costs no cold read of its own (1,994 gas less a post, measured).
    struct ProviderRecord {
        uint96 minPrice;
        uint32 registration;
        uint64 offerNonce;
    }

    /// @dev An entry of a class's list. The list only grows, in joining order, and a provider
    ///      that leaves keeps its place, marked `left`: a draw then reads the list as it stood at
    ///      its seed block (the entries that joined by then, in their order), so whoever sends
    ///      the draw after the seed's hash is public cannot steer it by joining, leaving or
    ///      reordering the list.
    struct Member {
        address account;
        uint64 joinedBlock;
        bool left;
    }

    /// @dev All of the market's mutable state but its fee settings and job counter.
    struct Store {
        mapping(uint256 jobId => IJobMarket.JobSlot) jobs;
        mapping(address account => IJobMarket.Account) accounts;
        mapping(address provider => mapping(bytes32 modelKey => uint32 registration)) serves;
        mapping(address provider => ProviderRecord) providers;
        mapping(uint256 jobId => IJobMarket.Audit) audits;
        mapping(address provider => bytes32 reproClass) reproClassOf;
        mapping(bytes32 reproClass => Member[] members) classMembers;
        mapping(address provider => uint256 indexPlusOne) classIndex;
        mapping(bytes32 reproClass => uint256 live) classSize;
        uint96 auditPool;
    }

    /// @dev The market's immutable parameters (and job counter) as the library needs them.
    struct Params {
        address arbiter;
        uint32 collateralBps;
        uint96 minCollateral;
        uint96 disputeBond;
        uint40 arbitrationTimeout;
        uint40 auditTimeout;
        uint16 auditBps;
        uint16 auditFeeBps;
        uint256 nextJobId;
    }

    /// @notice The collateral a claimer (or auditor) locks for a job paying `payment`.
    function collateralFor(Params memory p, uint96 payment) internal pure returns (uint96) {
        // Up to 100x a payment can pass uint96: SafeCast reverts rather than wrap.
        uint96 share = SafeCast.toUint96(uint256(payment) * p.collateralBps / 10_000);
        return share < p.minCollateral ? p.minCollateral : share;
    }

    /// @notice The commitment stored for job `jobId` with these terms while Posted or Claimed.
    function commitmentOf(uint256 jobId, IJobMarket.JobTerms memory terms) internal pure returns (uint208) {
        return uint208(uint256(keccak256(abi.encode(jobId, terms))));
    }

    /// @notice Whether a completed job was drawn for a random audit.
    function auditSelected(
        Store storage s,
        Params memory p,
        uint256 jobId,
        IJobMarket.JobTerms calldata terms,
        IJobMarket.Result calldata result
    ) external view returns (bool) {
        _loadDone(s, p, jobId, terms, result, IJobMarket.State.Completed);
        return _selected(s, p, jobId, terms, result);
    }

    function settle(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result) external {
        _settle(s, p, jobId, terms, result);
    }

    /// @dev One by one, in order, as `settle`: the first job that cannot be settled reverts the
    ///      whole batch with its own error. What the batch saves is the per-transaction cost and
    ///      the cold reads: the provider's account, the fee recipient's, the audit pool and the
    ///      block-hash history are warm after the first job.
    function settleMany(Store storage s, Params memory p, uint256[] calldata jobIds, IJobMarket.JobTerms[] calldata terms, IJobMarket.Result[] calldata results) external {
        uint256 n = jobIds.length;
        if (n == 0 || terms.length != n || results.length != n) revert IJobMarket.InvalidBatch(n, terms.length, results.length);
        for (uint256 i = 0; i < n; ++i) {
            _settle(s, p, jobIds[i], terms[i], results[i]);
        }
    }

    function _settle(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result) private {
        IJobMarket.JobSlot memory job = _loadDone(s, p, jobId, terms, result, IJobMarket.State.Completed);
        if (block.timestamp <= job.deadline) revert IJobMarket.DeadlineNotPassed(jobId, job.deadline);
        if (_selected(s, p, jobId, terms, result)) revert IJobMarket.AuditRequired(jobId);
        delete s.jobs[jobId];
        _payProvider(s, p, jobId, terms, 0);
    }

    function startAudit(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result) external {
        IJobMarket.JobSlot memory job = _loadDone(s, p, jobId, terms, result, IJobMarket.State.Completed);
        // The window is the client's: a random audit follows it, so an audit that ends at once
        // cannot pay the provider while the client could still dispute.
        if (block.timestamp <= job.deadline) revert IJobMarket.DeadlineNotPassed(jobId, job.deadline);
        if (!_selected(s, p, jobId, terms, result)) revert IJobMarket.NotSelected(jobId);
        emit IJobMarket.AuditStarted(jobId, address(0), 0);
        bytes32 h = _randomAt(result.completedBlock);
        if (h == bytes32(0)) {
            // Drawn because its hash is gone (waiting must not dodge an audit): any hash the
            // caller can see would let it pick the auditor, so `finalize` draws from this
            // block's; and an audit had on demand earns its auditor no more than the job paid
            // into the pool (an operator with a class of its own could drain the pool otherwise).
            _openAudit(s, p, jobId, terms, result, address(0), address(0), 0);
            IJobMarket.Audit storage au = s.audits[jobId];
            au.phase = IJobMarket.Phase.Draw;
            au.drawBlock = uint64(block.number);
            au.aged = true;
            return;
        }
        address auditor = _draw(s, p, terms, keccak256(abi.encode(h, jobId, "draw")), result.completedBlock, address(0));
        if (auditor == address(0) && _alone(s, terms)) {
            _skip(s, p, jobId, terms);
            return;
        }
        _openAudit(s, p, jobId, terms, result, auditor, address(0), 0);
        // Classmates, but none of the candidates looked at could audit (they do not serve the
        // model, lack the collateral, unbond, or joined to push the draw past the able ones):
        // the arbiter decides rather than the result standing unchecked.
        if (auditor == address(0)) _toArbiter(s, p, jobId, terms);
    }

    /// @dev Whether the provider is alone in its class: nobody can check its outputs.
    function _alone(Store storage s, IJobMarket.JobTerms calldata terms) private view returns (bool) {
        return s.classSize[s.reproClassOf[terms.provider]] < 2;
    }

    /// @dev A random audit nobody can run: the result stands, as without the draw.
    function _skip(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms) private {
        emit IJobMarket.AuditSkipped(jobId);
        delete s.jobs[jobId];
        _payProvider(s, p, jobId, terms, 0);
    }

    function commitAudit(Store storage s, Params memory p, uint256 jobId, bytes32 commitment) external {
        IJobMarket.Audit storage au = s.audits[jobId];
        IJobMarket.JobSlot storage job = s.jobs[jobId];
        if (job.state != IJobMarket.State.Audited || au.phase != IJobMarket.Phase.Commit) revert IJobMarket.InvalidPhase(jobId, au.phase);
        if (msg.sender != au.auditors[au.round]) revert IJobMarket.NotAuditor(jobId, msg.sender);
        if (block.timestamp > job.deadline) revert IJobMarket.DeadlinePassed(jobId, job.deadline);
        au.commits[au.round] = commitment;
        au.phase = IJobMarket.Phase.Reveal;
        uint40 revealDeadline = uint40(block.timestamp) + p.auditTimeout;
        job.deadline = revealDeadline;
        emit IJobMarket.AuditCommitted(jobId, msg.sender, revealDeadline);
    }

    function reveal(Store storage s, Params memory p, uint256 jobId,
        IJobMarket.JobTerms calldata terms,
        IJobMarket.Result calldata result,
        address party,
        bytes32 outputHash,
        bytes32 salt
    ) external {
        IJobMarket.JobSlot memory job = _loadDone(s, p, jobId, terms, result, IJobMarket.State.Audited);
        IJobMarket.Audit storage au = s.audits[jobId];
        // Nobody reveals before the round's auditor has committed: nothing to copy.
        if (au.phase != IJobMarket.Phase.Reveal) revert IJobMarket.InvalidPhase(jobId, au.phase);
        if (block.timestamp > job.deadline) revert IJobMarket.DeadlinePassed(jobId, job.deadline);
        // Zero marks "not revealed", so it cannot be an output hash.
        if (outputHash == bytes32(0)) revert IJobMarket.InvalidReveal(jobId, party);
        bytes32 opened = resultCommitment(jobId, party, outputHash, salt);
        if (party == terms.provider && au.providerOutput == bytes32(0) && opened == result.commitment) {
            au.providerOutput = outputHash;
        } else {
            uint256 i = party == au.auditors[0] ? 0 : 1;
            if (party != au.auditors[i] || i > au.round || au.outputs[i] != bytes32(0) || opened != au.commits[i]) {
                revert IJobMarket.InvalidReveal(jobId, party);
            }
            au.outputs[i] = outputHash;
        }
        emit IJobMarket.OutputRevealed(jobId, party, outputHash);
        _decideRound(s, p, jobId, terms, au);
    }

    function finalize(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result) external {
        IJobMarket.JobSlot memory job = _slotDone(s, p, jobId, terms, result);
        IJobMarket.Audit storage au = s.audits[jobId];
        if (job.state == IJobMarket.State.Audited && au.phase == IJobMarket.Phase.Draw) {
            // A requested audit's auditor (none drawn yet) or a tiebreaker, from the hash of the
            // block that asked for it. A hash gone from history would be known to all: the
            // arbiter decides instead.
            uint8 round = au.auditors[0] == address(0) ? 0 : 1;
            bytes32 h = _randomAt(au.drawBlock);
            if (h == bytes32(0)) {
                // Nobody drew while the hash could be read: draw from this block's instead, which
                // whoever sends this cannot know (the arbiter at once would let a provider that
                // started its own audit wait it out). Once only: a party that sees the new seed
                // and does not like it could otherwise wait for yet another.
                if (au.redrawn) {
                    _toArbiter(s, p, jobId, terms);
                    return;
                }
                au.redrawn = true;
                au.drawBlock = uint64(block.number);
                return;
            }
            address drawn = _draw(
                s, p, terms, keccak256(abi.encode(h, jobId, round == 0 ? "draw" : "tiebreak")), au.drawBlock, au.auditors[0]
            );
            if (drawn == address(0)) {
                // An aged random audit of a provider alone in its class: as startAudit would.
                if (round == 0 && au.requester == address(0) && _alone(s, terms)) {
                    delete s.audits[jobId];
                    _skip(s, p, jobId, terms);
                } else {
                    _toArbiter(s, p, jobId, terms);
                }
                return;
            }
            au.auditors[round] = drawn;
            au.round = round;
            au.phase = IJobMarket.Phase.Commit;
            uint40 commitDeadline = uint40(block.timestamp) + p.auditTimeout;
            s.jobs[jobId].deadline = commitDeadline;
            emit IJobMarket.AuditorAssigned(jobId, drawn, round, collateralFor(p, terms.payment), commitDeadline);
            return;
        }
        if (job.state != IJobMarket.State.Audited && job.state != IJobMarket.State.Disputed) revert IJobMarket.InvalidState(jobId, job.state);
        if (block.timestamp <= job.deadline) revert IJobMarket.DeadlineNotPassed(jobId, job.deadline);
        if (job.state == IJobMarket.State.Disputed) {
            // The arbiter never decided: the result stands and the requester, not shown wrong
            // either, gets its bond back.
            _conclude(s, p, jobId, terms, true, false);
        } else if (au.round == 1) {
            // The tiebreaker did not commit or reveal in time.
            _toArbiter(s, p, jobId, terms);
        } else {
            // Round 0: the provider's commitment is on chain since `complete`; one it does not
            // open is held wrong. An auditor that did not commit or reveal is slashed by
            // _conclude, and a requester whose audit it left unanswered keeps its bond.
            bool upheld = au.phase == IJobMarket.Phase.Commit || au.providerOutput != bytes32(0);
            _conclude(s, p, jobId, terms, upheld, au.outputs[0] != bytes32(0));
        }
    }

    function dispute(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result) external {
        IJobMarket.JobSlot memory job = _loadDone(s, p, jobId, terms, result, IJobMarket.State.Completed);
        if (msg.sender != terms.client) revert IJobMarket.NotClient(jobId, msg.sender);
        if (block.timestamp > job.deadline) revert IJobMarket.DeadlinePassed(jobId, job.deadline);
        uint96 bond = p.disputeBond;
        IJobMarket.Account storage c = s.accounts[msg.sender];
        if (c.balance < bond) revert IJobMarket.InsufficientBalance(msg.sender, c.balance, bond);
        c.balance -= bond;
        emit IJobMarket.AuditStarted(jobId, msg.sender, bond);
        // The client chooses when to ask: any hash it could see before asking (the previous
        // block's) would let it wait for one that draws an auditor of its choosing. `finalize`
        // draws from the hash of this block, which nobody knows while sending this request.
        _openAudit(s, p, jobId, terms, result, address(0), msg.sender, bond);
        IJobMarket.Audit storage au = s.audits[jobId];
        au.phase = IJobMarket.Phase.Draw;
        au.drawBlock = uint64(block.number);
    }

    function resolve(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result, bool providerWins)
        external
    {
        if (msg.sender != p.arbiter) revert IJobMarket.NotArbiter(msg.sender);
        IJobMarket.JobSlot memory job = _loadDone(s, p, jobId, terms, result, IJobMarket.State.Disputed);
        // One cutoff: the arbiter decides up to the deadline, `finalize` applies only after it.
        if (block.timestamp > job.deadline) revert IJobMarket.DeadlinePassed(jobId, job.deadline);
        _conclude(s, p, jobId, terms, providerWins, true);
    }

    /// @dev Pays a finished job: payment less fee and audit fee (plus `extra`, what is left of
    ///      a bond) to the provider, the fee to the job's fee recipient, the audit fee to the
    ///      pool, the collateral back into stake.
    function _payProvider(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, uint96 extra) private {
        // feeBps <= MAX_FEE_BPS and p.auditFeeBps <= MAX_AUDIT_FEE_BPS: together below the payment.
        uint96 fee = uint96(uint256(terms.payment) * terms.feeBps / 10_000);
        uint96 auditFee = uint96(uint256(terms.payment) * p.auditFeeBps / 10_000);
        uint96 toProvider = terms.payment - fee - auditFee;
        IJobMarket.Account storage pa = s.accounts[terms.provider];
        pa.balance += toProvider + extra;
        pa.stake += collateralFor(p, terms.payment);
        pa.openJobs -= 1;
        if (fee != 0) s.accounts[terms.feeRecipient].balance += fee;
        if (auditFee != 0) s.auditPool += auditFee;
        emit IJobMarket.JobSettled(jobId, terms.provider, toProvider, fee, auditFee);
    }

    /// @dev Opens an audit with its first auditor (none: the caller sends the job to the arbiter).
    function _openAudit(Store storage s, Params memory p, uint256 jobId,
        IJobMarket.JobTerms calldata terms,
        IJobMarket.Result calldata result,
        address auditor,
        address requester,
        uint96 bond
    ) private {
        IJobMarket.Audit storage au = s.audits[jobId];
        au.requester = requester;
        au.bond = bond;
        au.auditors[0] = auditor;
        au.phase = IJobMarket.Phase.Commit;
        uint40 commitDeadline = uint40(block.timestamp) + p.auditTimeout;
        s.jobs[jobId] = IJobMarket.JobSlot(IJobMarket.State.Audited, commitDeadline, doneCommitment(jobId, terms, result));
        if (auditor != address(0)) {
            emit IJobMarket.AuditorAssigned(jobId, auditor, 0, collateralFor(p, terms.payment), commitDeadline);
        }
    }

    /// @dev After a reveal: decide the round once every output of it is known.
    function _decideRound(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Audit storage au) private {
        bytes32 po = au.providerOutput;
        bytes32 a0 = au.outputs[0];
        if (po == bytes32(0) || a0 == bytes32(0)) return;
        if (au.round == 0) {
            if (a0 == po) {
                _conclude(s, p, jobId, terms, true, true);
            } else {
                // One says yes, one says no: a tiebreaker, drawn by `finalize` from the hash of
                // this block, which nobody knows while sending this reveal.
                au.phase = IJobMarket.Phase.Draw;
                au.drawBlock = uint64(block.number);
                emit IJobMarket.AuditMismatch(jobId, block.number);
            }
            return;
        }
        bytes32 a1 = au.outputs[1];
        if (a1 == bytes32(0)) return;
        if (a1 == po) _conclude(s, p, jobId, terms, true, true);
        else if (a1 == a0) _conclude(s, p, jobId, terms, false, true);
        else _toArbiter(s, p, jobId, terms);
    }

    /// @dev Ends a job's audit or arbitration. `upheld`: the provider is paid; otherwise it loses
    ///      its collateral and the client gets payment and bond back. Each drawn auditor that
    ///      revealed the side that won (the provider's output if upheld, another if not) gets its
    ///      collateral back and a reward of one payment, from the bond (upheld, requested), the
    ///      slashed collateral (not upheld) or the pool (upheld, random); the others lose their
    ///      collateral to the pool. `bondForfeit` false: the bond goes back to the requester.
    function _conclude(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, bool upheld, bool bondForfeit) private {
        IJobMarket.Audit memory au = s.audits[jobId];
        delete s.audits[jobId];
        uint96 collateral = collateralFor(p, terms.payment);
        // What pays the rewards: `fund`, drawn down, with the rest to its owner below.
        uint96 fund = upheld ? (bondForfeit ? au.bond : 0) : collateral;
        uint96 less = 0; // an aged audit's reward, out of the provider's payout
        for (uint256 i = 0; i < 2; ++i) {
            address who = au.auditors[i];
            if (who == address(0)) continue;
            IJobMarket.Account storage a = s.accounts[who];
            a.openJobs -= 1;
            bytes32 out = au.outputs[i];
            if (out == bytes32(0) || (out == au.providerOutput) != upheld) {
                s.auditPool += collateral;
                emit IJobMarket.Slashed(jobId, who, collateral);
                continue;
            }
            uint96 reward = terms.payment;
            if (upheld && au.requester == address(0) && au.aged) {
                // An audit had on demand (an aged job counts as drawn whatever it was) is the
                // provider's to pay, its audit fee out of its payout: paid from the pool, letting
                // undrawn jobs age would take back the audit fee that settling pays in.
                // (payment less fee less audit fee: what _payProvider pays, at least 40% of it)
                uint96 auditFee = uint96(uint256(terms.payment) * p.auditFeeBps / 10_000);
                uint96 left = terms.payment - uint96(uint256(terms.payment) * terms.feeBps / 10_000) - auditFee - less;
                reward = auditFee < left ? auditFee : left;
                less += reward;
            } else if (upheld && au.requester == address(0)) {
                // From the pool: no more than what a job pays into it per random audit (its audit
                // fee over the audit rate; the whole payment at the defaults), so auditing one's
                // own jobs cannot drain it.
                uint256 cap = p.auditBps == 0 ? 0 : uint256(terms.payment) * p.auditFeeBps / p.auditBps;
                if (reward > cap) reward = uint96(cap);
                if (reward > s.auditPool) reward = s.auditPool;
                s.auditPool -= reward;
            } else {
                if (reward > fund) reward = fund;
                fund -= reward;
            }
            a.stake += collateral;
            a.balance += reward;
            emit IJobMarket.AuditorPaid(jobId, who, reward);
        }
        emit IJobMarket.AuditEnded(jobId, upheld);
        if (upheld) {
            delete s.jobs[jobId];
            if (!bondForfeit && au.bond != 0) s.accounts[au.requester].balance += au.bond;
            _payProvider(s, p, jobId, terms, fund);
            // An aged audit's reward, out of what the provider was just paid (JobSettled shows the
            // payout before it; AuditorPaid the reward). Apart so that settle costs no more.
            if (less != 0) s.accounts[terms.provider].balance -= less;
            return;
        }
        s.jobs[jobId].state = IJobMarket.State.Refunded;
        s.jobs[jobId].deadline = 0;
        s.accounts[terms.provider].openJobs -= 1;
        s.auditPool += fund;
        emit IJobMarket.Slashed(jobId, terms.provider, collateral);
        uint96 refund = terms.payment + au.bond;
        s.accounts[terms.client].balance += refund;
        emit IJobMarket.JobRefunded(jobId, terms.client, refund);
    }

    /// @dev Hands a job to the arbiter, after every state change, with a fixed gas allowance
    ///      the caller cannot shrink: an arbiter that reverts, burns its gas or re-enters (every
    ///      mutating entry point is) cannot block or bend the dispute, and always
    ///      hears of it.
    function _toArbiter(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms) private {
        IJobMarket.Audit storage au = s.audits[jobId];
        au.phase = IJobMarket.Phase.None;
        uint40 arbitrationDeadline = uint40(block.timestamp) + p.arbitrationTimeout;
        s.jobs[jobId].state = IJobMarket.State.Disputed;
        s.jobs[jobId].deadline = arbitrationDeadline;
        emit IJobMarket.JobDisputed(jobId, terms.client, au.bond, arbitrationDeadline);
        if (p.arbiter.code.length != 0) {
            uint256 left = gasleft();
            if (left < ARBITER_GAS_FLOOR) revert IJobMarket.InsufficientGasForArbiter(left, ARBITER_GAS_FLOOR);
            try IArbiter(p.arbiter).onDispute{gas: ARBITER_GAS}(address(this), jobId, terms.client, terms.provider) {}
                catch {}
        }
    }

    /// @dev Draws an auditor from the class's list as it stood at `seedBlock` (the block whose
    ///      hash made `seed`): up to MAX_DRAW entries at independent random places in it, the first
    ///      that is still in the class, active, serves the model, is neither the provider nor
    ///      `exclude`, and has the collateral free, which is locked. Zero if none. A provider that
    ///      joined after the seed block is never looked at (it could have joined knowing the
    ///      hash), and each look is a fresh place, not the next entry: entries of members that
    ///      left (or could not audit) hand their turn to nobody in particular, so nobody gains by
    ///      filling the list with them.
    function _draw(
        Store storage s,
        Params memory p,
        IJobMarket.JobTerms calldata terms,
        bytes32 seed,
        uint256 seedBlock,
        address exclude
    ) private returns (address) {
        Member[] storage members = s.classMembers[s.reproClassOf[terms.provider]];
        uint256 n = _joinedBy(members, seedBlock);
        if (n == 0) return address(0);
        uint96 collateral = collateralFor(p, terms.payment);
        for (uint256 i = 0; i < MAX_DRAW; ++i) {
            Member memory m = members[uint256(keccak256(abi.encode(seed, i))) % n];
            address c = m.account;
            if (m.left || c == terms.provider || c == exclude) continue;
            IJobMarket.Account storage a = s.accounts[c];
            if (a.status != IJobMarket.Status.Active || a.stake < collateral) continue;
            if (s.serves[c][terms.modelKey] != s.providers[c].registration) continue;
            a.stake -= collateral;
            a.openJobs += 1;
            return c;
        }
        return address(0);
    }

    /// @dev How many entries of a class's list had joined by `seedBlock` (they come first: the
    ///      list is in joining order). Usually one read: nobody joined since.
    function _joinedBy(Member[] storage members, uint256 seedBlock) private view returns (uint256) {
        uint256 hi = members.length;
        if (hi == 0 || members[hi - 1].joinedBlock <= seedBlock) return hi;
        uint256 lo = 0;
        hi -= 1; // entries [0, lo) joined by the seed block, entries [hi, length) after it
        while (lo < hi) {
            uint256 mid = (lo + hi) / 2;
            if (members[mid].joinedBlock <= seedBlock) lo = mid + 1;
            else hi = mid;
        }
        return lo;
    }

    /// @dev Whether the hash of the completion block draws the job for audit. A hash that can no
    ///      longer be read (over 8,191 blocks old) counts as drawn: waiting must not dodge audits.
    function _selected(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result) private view returns (bool) {
        if (p.auditBps == 0) return false;
        bytes32 h = _randomAt(result.completedBlock);
        if (h == bytes32(0)) return true;
        return uint256(keccak256(abi.encode(h, jobId, terms.salt))) % 10_000 < p.auditBps;
    }

    /// @dev The hash of block `n`, which must be mined: BLOCKHASH for the last 256 blocks, then
    ///      EIP-2935's history contract; zero beyond both.
    function _randomAt(uint256 n) private view returns (bytes32) {
        if (n >= block.number) revert IJobMarket.RandomnessNotReady(n, block.number);
        if (block.number - n <= 256) return blockhash(n);
        if (HISTORY.code.length == 0) return bytes32(0);
        (bool ok, bytes memory out) = HISTORY.staticcall(abi.encode(n));
        return ok && out.length == 32 ? abi.decode(out, (bytes32)) : bytes32(0);
    }

    function doneCommitment(uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result memory result)
        internal
        pure
        returns (uint208)
    {
        return uint208(uint256(keccak256(abi.encode(jobId, terms, result))));
    }

    /// @dev A completed (or audited, disputed) job's slot, checked against terms and result.
    function _slotDone(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result)
        private
        view
        returns (IJobMarket.JobSlot memory job)
    {
        job = s.jobs[jobId];
        if (job.state == IJobMarket.State.None) {
            if (jobId != 0 && jobId < p.nextJobId) revert IJobMarket.InvalidState(jobId, IJobMarket.State.Settled);
            revert IJobMarket.UnknownJob(jobId);
        }
        if (job.commitment != doneCommitment(jobId, terms, result)) {
            // Right terms, but the job is not (or no longer) completed: say which state it is in.
            if (job.commitment == commitmentOf(jobId, terms)) revert IJobMarket.InvalidState(jobId, job.state);
            revert IJobMarket.UnknownJob(jobId);
        }
    }

    function _loadDone(Store storage s, Params memory p, uint256 jobId, IJobMarket.JobTerms calldata terms, IJobMarket.Result calldata result, IJobMarket.State expected)
        private
        view
        returns (IJobMarket.JobSlot memory job)
    {
        job = _slotDone(s, p, jobId, terms, result);
        if (job.state != expected) revert IJobMarket.InvalidState(jobId, job.state);
    }

    /// @notice The commitment `complete` expects: only a holder of the output and the salt can
    ///         open it, and it names the job and the provider, so no one can reuse another's.
    function resultCommitment(uint256 jobId, address provider, bytes32 outputHash, bytes32 salt)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(jobId, provider, outputHash, salt));
    }
}
