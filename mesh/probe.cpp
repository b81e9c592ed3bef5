// Failure detection (SWIM + Lifeguard): one probe per protocol period to the next
// member in a shuffled round-robin order; no ack within probe_timeout -> ask
// indirect_probes other members to ping it (and to nack if it stays silent); no ack
// by the end of the period -> suspect; suspect until the Lifeguard timer (shrinking
// with independent confirmations, suspicion.hpp) runs out -> failed. Our own probe
// results and the helpers' nacks feed the local health multiplier
// (local_health.hpp), which stretches our probe period and timeout when we are the
// slow one. Failed members are pinged now and then so a node that comes back (or was
// only cut off) hears that it was declared failed and refutes. Also the periodic
// gossip of the broadcast queue.
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
    // Lifeguard local health: helpers that were asked to nack and did not are
    // evidence that our own messages are lost or late; with no helper to judge by,
    // the failed probe itself counts.
    if (probe_.nacks_expected > 0) {
      const std::size_t missing = probe_.nacks_expected - probe_.nacks_received;
      counters_.nacks_missed += missing;
      health_delta(static_cast<int>(missing));
    } else {
      health_delta(1);
    }
    if (it != members_.end()) {
      Member& m = it->second;
      const StateUpdate accusation{probe_.target, MemberState::suspect, m.info.incarnation,
                                   self_.id()};
      if (m.info.state == MemberState::alive) {
        ++counters_.suspicions;
        set_state(now, m, MemberState::suspect, m.info.incarnation, self_.id());
        queue_state(accusation);
      } else if (m.info.state == MemberState::suspect && m.suspicion.confirm(self_.id())) {
        // Someone else accused it first; our failed probe is an independent confirmation.
        ++counters_.suspicion_confirmations;
        queue_state(accusation);
      }
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
  probe_ = Probe{};
  probe_.active = true;
  probe_.target = *target;
  probe_.seq = next_seq_++;
  probe_.sent_ms = now;
  probe_.indirect_ms = now + probe_timeout_ms();
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
  Bytes msg = encode_ping_req(PingReq{probe_.seq, probe_.target, true});
  for (const NodeId& h : helpers) send(h, msg);
  probe_.nacks_expected = helpers.size();
}

void MeshCore::Impl::check_suspicions(std::uint64_t now) {
  for (auto& [id, m] : members_) {
    if (m.info.state == MemberState::suspect && now >= m.suspicion.deadline_ms()) {
      std::uint64_t inc = m.info.incarnation;
      set_state(now, m, MemberState::failed, inc);
      queue_state(StateUpdate{id, MemberState::failed, inc, std::nullopt});
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
  if (probe_.active && !probe_.acked && m.seq == probe_.seq) {
    probe_.acked = true;
    health_delta(-1);  // Lifeguard: a round trip of ours worked
  }
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
  // Refusing to relay still answers with a nack when one is wanted: the nack says
  // "your request reached me", which is what the requester's local health needs.
  auto refuse = [&] {
    if (!m.want_nack) return;
    ++counters_.nacks_sent;
    send(from, encode_nack(Nack{m.seq}));
  };
  if (is_revoked(m.target)) {
    ++counters_.drop_revoked;
    refuse();
    return;
  }
  if (relays_.size() >= cfg_.indirect_pending_max) {
    ++counters_.drop_queue_full;
    refuse();
    return;
  }
  std::uint64_t seq = next_seq_++;
  Relay r{from, m.seq, now + cfg_.probe_interval_ms, 0, m.want_nack};
  // The origin waits (at least) probe_interval - probe_timeout after asking us; a
  // nack at this share of probe_timeout gets there within that window.
  r.nack_ms = now + cfg_.probe_timeout_ms * cfg_.nack_timeout_pct / 100;
  relays_[seq] = r;
  send_ping(m.target, seq, false);
}

void MeshCore::Impl::on_nack(std::uint64_t now, const NodeId& from, const Nack& m) {
  (void)now;
  (void)from;
  ++counters_.nacks_received;
  // Only for the probe in flight, and never more than we asked for (a helper that
  // repeats itself must not make us look healthier than we are).
  if (probe_.active && !probe_.acked && m.seq == probe_.seq &&
      probe_.nacks_received < probe_.nacks_expected) {
    ++probe_.nacks_received;
  }
}

void MeshCore::Impl::relay_tick(std::uint64_t now) {
  for (auto& [seq, r] : relays_) {
    if (r.nack_pending && now >= r.nack_ms) {
      r.nack_pending = false;
      ++counters_.nacks_sent;
      send(r.origin, encode_nack(Nack{r.origin_seq}));
    }
  }
  std::erase_if(relays_, [now](const auto& kv) { return kv.second.deadline_ms <= now; });
}

void MeshCore::Impl::health_delta(int delta) {
  health_.apply_delta(delta);
  counters_.local_health = health_.score();
  counters_.local_health_max_seen =
      std::max<std::uint64_t>(counters_.local_health_max_seen, health_.score());
}

}  // namespace meshd::mesh
