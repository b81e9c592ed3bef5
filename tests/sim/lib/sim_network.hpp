// Simulated datagram network between node indexes: per-link delay distribution, loss,
// duplication, reordering and (possibly asymmetric) partitions. It only decides each
// message's fate; the cluster's event queue carries it. All randomness from one seed.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "sim/lib/sim_random.hpp"

namespace meshd::sim {

using NodeIndex = std::uint32_t;

struct LinkModel {
  // Base one-way delay, uniform in [delay_min_ms, delay_max_ms]; jitter alone reorders.
  std::uint64_t delay_min_ms = 1;
  std::uint64_t delay_max_ms = 10;
  // A slow tail: with probability tail_p, add an exponential delay of mean tail_mean_ms.
  double tail_p = 0.0;
  std::uint64_t tail_mean_ms = 50;
  double loss = 0.0;       // probability a message is dropped
  double duplicate = 0.0;  // probability a second copy is delivered (own delay)
  double reorder = 0.0;    // probability a message is held back up to reorder_max_ms
  std::uint64_t reorder_max_ms = 100;
};

struct NetworkCounters {
  std::uint64_t sent = 0, sent_bytes = 0;  // offered by senders
  std::uint64_t delivered = 0;             // copies scheduled for delivery
  std::uint64_t lost = 0, partitioned = 0, duplicated = 0, to_down_node = 0;
};

// Delivery times of one message: none (lost), one, or two (duplicated).
struct Fate {
  std::size_t copies = 0;
  std::array<std::uint64_t, 2> at_ms{};
};

class SimNetwork {
 public:
  // Upper bound on any single delay so a bad model cannot stall the run forever.
  static constexpr std::uint64_t kDelayMaxMs = 60'000;

  SimNetwork(std::uint64_t seed, std::size_t nodes, LinkModel default_link);

  void set_default_link(const LinkModel& m) { default_ = m; }
  // Overrides the model of the directed link from -> to.
  void set_link(NodeIndex from, NodeIndex to, const LinkModel& m) { links_[{from, to}] = m; }
  const LinkModel& link(NodeIndex from, NodeIndex to) const;

  // Partitions: nodes carry a group (0 by default); a blocked (from group, to group)
  // pair drops everything sent that way. Blocking one direction only is asymmetric.
  void set_group(NodeIndex n, std::uint32_t group) { group_.at(n) = group; }
  void block(std::uint32_t from_group, std::uint32_t to_group) {
    blocked_.insert({from_group, to_group});
  }
  void heal() {
    blocked_.clear();
    std::fill(group_.begin(), group_.end(), 0);
  }
  bool reachable(NodeIndex from, NodeIndex to) const {
    return blocked_.empty() || blocked_.count({group_[from], group_[to]}) == 0;
  }
  bool partitioned() const { return !blocked_.empty(); }

  // Decides the fate of a message sent at now_ms. Partition is checked at send time:
  // messages already in flight when a partition starts still arrive.
  Fate send(std::uint64_t now_ms, NodeIndex from, NodeIndex to, std::size_t bytes);

  NetworkCounters& counters() { return counters_; }
  const NetworkCounters& counters() const { return counters_; }

 private:
  std::uint64_t delay(const LinkModel& m);

  SimRandom rng_;
  LinkModel default_;
  std::map<std::pair<NodeIndex, NodeIndex>, LinkModel> links_;
  std::vector<std::uint32_t> group_;
  std::set<std::pair<std::uint32_t, std::uint32_t>> blocked_;
  NetworkCounters counters_;
};

}  // namespace meshd::sim
