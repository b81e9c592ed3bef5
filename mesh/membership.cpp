// Member table and the SWIM state rules: who is alive, suspect, failed or left, at
// which incarnation; joins and admission (token expiry and uses); token over-use
// detected through gossip; refutation of our own suspicion; reaping. Revoked nodes
// (revocation.cpp) are never admitted here.
#include <algorithm>

#include <functional>

#include "mesh/core_impl.hpp"

namespace meshd::mesh {

std::shared_ptr<const NodeRecord> MeshCore::Impl::verify_record(std::uint64_t now,
                                                                const NodeRecord& r) {
  auto v = cache_->verify(r, now_s(now));
  return v.ok() ? std::move(v.value()) : nullptr;
}

void MeshCore::Impl::apply_update(std::uint64_t now, const Update& u) {
  if (const auto* m = std::get_if<MemberEntry>(&u)) {
    apply_member(now, *m);
  } else if (const auto* s = std::get_if<StateUpdate>(&u)) {
    apply_state(now, s->node, s->state, s->incarnation, s->accuser, s->proof);
  } else if (const auto* r = std::get_if<Revocation>(&u)) {
    apply_revocation(now, *r);
  } else {
    apply_mapping(now, std::get<EndpointMapping>(u));
  }
}

void MeshCore::Impl::apply_member(std::uint64_t now, const MemberEntry& e, bool from_subject) {
  const NodeId id = e.record.id();
  if (id == self_.id()) {
    apply_state(now, id, e.state, e.incarnation, std::nullopt, e.proof);  // a suspicion to refute?
    return;
  }
  if (is_revoked(id)) {
    ++counters_.drop_revoked;
    return;
  }
  if (refused_.count(id) != 0) {
    ++counters_.drop_refused;
    return;
  }
  auto it = members_.find(id);
  if (it != members_.end() && e.record.version <= it->second.rec->version) {
    apply_state(now, id, e.state, e.incarnation, std::nullopt, e.proof, from_subject);
    return;
  }
  std::shared_ptr<const NodeRecord> rec = verify_record(now, e.record);
  if (!rec) {
    ++counters_.drop_bad_signature;
    return;
  }
  if (it == members_.end()) {
    if (!token_admits(e.record)) return;
    if (members_.size() >= cfg_.members_max) {
      ++counters_.drop_table_full;
      return;
    }
    std::shared_ptr<const crypto::Signature> proof;
    if (e.incarnation > 0 && !from_subject) {
      proof = e.proof ? cache_->verify_alive(id, e.incarnation, *e.proof) : nullptr;
      if (!proof) {
        ++counters_.drop_bad_signature;
        return;
      }
    }
    Member& added = insert_member(now, std::move(rec), e.state, e.incarnation);
    added.proof = std::move(proof);
    persist_member(added);
    queue_broadcast(member_key(id), entry_of(added));
    if (added.live()) {
      emit(MeshEvent{MeshEvent::Kind::member_up, added.info(), std::nullopt, id, {}});
      on_member_up(now, added);
    }
    return;
  }
  set_record(it, std::move(rec));
  Member& m = it->second;
  persist_member(m);
  queue_broadcast(member_key(id), entry_of(m));
  if (m.live()) {
    emit(MeshEvent{MeshEvent::Kind::member_updated, m.info(), std::nullopt, id, {}});
  }
  apply_state(now, id, e.state, e.incarnation, std::nullopt, e.proof, from_subject);
}

std::shared_ptr<const crypto::Signature> MeshCore::Impl::check_proof(
    const Member& m, std::uint64_t inc, const std::optional<crypto::Signature>& proof,
    bool from_subject, bool& ok) {
  ok = true;
  if (inc <= m.incarnation || from_subject) return nullptr;
  std::shared_ptr<const crypto::Signature> p =
      proof ? cache_->verify_alive(m.id(), inc, *proof) : nullptr;
  if (!p) {
    ++counters_.drop_bad_signature;  // an incarnation the node never signed
    ok = false;
  }
  return p;
}

void MeshCore::Impl::apply_state(std::uint64_t now, const NodeId& id, MemberState st,
                                 std::uint64_t inc, const std::optional<NodeId>& accuser,
                                 const std::optional<crypto::Signature>& proof,
                                 bool from_subject) {
  if (id == self_.id()) {
    // Only incarnations we signed count: a forged "suspect at a huge incarnation" must
    // not push ours up. (Above ours, yet signed by us: we lost our state and restarted.)
    const bool ours = inc <= incarnation_ ||
                      (proof && verify_alive_signature(self_.id(), inc, *proof));
    if (!ours) ++counters_.drop_bad_signature;
    if (ours && !left_ && st != MemberState::alive && inc >= incarnation_) refute(now, inc);
    return;
  }
  auto it = members_.find(id);
  if (it == members_.end()) return;  // a state without its record cannot be used
  Member& m = it->second;
  bool proven = true;
  std::shared_ptr<const crypto::Signature> new_proof = check_proof(m, inc, proof, from_subject, proven);
  if (!proven) return;
  const MemberState cur = m.state;
  const std::uint64_t ci = m.incarnation;
  const bool cur_live = cur == MemberState::alive || cur == MemberState::suspect;
  bool apply = false;
  // SWIM precedence: a higher incarnation always wins; at equal incarnation
  // left/failed > suspect > alive, so only the node itself (by bumping its
  // incarnation) can undo a suspicion.
  switch (st) {
    case MemberState::alive: apply = inc > ci; break;
    case MemberState::suspect:
      apply = (cur == MemberState::alive && inc >= ci) || (cur == MemberState::suspect && inc > ci);
      break;
    case MemberState::failed:
      apply = (cur_live && inc >= ci) || (cur == MemberState::failed && inc > ci);
      break;
    case MemberState::left:
      apply = (cur != MemberState::left && inc >= ci) || (cur == MemberState::left && inc > ci);
      break;
  }
  const std::optional<NodeId> who = st == MemberState::suspect ? accuser : std::nullopt;
  if (!apply) {
    // Lifeguard: another member independently suspects what we already suspect.
    // A new confirmer shortens our timer; pass it on so others count it too.
    auto sus = suspicions_.find(id);
    if (st == MemberState::suspect && cur == MemberState::suspect && inc == ci && who &&
        sus != suspicions_.end() && confirm_suspicion(sus, *who)) {
      ++counters_.suspicion_confirmations;
      queue_state(StateUpdate{id, st, inc, who, std::nullopt});
    }
    return;
  }
  if (inc > m.incarnation) m.proof = std::move(new_proof);  // null: from the node itself
  const bool newly_suspect = st == MemberState::suspect && cur == MemberState::alive;
  set_state(now, m, st, inc, who);
  if (newly_suspect && rng_.uniform(std::max<std::size_t>(live_.size(), 1)) < kConfirmProbers) {
    probe_first_ = id;
  }
  // The proof travels with "alive" (the refutation that raised the incarnation) and in
  // member entries; accusations go without it (64 bytes less on every suspect/failed):
  // a node that has not heard the refutation yet ignores them until it does.
  queue_state(StateUpdate{id, st, inc, who,
                          st == MemberState::alive ? proof_of(m) : std::nullopt});
}

void MeshCore::Impl::start_suspicion(std::uint64_t now, Member& m,
                                     const std::optional<NodeId>& accuser) {
  // An unknown accuser (older sender, or a member learned already suspect) is the
  // zero id: it never matches a real confirmer, so every real one counts.
  const NodeId who = accuser.value_or(NodeId{});
  if (cfg_.suspicion_mult == 0) {  // Lifeguard suspicion off: the fixed timer
    suspicion_start(m, Suspicion(now, cfg_.suspicion_timeout_ms, cfg_.suspicion_timeout_ms, 0, who));
    return;
  }
  const std::size_t n = live_count() + 1;  // + self
  const std::uint64_t min =
      std::max(cfg_.suspicion_floor_ms,
               suspicion_min_timeout_ms(cfg_.suspicion_mult, n, cfg_.probe_interval_ms));
  const std::uint64_t max = min * cfg_.suspicion_max_timeout_mult;
  suspicion_start(
      m, Suspicion(now, min, max, suspicion_expected_confirmations(cfg_.suspicion_confirmations, n), who));
}

bool MeshCore::Impl::confirm_suspicion(SuspicionMap::iterator sus, const NodeId& who) {
  const std::uint64_t before = sus->second.deadline_ms();
  if (!sus->second.confirm(who)) return false;
  suspicion_deadlines_.erase({before, &sus->first});
  suspicion_deadlines_.emplace(sus->second.deadline_ms(), &sus->first);
  return true;
}

void MeshCore::Impl::suspicion_start(const Member& m, Suspicion s) {
  suspicion_end(m.id());
  auto it = suspicions_.emplace(MemberKey{&m.id()}, std::move(s)).first;
  suspicion_deadlines_.emplace(it->second.deadline_ms(), &it->first);
}

void MeshCore::Impl::suspicion_end(const NodeId& id) {
  auto it = suspicions_.find(id);
  if (it == suspicions_.end()) return;
  suspicion_deadlines_.erase({it->second.deadline_ms(), &it->first});
  suspicions_.erase(it);
}

void MeshCore::Impl::set_state(std::uint64_t now, Member& m, MemberState st, std::uint64_t inc,
                               const std::optional<NodeId>& accuser) {
  const MemberState prev = m.state;
  const bool was_live = m.live();
  const NodeId id = m.id();
  if (was_live && inc != m.incarnation) {  // the digests cover live members' incarnations
    digest_toggle(id, m.rec->version, m.incarnation);
    digest_toggle(id, m.rec->version, inc);
  }
  m.incarnation = inc;
  if (st != prev) {
    m.state = st;
    m.state_since_ms = now;
    if (prev == MemberState::suspect) suspicion_end(id);
    if (st == MemberState::suspect) start_suspicion(now, m, accuser);
    if (was_live && !m.live()) live_remove(m);
    if (!was_live && m.live()) live_add(m);
  }
  persist_member(m);
  if (prev == MemberState::failed && m.live()) {
    // A failed member is back: most likely a partition healed, and the rest of the
    // mesh differs from us too. Catch up by push-pull now rather than at the next
    // interval (each sync that finds differences brings the next one closer).
    catch_up_soon(now);
  }
  if (st == MemberState::alive && !was_live) {
    emit(MeshEvent{MeshEvent::Kind::member_up, m.info(), std::nullopt, id, {}});
    on_member_up(now, m);
  } else if (st == MemberState::failed && prev != MemberState::failed) {
    if (recently_failed_.size() >= cfg_.members_max) recently_failed_.pop_front();
    recently_failed_.emplace_back(&members_.find(id)->first, now);
    emit(MeshEvent{MeshEvent::Kind::member_failed, m.info(), std::nullopt, id, {}});
    remove_owner_mappings(id);
  } else if (st == MemberState::left && prev != MemberState::left) {
    emit(MeshEvent{MeshEvent::Kind::member_left, m.info(), std::nullopt, id, {}});
    remove_owner_mappings(id);
    drop_held_of(id);
  }
}

void MeshCore::Impl::set_incarnation(std::uint64_t inc) {
  incarnation_ = inc;
  persist_incarnation();
  if (inc > 0) {
    self_proof_ = sign_alive(key_, inc);
  } else {
    self_proof_.reset();
  }
}

void MeshCore::Impl::refute(std::uint64_t now, std::uint64_t heard_inc) {
  set_incarnation(heard_inc + 1);
  ++counters_.refutations;
  // Lifeguard: being suspected hints that our own messages are late or lost.
  health_delta(1);
  queue_state(StateUpdate{self_.id(), MemberState::alive, incarnation_, std::nullopt, self_proof_});
  (void)now;
}

MeshCore::Impl::Member& MeshCore::Impl::insert_member(std::uint64_t now,
                                                      std::shared_ptr<const NodeRecord> rec,
                                                      MemberState st, std::uint64_t inc) {
  ++token_members_[rec->chain.node.token_id];
  const MemberKey key{&rec->id()};  // into the record, which the member then owns
  auto [it, fresh] = members_.emplace(key, Member{std::move(rec)});
  assert(fresh);  // callers insert only ids they do not hold
  (void)fresh;
  Member& added = it->second;
  added.state = st;
  added.incarnation = inc;
  added.state_since_ms = now;
  if (added.live()) live_add(added);
  if (st == MemberState::suspect) start_suspicion(now, added, std::nullopt);
  return added;
}

bool MeshCore::Impl::token_admits(const NodeRecord& candidate) {
  const crypto::TokenId& tid = candidate.chain.node.token_id;
  const std::size_t uses = candidate.chain.enrollment.uses;
  // Fast path, counted: the full list below is only built when the token is over-used.
  if (token_holders(tid) + 1 <= uses) return true;
  struct Holder {
    std::uint64_t issued_s;
    NodeId id;
  };
  std::vector<Holder> holders;
  if (self_.chain.node.token_id == tid) holders.push_back({self_.chain.node.issued_s, self_.id()});
  for (const auto& [id, m] : members_) {
    if (m.rec->chain.node.token_id == tid) holders.push_back({m.rec->chain.node.issued_s, id});
  }
  // Revoked nodes keep their slots (ordered first: they enrolled before being revoked).
  for (const auto& [id, r] : revocations_) {
    if (r.token_id == tid && members_.count(id) == 0) holders.push_back({0, id});
  }
  holders.push_back({candidate.chain.node.issued_s, candidate.id()});
  if (holders.size() <= uses) return true;
  // Every node orders the holders the same way, so all agree on who is extra.
  std::sort(holders.begin(), holders.end(), [](const Holder& a, const Holder& b) {
    return a.issued_s != b.issued_s ? a.issued_s < b.issued_s : a.id < b.id;
  });
  bool admit = true;
  for (std::size_t i = uses; i < holders.size(); ++i) {
    const NodeId& id = holders[i].id;
    if (is_revoked(id)) continue;  // already out of the mesh
    if (id == candidate.id()) {
      admit = false;
    } else if (id == self_.id()) {
      if (!self_refused_reported_) {
        self_refused_reported_ = true;
        emit(MeshEvent{MeshEvent::Kind::join_refused, std::nullopt, std::nullopt, id,
                       "token.used_up"});
      }
      continue;
    } else {
      remove_owner_mappings(id);
      drop_held_of(id);
      if (auto gone = members_.find(id); gone != members_.end()) erase_member(gone);
      unpersist_member(id);
    }
    refuse_node(id);
    emit(MeshEvent{MeshEvent::Kind::node_refused, std::nullopt, std::nullopt, id,
                   "token.used_up"});
  }
  return admit;
}

void MeshCore::Impl::refuse_node(const NodeId& id) {
  if (refused_.count(id) != 0) return;
  if (cfg_.refused_max == 0) return;
  if (refused_.size() >= cfg_.refused_max) {
    refused_.erase(refused_order_.front());
    refused_order_.pop_front();
  }
  refused_.insert(id);
  refused_order_.push_back(id);
}

void MeshCore::Impl::on_member_up(std::uint64_t now, const Member& m) {
  // Mappings need nothing here: the owner sets it joins are rebalanced (map_rebalance),
  // and it resolves what it needs itself.
  (void)now;
  (void)m;
}

void MeshCore::Impl::send_join_requests(std::uint64_t now) {
  (void)now;
  Bytes msg = encode_join_request(JoinRequest{incarnation_, self_, self_proof_});
  for (const Contact& c : contacts_) send(c.id, msg);
}

void MeshCore::Impl::on_join_request(std::uint64_t now, const NodeId& from, const JoinRequest& req) {
  if (req.record.id() != from) {
    ++counters_.drop_bad_signature;
    return;
  }
  auto refuse = [&](const char* reason) {
    ++counters_.joins_refused;
    send(from, encode_join_refuse(JoinRefuse{reason}));
    emit(MeshEvent{MeshEvent::Kind::node_refused, std::nullopt, std::nullopt, from, reason});
  };
  if (refused_.count(from) != 0) {
    refuse("token.used_up");
    return;
  }
  const crypto::CertChain& chain = req.record.chain;
  // A known member (any state) rejoins without its token: restarts after expiry work.
  if (members_.count(from) == 0) {
    if (now_s(now) > chain.enrollment.not_after_s) {
      refuse("token.expired");
      return;
    }
    if (token_holders(chain.node.token_id) >= chain.enrollment.uses) {
      refuse("token.used_up");
      return;
    }
    if (members_.size() >= cfg_.members_max) {
      ++counters_.drop_table_full;
      refuse("mesh.full");
      return;
    }
  }
  if (!verify_record(now, req.record)) {  // cached: apply_member below does not pay again
    ++counters_.drop_bad_signature;
    return;
  }
  // From the node itself: its incarnation counts even without a proof (older senders);
  // with one, we can pass the entry on and others accept it too.
  apply_member(now, MemberEntry{req.record, MemberState::alive, req.incarnation, req.proof},
               !req.proof.has_value());
  if (members_.count(from) == 0) return;  // refused by the over-use rule, or table full
  send_members(from, true, true, true);
}

namespace {

// Members, states and revocations for one peer, cut into messages of at most
// message_bytes_max: the first a join accept if asked, the rest pushes.
class PushBatcher {
 public:
  enum List { kMembers, kRevocations, kStates };
  PushBatcher(std::size_t message_bytes_max, bool as_join_accept,
              std::function<void(Bytes)> send)
      : budget_(message_bytes_max > 64 ? message_bytes_max - 64 : 0),  // room for headers
        join_accept_(as_join_accept),
        send_(std::move(send)) {}
  void add(List l, Bytes b) {
    if (used_ + b.size() > budget_ && !empty()) flush();
    used_ += b.size();
    lists_[l].push_back(std::move(b));
  }
  // Sends what is left; a join accept goes out even when empty (it ends the join).
  void finish() {
    if (!sent_any_ || !empty()) flush();
  }

