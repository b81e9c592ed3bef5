// Failure detection (SWIM): one probe per protocol period to the next member in a
// shuffled round-robin order; no ack within probe_timeout -> ask indirect_probes
// other members to ping it; no ack by the end of the period -> suspect; suspect for
// suspicion_timeout -> failed. Failed members are pinged now and then so a node
// that comes back (or was only cut off) hears that it was declared failed and
// refutes. Also the periodic gossip of the broadcast queue.
#include <algorithm>

#include "mesh/core_impl.hpp"

namespace meshd::mesh {

namespace {

void shuffle(std::vector<NodeId>& v, crypto::Random& rng) {
  for (std::size_t i = v.size(); i > 1; --i) {
    std::size_t j = rng.uniform(i);
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace

std::vector<Bytes> MeshCore::Impl::piggyback(std::size_t budget) {
  return broadcasts_.take(budget, transmit_limit());
}

void MeshCore::Impl::send_ping(const NodeId& to, std::uint64_t seq, bool with_target_state) {
  std::vector<Bytes> updates;
  if (with_target_state) {
    // Tell a suspected/failed node what we think of it, so it can refute at once.
    auto it = members_.find(to);
    if (it != members_.end() && it->second.info.state != MemberState::alive) {
      updates.push_back(encode_update(
          StateUpdate{to, it->second.info.state, it->second.info.incarnation}));
    }
  }
  for (Bytes& b : piggyback(cfg_.gossip_bytes_max)) updates.push_back(std::move(b));
  send(to, encode_ping(seq, updates));
}

void MeshCore::Impl::probe_tick(std::uint64_t now) {
  if (probe_.active && !probe_.acked) {
    ++counters_.probe_failures;
    auto it = members_.find(probe_.target);
    if (it != members_.end() && it->second.info.state == MemberState::alive) {
      ++counters_.suspicions;
      std::uint64_t inc = it->second.info.incarnation;
      set_state(now, it->second, MemberState::suspect, inc);
      queue_broadcast(state_key(probe_.target), StateUpdate{probe_.target, MemberState::suspect, inc});
    }
  }
  probe_.active = false;

  std::optional<NodeId> target;
  // Two passes at most: finish the current order, then one fresh shuffled order.
  for (int pass = 0; pass < 2 && !target; ++pass) {
    while (probe_index_ < probe_order_.size()) {
      const NodeId& id = probe_order_[probe_index_++];
      auto it = members_.find(id);
      if (it != members_.end() && (it->second.info.state == MemberState::alive ||
                                   it->second.info.state == MemberState::suspect)) {
        target = id;
        break;
      }
    }
    if (!target) {
      probe_order_ = live_members();
      shuffle(probe_order_, rng_);
      probe_index_ = 0;
    }
  }
  if (!target) return;
  probe_ = Probe{true, false, false, *target, next_seq_++, now};
  ++counters_.probes_sent;
  send_ping(*target, probe_.seq, true);
}

void MeshCore::Impl::probe_indirect(std::uint64_t now) {
  (void)now;
  probe_.indirect_sent = true;
  std::vector<NodeId> helpers;
  for (const auto& [id, m] : members_) {
    if (id != probe_.target && m.info.state == MemberState::alive) helpers.push_back(id);
  }
  shuffle(helpers, rng_);
  if (helpers.size() > cfg_.indirect_probes) helpers.resize(cfg_.indirect_probes);
  Bytes msg = encode_ping_req(PingReq{probe_.seq, probe_.target});
  for (const NodeId& h : helpers) send(h, msg);
}

void MeshCore::Impl::check_suspicions(std::uint64_t now) {
  for (auto& [id, m] : members_) {
    if (m.info.state == MemberState::suspect && now >= m.suspect_deadline_ms) {
      std::uint64_t inc = m.info.incarnation;
      set_state(now, m, MemberState::failed, inc);
      queue_broadcast(state_key(id), StateUpdate{id, MemberState::failed, inc});
    }
  }
}

void MeshCore::Impl::probe_failed_member(std::uint64_t now) {
  (void)now;
  std::vector<NodeId> failed;
  for (const auto& [id, m] : members_) {
    if (m.info.state == MemberState::failed) failed.push_back(id);
  }
  if (failed.empty()) return;
  send_ping(failed[rng_.uniform(failed.size())], next_seq_++, true);
}

void MeshCore::Impl::gossip_tick(std::uint64_t now) {
  (void)now;
  if (broadcasts_.empty()) return;
  std::vector<NodeId> targets = live_members();
  shuffle(targets, rng_);
  if (targets.size() > cfg_.gossip_fanout) targets.resize(cfg_.gossip_fanout);
  for (const NodeId& t : targets) {
    std::vector<Bytes> updates = piggyback(cfg_.gossip_bytes_max);
    if (updates.empty()) break;
    send(t, encode_gossip(updates));
  }
}

void MeshCore::Impl::on_ping(std::uint64_t now, const NodeId& from, const Ping& m) {
  for (const Update& u : m.updates) apply_update(now, u);
  send(from, encode_ack(m.seq, piggyback(cfg_.gossip_bytes_max)));
}

void MeshCore::Impl::on_ack(std::uint64_t now, const NodeId& from, const Ack& m) {
  for (const Update& u : m.updates) apply_update(now, u);
  if (probe_.active && m.seq == probe_.seq) probe_.acked = true;
  auto it = relays_.find(m.seq);
  if (it != relays_.end()) {
    (void)from;
    send(it->second.origin, encode_ack(it->second.origin_seq, {}));
    relays_.erase(it);
  }
}

void MeshCore::Impl::on_ping_req(std::uint64_t now, const NodeId& from, const PingReq& m) {
  if (m.target == self_.id()) {
    send(from, encode_ack(m.seq, {}));
    return;
  }
  if (is_revoked(m.target)) {
    ++counters_.drop_revoked;
    return;
  }
  if (relays_.size() >= cfg_.indirect_pending_max) {
    ++counters_.drop_queue_full;
    return;
  }
  std::uint64_t seq = next_seq_++;
  relays_[seq] = Relay{from, m.seq, now + cfg_.probe_interval_ms};
  send_ping(m.target, seq, false);
}

}  // namespace meshd::mesh
