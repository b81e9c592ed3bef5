#include "sim/lib/sim_network.hpp"

#include <algorithm>
#include <cmath>

namespace meshd::sim {

SimNetwork::SimNetwork(std::uint64_t seed, std::size_t nodes, LinkModel default_link)
    : rng_(mix_seed(seed, 0x6e6574)), default_(default_link), group_(nodes, 0) {}

const LinkModel& SimNetwork::link(NodeIndex from, NodeIndex to) const {
  if (links_.empty()) return default_;
  auto it = links_.find({from, to});
  return it == links_.end() ? default_ : it->second;
}

std::uint64_t SimNetwork::delay(const LinkModel& m) {
  std::uint64_t d = rng_.between(m.delay_min_ms, std::max(m.delay_min_ms, m.delay_max_ms));
  if (rng_.chance(m.tail_p)) {
    // Inverse-CDF exponential; 1 - unit() is in (0, 1], so log is finite.
    d += static_cast<std::uint64_t>(-std::log(1.0 - rng_.unit()) *
                                    static_cast<double>(m.tail_mean_ms));
  }
  if (rng_.chance(m.reorder)) d += rng_.between(1, std::max<std::uint64_t>(1, m.reorder_max_ms));
  return std::min(std::max<std::uint64_t>(d, 1), kDelayMaxMs);  // never same-instant delivery
}

Fate SimNetwork::send(std::uint64_t now_ms, NodeIndex from, NodeIndex to, std::size_t bytes) {
  ++counters_.sent;
  counters_.sent_bytes += bytes;
  Fate f;
  if (!reachable(from, to)) {
    ++counters_.partitioned;
    return f;
  }
  const LinkModel& m = link(from, to);
  if (rng_.chance(m.loss)) {
    ++counters_.lost;
    return f;
  }
  f.at_ms[f.copies++] = now_ms + delay(m);
  if (rng_.chance(m.duplicate)) {
    ++counters_.duplicated;
    f.at_ms[f.copies++] = now_ms + delay(m);
  }
  counters_.delivered += f.copies;
  return f;
}

}  // namespace meshd::sim