 private:
  bool empty() const { return lists_[0].empty() && lists_[1].empty() && lists_[2].empty(); }
  void flush() {
    // Mappings no longer travel here (their owners hold them, mapping_system.cpp): the
    // mapping lists go out empty.
    send_(!sent_any_ && join_accept_
              ? encode_join_accept(lists_[kMembers], {}, lists_[kRevocations])
              : encode_push(lists_[kMembers], {}, false, lists_[kRevocations], lists_[kStates]));
    sent_any_ = true;
    for (auto& l : lists_) l.clear();
    used_ = 0;
  }
  std::size_t budget_;
  bool join_accept_;
  std::function<void(Bytes)> send_;
  std::array<std::vector<Bytes>, 3> lists_;
  std::size_t used_ = 0;
  bool sent_any_ = false;
};

}  // namespace

void MeshCore::Impl::send_members(const NodeId& to, bool as_join_accept, bool include_members,
                                  bool include_revocations,
                                  const std::bitset<kMemberBuckets>* buckets, bool as_states) {
  PushBatcher out(cfg_.message_bytes_max, as_join_accept, [&](Bytes b) { send(to, std::move(b)); });
  // Revocations first: the receiver then refuses a revoked node before it could
  // admit it from a stale member entry later in the same exchange.
  if (include_revocations) {
    for (const auto& [id, r] : revocations_) out.add(PushBatcher::kRevocations, encode_revocation(r));
  }
  if (include_members) {
    auto wanted = [&](const NodeId& id) { return buckets == nullptr || buckets->test(id[0]); };
    if (wanted(self_.id())) {
      if (as_states) {
        out.add(PushBatcher::kStates, encode_member_state(self_state()));
      } else {
        out.add(PushBatcher::kMembers, encode_member(self_entry()));
      }
    }
    for (const auto& [id, m] : members_) {
      if (!wanted(id)) continue;
      if (as_states) {
        out.add(PushBatcher::kStates, encode_member_state(state_of(m)));
      } else {
        out.add(PushBatcher::kMembers, encode_member(entry_of(m)));
      }
    }
  }
  out.finish();
}

void MeshCore::Impl::on_record_request(std::uint64_t /*now*/, const NodeId& from,
                                       const RecordRequest& m) {
  // The records a push of states left the asker without (compact push-pull). Ids we
  // do not hold are skipped: the asker learns them elsewhere.
  PushBatcher out(cfg_.message_bytes_max, false, [&](Bytes b) { send(from, std::move(b)); });
  std::set<NodeId> seen;
  std::size_t found = 0;
  for (const NodeId& id : m.nodes) {
    if (!seen.insert(id).second) continue;
    if (id == self_.id()) {
      out.add(PushBatcher::kMembers, encode_member(self_entry()));
      ++found;
    } else if (auto it = members_.find(id); it != members_.end()) {
      out.add(PushBatcher::kMembers, encode_member(entry_of(it->second)));
      ++found;
    }
  }
  ++counters_.records_requests_served;
  if (found > 0) out.finish();  // nothing known: no empty push
}

void MeshCore::Impl::on_join_accept(std::uint64_t now, const NodeId& from, const JoinAccept& m) {
  for (const Revocation& r : m.revocations) apply_revocation(now, r);
  if (left_) return;  // we were among them
  for (const MemberEntry& e : m.members) apply_member(now, e);
  for (const EndpointMapping& e : m.mappings) apply_mapping(now, e);
  if (joining_) {
    joining_ = false;
    join_reported_ = true;
    emit(MeshEvent{MeshEvent::Kind::join_accepted, std::nullopt, std::nullopt, from, {}});
    next_anti_entropy_ms_ = now;  // fetch what the accept did not carry, soon
  }
}

void MeshCore::Impl::on_join_refuse(std::uint64_t now, const NodeId& from, const JoinRefuse& m) {
  (void)now;
  if (!joining_) return;
  bool is_contact = std::any_of(contacts_.begin(), contacts_.end(),
                                [&](const Contact& c) { return c.id == from; });
  if (!is_contact) return;
  joining_ = false;
  emit(MeshEvent{MeshEvent::Kind::join_refused, std::nullopt, std::nullopt, from, m.reason});
}

void MeshCore::Impl::on_leave(std::uint64_t now, const NodeId& from, const Leave& m) {
  apply_state(now, from, MemberState::left, m.incarnation, std::nullopt, m.proof,
              !m.proof.has_value());
}

void MeshCore::Impl::reap(std::uint64_t now) {
  if (live_.size() == members_.size()) return;  // nobody failed or left
  for (auto it = members_.begin(); it != members_.end();) {
    const Member& m = it->second;
    if (!m.live() && now >= m.state_since_ms + cfg_.failed_reap_ms) {
      unpersist_member(it->first);
      drop_held_of(it->first);  // kept while it was failed, in case it came back
      it = erase_member(it);
    } else {
      ++it;
    }
  }
}

}  // namespace meshd::mesh
