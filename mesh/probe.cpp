// Failure detection (SWIM + Lifeguard): one probe per protocol period to the next
// member in a shuffled round-robin order; no ack within probe_timeout -> ask
// indirect_probe_count() other members to ping it (and to nack if it stays silent); no ack
// by the end of the period -> suspect; suspect until the Lifeguard timer (shrinking
// with independent confirmations, suspicion.hpp) runs out -> failed. Our own probe
// results and the helpers' nacks feed the local health multiplier
// (local_health.hpp), which stretches our probe period and timeout when we are the
// slow one. Failed members are pinged now and then so a node that comes back (or was
// only cut off) hears that it was declared failed and refutes. Also the periodic
// gossip of the broadcast queue.
#include <algorithm>
#include <cassert>

#include "mesh/core_impl.hpp"

namespace meshd::mesh {

std::size_t MeshCore::Impl::add_piggyback(std::vector<Bytes>& updates) {
  std::size_t used = 0;
  for (const Bytes& b : updates) used += b.size();
  if (used >= cfg_.gossip_bytes_max) return 0;
  std::vector<Bytes> taken = broadcasts_.take(cfg_.gossip_bytes_max - used, transmit_limit());
  for (Bytes& b : taken) updates.push_back(std::move(b));
  return taken.size();
}

std::optional<Bytes> MeshCore::Impl::target_state(const NodeId& to) const {
  // What we think of a suspected/failed node, told to it so it can refute at once.
  auto it = members_.find(to);
  if (it == members_.end() || it->second.state == MemberState::alive ||
      it->second.state == MemberState::left) {
    return std::nullopt;
  }
  return encode_update(StateUpdate{to, it->second.state, it->second.incarnation});
}

void MeshCore::Impl::send_ping(const NodeId& to, std::uint64_t seq, bool with_target_state) {
  std::vector<Bytes> updates;
  if (with_target_state) {
    if (auto b = target_state(to)) updates.push_back(std::move(*b));
  }
  add_piggyback(updates);
  send(to, encode_ping(seq, updates));
}

void MeshCore::Impl::probe_tick(std::uint64_t now) {
  if (probe_.active && !probe_.acked) {
    ++counters_.probe_failures;
    auto it = members_.find(probe_.target);
    // Lifeguard local health: helpers that were asked to nack and did not are
    // evidence that our own messages are lost or late; with no helper to judge by,
    // the failed probe itself counts.
    // Lifeguard adds one per missing nack. Here missing nacks count only when no
    // helper answered at all: one nack shows that our messages go out and come back in
    // time, so the silent helpers are the ones in trouble (dead, or cut off with the
    // target), and several members crashing at once must not slow the survivors'
    // probes. The evidence is capped at kNackEvidenceMax (memberlist's 3 helpers), as
    // indirect_probe_count() grows with N.
    if (probe_.nacks_expected > 0) {
      const std::size_t missing = probe_.nacks_expected - probe_.nacks_received;
      counters_.nacks_missed += missing;
      if (probe_.nacks_received == 0) {
        health_delta(static_cast<int>(std::min(missing, kNackEvidenceMax)));
      }
    } else {
      health_delta(1);
    }
    // Only the incarnation we probed is to blame: if the node refuted meanwhile, the
    // silence belongs to the old one.
    if (it != members_.end() && it->second.incarnation == probe_.incarnation) {
      Member& m = it->second;
      const StateUpdate accusation{probe_.target, MemberState::suspect, m.incarnation,
                                   self_.id(), std::nullopt};
      auto sus = suspicions_.find(probe_.target);
      if (m.state == MemberState::alive) {
        ++counters_.suspicions;
        set_state(now, m, MemberState::suspect, m.incarnation, self_.id());
        queue_state(accusation);
        // Tell the suspect at once (SWIM): if it is only slow or its acks got lost, it
        // refutes, and its ack carries the refutation straight back to us.
        send_ping(probe_.target, next_seq_++, true);
      } else if (m.state == MemberState::suspect && sus != suspicions_.end() &&
                 confirm_suspicion(sus, self_.id())) {
        // Someone else accused it first; our failed probe is an independent confirmation.
        ++counters_.suspicion_confirmations;
        queue_state(accusation);
      }
    }
  }
  probe_.active = false;

  // Randomized round robin over live_ (kept in step with the table, so every entry is
  // alive or suspect): a fresh shuffle at the start of each round.
  std::optional<NodeId> target;
  if (probe_first_) {
    auto it = members_.find(*probe_first_);
    if (it != members_.end() && it->second.state == MemberState::suspect) target = *probe_first_;
    probe_first_.reset();
  }
  if (!target) {
    if (probe_index_ >= live_.size()) {
      live_shuffle();
      probe_index_ = 0;
    }
    if (live_.empty()) return;
    target = live_[probe_index_++]->id();
  }
  probe_ = Probe{};
  probe_.active = true;
  probe_.target = *target;
  probe_.incarnation = members_.find(*target)->second.incarnation;
  probe_.seq = next_seq_++;
  probe_.sent_ms = now;
  probe_.indirect_ms = now + probe_timeout_ms();
  const std::uint64_t period_end = now + probe_interval_ms();
  probe_.second_wave_ms =
      probe_.indirect_ms + (period_end > probe_.indirect_ms ? (period_end - probe_.indirect_ms) / 2 : 0);
  ++counters_.probes_sent;
  send_ping(*target, probe_.seq, true);
}

void MeshCore::Impl::probe_indirect(std::uint64_t now) {
  (void)now;
  probe_.indirect_sent = true;
  const NodeId target = probe_.target;
  const std::size_t first = std::min(indirect_probe_count(), kIndirectFirstWave);
  std::vector<Member*> helpers = sample_live(first, [&](const Member& m) {
    return m.state == MemberState::alive && m.id() != target;
  });
  Bytes msg = encode_ping_req(PingReq{probe_.seq, probe_.target, true});
  for (const Member* h : helpers) {
    send(h->id(), msg);
    probe_.first_wave[probe_.first_wave_size++] = h->id();
  }
  // And once more directly (memberlist's TCP fallback, here one more datagram): on a
  // lossy network most failed probes are one lost ping or ack, not a dead node.
  if (cfg_.direct_retry) send_ping(probe_.target, probe_.seq, true);
  probe_.nacks_expected = helpers.size();
}

void MeshCore::Impl::probe_second_wave(std::uint64_t now) {
  // The first wave and the retry failed: either the target is dead, or we were unlucky
  // (at 10 % loss ~1 failed probe in 130 gets here). More independent paths make a
  // false suspicion, which every node would have to gossip, that much rarer; this
  // costs nothing on a healthy network and a few datagrams per dead node.
  (void)now;
  probe_.second_wave_sent = true;
  const std::size_t total = indirect_probe_count();
  if (total <= probe_.first_wave_size) return;
  const NodeId target = probe_.target;
  const auto* asked_begin = probe_.first_wave.data();
  const auto* asked_end = asked_begin + probe_.first_wave_size;
  std::vector<Member*> helpers =
      sample_live(total - probe_.first_wave_size, [&](const Member& m) {
        return m.state == MemberState::alive && m.id() != target &&
               std::find(asked_begin, asked_end, m.id()) == asked_end;
      });
  ++counters_.probe_second_waves;
  Bytes msg = encode_ping_req(PingReq{probe_.seq, probe_.target, false});
  for (const Member* h : helpers) send(h->id(), msg);
}

void MeshCore::Impl::check_suspicions(std::uint64_t now) {
  // Earliest deadlines first; set_state below ends each suspicion (and its entry).
  assert(suspicion_deadlines_.size() == suspicions_.size());
#ifndef NDEBUG
  // Every suspicion's key points at its suspect's current record (set_record re-points).
  for (const auto& [key, sus] : suspicions_) {
    auto m = members_.find(*key.id);
    assert(m != members_.end() && key.id == &m->second.id() && m->first.id == key.id);
  }
#endif
  std::vector<NodeId> expired;
  for (auto it = suspicion_deadlines_.begin();
       it != suspicion_deadlines_.end() && it->first <= now; ++it) {
    expired.push_back(*it->second->id);
  }
  for (const NodeId& id : expired) {
    Member& m = members_.find(id)->second;
    const std::uint64_t inc = m.incarnation;
    set_state(now, m, MemberState::failed, inc);
    queue_state(StateUpdate{id, MemberState::failed, inc, std::nullopt, std::nullopt});
  }
}

void MeshCore::Impl::probe_failed_member(std::uint64_t now) {
  (void)now;
  if (live_.size() == members_.size()) return;  // nobody failed or left
  std::vector<NodeId> failed;
  for (const auto& [id, m] : members_) {
    if (m.state == MemberState::failed) failed.push_back(id);
  }
  if (failed.empty()) return;
  send_ping(failed[rng_.uniform(failed.size())], next_seq_++, true);
}

void MeshCore::Impl::gossip_tick(std::uint64_t now) {
  if (broadcasts_.empty()) return;
  // A backlog (a partition healing: hundreds of refutations at once) gets more
  // messages per tick, up to gossip_burst_max times the fanout, one per
  // kGossipBacklogPerMessage queued updates beyond the first message's worth.
  const std::size_t extra = broadcasts_.size() / kGossipBacklogPerMessage;
  const std::size_t fanout =
      std::min(cfg_.gossip_fanout * std::max<std::size_t>(1, cfg_.gossip_burst_max),
               cfg_.gossip_fanout + extra);
  for (const NodeId& t : sample_partners(now, fanout, false)) {
    // Gossip to a recently failed member (a partition that may have healed) tells it
    // that it is failed: it refutes at once instead of waiting to be probed.
    std::vector<Bytes> updates;
    if (auto b = target_state(t)) updates.push_back(std::move(*b));
    if (add_piggyback(updates) == 0) break;
    send(t, encode_gossip(updates));
  }
}

void MeshCore::Impl::on_ping(std::uint64_t now, const NodeId& from, const Ping& m) {
  for (const Update& u : m.updates) apply_update(now, u);
  // A ping from a node we hold failed or suspect (a healed partition, a node that was
  // only slow): the ack tells it, so it refutes now, not when someone probes it.
  std::vector<Bytes> updates;
  if (auto b = target_state(from)) updates.push_back(std::move(*b));
  add_piggyback(updates);
  send(from, encode_ack(m.seq, updates));
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
