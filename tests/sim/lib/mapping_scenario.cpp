// The mapping scenario's phases. What the driver knows is ground truth (who publishes
// each endpoint); what each node knows comes only from its events: `view` is what an
// agent's forwarding table would hold (mapping_upsert adds, mapping_removed drops), and
// a lookup hits when its destination is there.
//
// Endpoint e: VNI 1 + e % V, MAC 02:00:<e, 4 bytes>, IP 100.64.0.0 + e. Its keys are
// (VNI, MAC) and (VNI, IP), "key codes" 2e and 2e + 1 here.
#include "sim/lib/mapping_scenario.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <string>
#include <unordered_map>

#include "sim/lib/sim_random.hpp"

namespace meshd::sim {

namespace {

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();
constexpr std::uint32_t kIpBase = 0x64400000u;  // 100.64.0.0/10: room for 4M endpoints
constexpr std::size_t kEndpointsMax = 1u << 22;
constexpr std::uint64_t kTrafficTickMs = 5;      // lookups are issued at this granularity
constexpr std::uint64_t kDrainLimitMs = 10'000;  // after traffic: answers still due
constexpr std::uint64_t kCheckLimitMs = 10'000;  // resolve checks after a kill round

// Message types of the mapping system (mesh/messages.hpp MsgType 12..15).
constexpr std::size_t kMapTypeFirst = 12;
constexpr std::size_t kMapTypes = 4;

MacAddr mac_of(std::uint32_t e) {
  return MacAddr{0x02,
                 0x00,
                 static_cast<std::uint8_t>(e >> 24),
                 static_cast<std::uint8_t>(e >> 16),
                 static_cast<std::uint8_t>(e >> 8),
                 static_cast<std::uint8_t>(e)};
}

IpAddr ip_of(std::uint32_t e) { return IpAddr::v4(kIpBase + e); }

Quantiles quantiles(std::vector<std::uint64_t> t) {
  Quantiles q;
  q.count = t.size();
  if (t.empty()) return q;
  std::sort(t.begin(), t.end());
  auto at = [&](double p) -> std::optional<std::uint64_t> {
    auto k = static_cast<std::size_t>(p * static_cast<double>(t.size()) + 0.999999);
    k = std::clamp<std::size_t>(k, 1, t.size());
    if (t[k - 1] == kNever) return std::nullopt;
    return t[k - 1];
  };
  q.p50_ms = at(0.5);
  q.p99_ms = at(0.99);
  q.max_ms = at(1.0);
  return q;
}

std::size_t vnis_per_node(const ScenarioConfig& c) {
  const std::size_t v = c.map.vnis;
  std::size_t k = c.map.vnis_per_node;
  if (k == 0) k = std::max<std::size_t>(3, (2 * v + c.nodes - 1) / c.nodes);
  return std::clamp<std::size_t>(k, 1, v);
}

}  // namespace

std::vector<std::vector<std::uint32_t>> mapping_node_vnis(const ScenarioConfig& c) {
  const std::size_t n = c.nodes, v = c.map.vnis, k = vnis_per_node(c);
  // N * K slots, VNI 1 + s % V each (balanced), dealt at random K per node; a node
  // dealt a VNI twice swaps one copy with another node's slot (bounded tries).
  std::vector<std::uint32_t> slots(n * k);
  for (std::size_t s = 0; s < slots.size(); ++s) slots[s] = static_cast<std::uint32_t>(1 + s % v);
  SimRandom rng(mix_seed(c.seed, 0x766e6973));
  for (std::size_t i = slots.size(); i > 1; --i) {
    std::swap(slots[i - 1], slots[rng.between(0, i - 1)]);
  }
  auto dup_in = [&](std::size_t node, std::uint32_t vni, std::size_t skip) {
    for (std::size_t j = node * k; j < node * k + k; ++j) {
      if (j != skip && slots[j] == vni) return true;
    }
    return false;
  };
  for (std::size_t s = 0; s < slots.size(); ++s) {
    const std::size_t node = s / k;
    for (std::size_t tries = 0; tries < 64 && dup_in(node, slots[s], s); ++tries) {
      const std::size_t o = rng.between(0, slots.size() - 1);
      if (o / k == node || dup_in(o / k, slots[s], o) || dup_in(node, slots[o], s)) continue;
      std::swap(slots[s], slots[o]);
    }
  }
  std::vector<std::vector<std::uint32_t>> out(n);
  for (std::size_t i = 0; i < n; ++i) {
    out[i].assign(slots.begin() + static_cast<std::ptrdiff_t>(i * k),
                  slots.begin() + static_cast<std::ptrdiff_t>(i * k + k));
    std::sort(out[i].begin(), out[i].end());
    out[i].erase(std::unique(out[i].begin(), out[i].end()), out[i].end());
  }
  return out;
}

struct MappingRun::State {
  struct Pending {
    std::uint64_t since_ms = 0;
    bool check = false;  // a resolvability check (kill round, move), not traffic
  };
  struct MoveWatch {
    std::uint32_t e = 0;
    NodeIndex to = 0;
    std::uint64_t since_ms = 0;
    std::vector<std::uint64_t> seen_ms;  // per node; kNever until it caches e at `to`
  };

  State(SimCluster& cl, InvariantChecker& ch, const ScenarioConfig& c)
      : cluster(cl), checker(ch), cfg(c), m(c.map), rng(mix_seed(c.seed, 0x6d617073)) {}

  SimCluster& cluster;
  InvariantChecker& checker;
  ScenarioConfig cfg;
  MappingConfig m;
  SimRandom rng;
  MappingFigures fig;

  std::vector<std::vector<std::uint32_t>> node_vnis;                // by node
  std::vector<std::vector<NodeIndex>> vni_nodes;                    // by VNI (index 0 unused)
  std::vector<std::vector<std::uint32_t>> vni_endpoints;            // by VNI, rank order
  std::vector<NodeIndex> publisher;                                 // by endpoint (ground truth)
  std::vector<std::unordered_map<std::uint32_t, NodeIndex>> view;   // by node: e -> owner
  std::vector<std::unordered_map<std::uint32_t, Pending>> pending;  // by node: key code
  std::size_t pending_checks = 0, pending_traffic = 0;
  std::vector<std::uint64_t> resolve_ms;
  std::uint64_t check_failures = 0;
  std::optional<MoveWatch> move;
  std::map<std::size_t, std::vector<double>> zipf_cdf;  // by list size
  std::uint64_t subscriptions = 0;  // resolves sent: each subscribes its node at an owner
  std::map<std::uint32_t, std::vector<NodeIndex>> moved_from;  // endpoint -> former publishers

  std::uint32_t vni_of(std::uint32_t e) const { return 1 + e % m.vnis; }
  mesh::LookupKey key_of(std::uint32_t code) const {
    const std::uint32_t e = code / 2;
    return code % 2 == 1 ? mesh::LookupKey::of_ip(vni_of(e), ip_of(e))
                         : mesh::LookupKey::of_mac(vni_of(e), mac_of(e));
  }
  std::optional<std::uint32_t> endpoint_of(std::uint32_t vni, const MacAddr& mac) const {
    if (mac[0] != 0x02 || mac[1] != 0x00) return std::nullopt;
    const std::uint32_t e = (std::uint32_t{mac[2]} << 24) | (std::uint32_t{mac[3]} << 16) |
                            (std::uint32_t{mac[4]} << 8) | mac[5];
    if (e >= m.endpoints || vni_of(e) != vni) return std::nullopt;
    return e;
  }
  std::optional<std::uint32_t> code_of(const mesh::LookupKey& k) const {
    if (!k.is_ip()) {
      auto e = endpoint_of(k.vni, k.mac);
      return e ? std::optional<std::uint32_t>(*e * 2) : std::nullopt;
    }
    if (k.ip.family != 4) return std::nullopt;
    const std::uint32_t a = (std::uint32_t{k.ip.bytes[0]} << 24) |
                            (std::uint32_t{k.ip.bytes[1]} << 16) |
                            (std::uint32_t{k.ip.bytes[2]} << 8) | k.ip.bytes[3];
    if (a < kIpBase || a - kIpBase >= m.endpoints || vni_of(a - kIpBase) != k.vni) {
      return std::nullopt;
    }
    return (a - kIpBase) * 2 + 1;
  }

  // MESHD_SIM_TRACE=1: why a key or a move went wrong, on stderr.
  bool trace = std::getenv("MESHD_SIM_TRACE") != nullptr;

  std::string describe(NodeIndex asker, std::uint32_t code) {
    const mesh::LookupKey k = key_of(code);
    std::string s = "key " + mesh::lookup_key_str(k) + " (endpoint " + std::to_string(code / 2) +
                    ", publisher " + std::to_string(publisher[code / 2]) +
                    (cluster.up(publisher[code / 2]) ? "" : " down") + ") asked by " +
                    std::to_string(asker) + (cluster.core(asker).holds(k) ? " (holds it)" : "") +
                    "; its owners:";
    for (const NodeId& id : cluster.core(asker).owners_of(k)) {
      auto o = cluster.index_of(id);
      s += " " + std::to_string(*o) +
           (!cluster.up(*o)             ? "(down)"
            : cluster.core(*o).holds(k) ? "(holds)"
                                        : "(-)");
    }
    std::string holders;
    for (NodeIndex i = 0; i < cfg.nodes; ++i) {
      if (cluster.up(i) && cluster.core(i).holds(k)) holders += " " + std::to_string(i);
    }
    return s + "; live holders:" + holders;
  }

  void finish_pending(NodeIndex n, std::uint32_t code, std::uint64_t now, bool answered) {
    auto it = pending[n].find(code);
    if (it == pending[n].end()) return;
    if (it->second.check) {
      --pending_checks;
      if (!answered) ++check_failures;
      if (!answered && trace) {
        std::fprintf(stderr, "check unresolved: %s\n", describe(n, code).c_str());
      }
    } else {
      --pending_traffic;
      if (answered) {
        ++fig.resolved;
        resolve_ms.push_back(now - it->second.since_ms);
      } else {
        ++fig.unresolved;
      }
    }
    pending[n].erase(it);
  }

  void on_event(std::uint64_t now, NodeIndex obs, const mesh::MeshEvent& ev) {
    using K = mesh::MeshEvent::Kind;
    switch (ev.kind) {
      case K::mapping_upsert: {
        if (!ev.mapping) return;
        auto e = endpoint_of(ev.mapping->vni, ev.mapping->mac);
        auto owner = cluster.index_of(ev.mapping->owner);
        if (!e || !owner) {
          checker.expect(false, "node " + std::to_string(obs) + ": upsert of an unknown mapping");
          return;
        }
        view[obs][*e] = *owner;
        finish_pending(obs, *e * 2, now, true);
        finish_pending(obs, *e * 2 + 1, now, true);
        if (move && move->e == *e && *owner == move->to && move->seen_ms[obs] == kNever) {
          move->seen_ms[obs] = now - move->since_ms;
        }
        return;
      }
      case K::mapping_removed: {
        if (!ev.mapping) return;
        if (auto e = endpoint_of(ev.mapping->vni, ev.mapping->mac)) view[obs].erase(*e);
        return;
      }
      case K::mapping_unresolved: {
        if (!ev.key) return;
        if (auto code = code_of(*ev.key)) finish_pending(obs, *code, now, false);
        return;
      }
      case K::mapping_conflict:
        if (ev.reason == "moved") ++fig.conflicts_moved;
        if (ev.reason == "duplicate") ++fig.conflicts_duplicate;
        return;
      default:
        return;
    }
  }

  // ---------------------------------------------------------------- set-up

  void place() {
    const std::size_t n = cfg.nodes;
    node_vnis = mapping_node_vnis(cfg);
    vni_nodes.assign(m.vnis + 1, {});
    for (NodeIndex i = 0; i < n; ++i) {
      for (std::uint32_t v : node_vnis[i]) vni_nodes[v].push_back(i);
    }
    vni_endpoints.assign(m.vnis + 1, {});
    publisher.resize(m.endpoints);
    for (std::uint32_t e = 0; e < m.endpoints; ++e) {
      const auto& nodes = vni_nodes[vni_of(e)];
      vni_endpoints[vni_of(e)].push_back(e);
      publisher[e] = nodes[rng.between(0, nodes.size() - 1)];
    }
    view.assign(n, {});
    pending.assign(n, {});
    double k = 0, per_vni = 0;
    for (const auto& v : node_vnis) k += static_cast<double>(v.size());
    for (std::uint32_t v = 1; v <= m.vnis; ++v) per_vni += static_cast<double>(vni_nodes[v].size());
    fig.vnis_per_node = k / static_cast<double>(n);
    fig.nodes_per_vni = per_vni / m.vnis;
  }

  // Every key of endpoint e is held by the R owners its publisher computes, all up.
  bool replicated(std::uint32_t code) {
    const NodeIndex pub = publisher[code / 2];
    if (!cluster.up(pub)) return true;  // gone with its node: not ours to count
    const mesh::LookupKey k = key_of(code);
    const std::vector<NodeId> owners = cluster.core(pub).owners_of(k);
    if (owners.size() < fig.replicas) return false;
    for (const NodeId& id : owners) {
      auto o = cluster.index_of(id);
      if (!o || !cluster.up(*o) || !cluster.core(*o).holds(k)) return false;
    }
    return true;
  }

  // Runs until every key in `codes` is replicated (checked incrementally); the time
  // taken or nullopt. `codes` keeps those that never were.
  std::optional<std::uint64_t> until_replicated(std::vector<std::uint32_t>& codes,
                                                std::uint64_t limit_ms) {
    return cluster.run_until(
        [&] {
          std::erase_if(codes, [&](std::uint32_t c) { return replicated(c); });
          return codes.empty();
        },
        limit_ms, 100);
  }

  void publish() {
    const std::uint64_t t0 = cluster.now_ms();
    std::vector<std::vector<std::uint32_t>> mine(cfg.nodes);
    for (std::uint32_t e = 0; e < m.endpoints; ++e) mine[publisher[e]].push_back(e);
    for (NodeIndex i = 0; i < cfg.nodes; ++i) {
      cluster.run_to(t0 + m.publish_spread_ms * i / cfg.nodes);
      cluster.act(i, [&](mesh::MeshCore& c, std::uint64_t now) {
        for (std::uint32_t e : mine[i]) {
          Status st = c.publish_endpoint(now, vni_of(e), mac_of(e), {ip_of(e)});
          checker.expect(st.ok(), "publish_endpoint failed on node " + std::to_string(i));
        }
      });
    }
    std::vector<std::uint32_t> codes(2 * m.endpoints);
    for (std::uint32_t c = 0; c < codes.size(); ++c) codes[c] = c;
    auto t = until_replicated(codes, cfg.measure_limit_ms);
    if (t) fig.registered_ms = cluster.now_ms() - t0;
    fig.keys_underreplicated = codes.size();
    // Held right after registering: owners, plus any copies kept for keys a node does
    // not own (hand-off leftovers), which lapse after map_handoff_keep_ms.
    std::uint64_t held = 0;
    for (NodeIndex i = 0; i < cfg.nodes; ++i) held += cluster.core(i).held_count();
    fig.held_after_publish_mean = static_cast<double>(held) / static_cast<double>(cfg.nodes);
    checker.expect(codes.empty(), std::to_string(codes.size()) +
                                      " keys not held by all their owners after publishing");
  }

  // ---------------------------------------------------------------- traffic

  std::size_t zipf(std::size_t n) {
    auto& cdf = zipf_cdf[n];
    if (cdf.empty()) {
      cdf.resize(n);
      double sum = 0;
      for (std::size_t r = 0; r < n; ++r) {
        sum += 1.0 / std::pow(static_cast<double>(r + 1), m.zipf_s);
        cdf[r] = sum;
      }
      for (double& x : cdf) x /= sum;
    }
    const double u = rng.unit();
    return std::min<std::size_t>(
        static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin()), n - 1);
  }

  // A destination for node i: an endpoint of one of its VNIs, by popularity, not its own.
  std::optional<std::uint32_t> destination(NodeIndex i) {
    const auto& vnis = node_vnis[i];
    if (vnis.empty()) return std::nullopt;
    const auto& eps = vni_endpoints[vnis[rng.between(0, vnis.size() - 1)]];
    if (eps.empty()) return std::nullopt;
    for (int tries = 0; tries < 8; ++tries) {
      const std::uint32_t e = eps[zipf(eps.size())];
      if (publisher[e] != i && cluster.up(publisher[e])) return e;
    }
    return std::nullopt;
  }

  // resolve() at node i. The answer comes as an event (at once if the node holds the
  // key); "cached" with no event means the core thinks it has an answer the node's
  // forwarding table never got, "negative" that it refused to ask: both count as not
  // answered (a core that said "negative" had already reported mapping_unresolved).
  void start_resolve(NodeIndex i, std::uint32_t code, bool check) {
    pending[i][code] = Pending{cluster.now_ms(), check};
    ++(check ? pending_checks : pending_traffic);
    ++subscriptions;
    mesh::MeshCore::Lookup r = mesh::MeshCore::Lookup::requested;
    cluster.act(i, [&](mesh::MeshCore& c, std::uint64_t now) { r = c.resolve(now, key_of(code)); });
    if (r != mesh::MeshCore::Lookup::requested && pending[i].count(code) != 0) {
      ++fig.resolve_no_answer;
      if (trace) {
        std::fprintf(stderr, "resolve() said %d with no mapping event: %s\n", static_cast<int>(r),
                     describe(i, code).c_str());
      }
      finish_pending(i, code, cluster.now_ms(), false);
    }
  }

  void lookup(NodeIndex i) {
    auto e = destination(i);
    if (!e) return;
    const std::uint32_t code = *e * 2 + (rng.chance(m.ip_key_share) ? 1 : 0);
    ++fig.lookups;
    if (view[i].count(*e) != 0) {
      ++fig.hits;
      cluster.core(i).touch(cluster.now_ms(), vni_of(*e), mac_of(*e));
      return;
    }
    ++fig.misses;
    if (pending[i].count(code) != 0) return;  // frames wait for the answer in flight
    ++fig.resolves;
    start_resolve(i, code, false);
  }

  void traffic() {
    const std::uint64_t t0 = cluster.now_ms();
    const MessageCounts before = cluster.message_counts();
    const double mean_gap_ms = static_cast<double>(m.traffic_ms) /
                               static_cast<double>(std::max<std::size_t>(1, m.lookups_per_node));
    auto gap = [&] { return -std::log(1.0 - rng.unit()) * mean_gap_ms; };
    std::vector<double> next(cfg.nodes);
    for (double& t : next) t = static_cast<double>(t0) + gap();
    const std::uint64_t end = t0 + m.traffic_ms;
    for (std::uint64_t t = t0 + kTrafficTickMs; t <= end; t += kTrafficTickMs) {
      cluster.run_to(t);
      for (NodeIndex i = 0; i < cfg.nodes; ++i) {
        while (next[i] <= static_cast<double>(t)) {
          if (cluster.up(i) && m.lookups_per_node > 0) lookup(i);
          next[i] += gap();
        }
      }
    }
    cluster.run_to(end);
    const MessageCounts after = cluster.message_counts();
    const double secs = static_cast<double>(std::max<std::uint64_t>(1, end - t0)) / 1000.0;
    const double per = 1.0 / static_cast<double>(cfg.nodes) / secs;
    for (std::size_t t = 0; t < kMsgTypesMax; ++t) {
      const double b = static_cast<double>(after[t].bytes - before[t].bytes) * per;
      const double p = static_cast<double>(after[t].packets - before[t].packets) * per;
      fig.all_bytes_per_node_s += b;
      fig.all_packets_per_node_s += p;
      if (t >= kMapTypeFirst && t < kMapTypeFirst + kMapTypes) {
        fig.map_bytes_by_type[t - kMapTypeFirst] = b;
        fig.map_packets_by_type[t - kMapTypeFirst] = p;
        fig.map_bytes_per_node_s += b;
        fig.map_packets_per_node_s += p;
      }
    }
    // Answers still in flight.
    cluster.run_until([&] { return pending_traffic == 0; }, kDrainLimitMs, 10);
    fig.unanswered = pending_traffic;
    fig.hit_ratio =
        fig.lookups == 0 ? 0.0 : static_cast<double>(fig.hits) / static_cast<double>(fig.lookups);
    fig.resolve_time = quantiles(resolve_ms);
    checker.expect(fig.unresolved == 0 && fig.unanswered == 0,
                   std::to_string(fig.unresolved) + " lookups unresolved and " +
                       std::to_string(fig.unanswered) + " unanswered after the traffic phase");
  }

  // Entry counts times what each entry costs in MeshCore's tables (core_impl.hpp, read
  // by hand: the simulator cannot see sizeof of internal types). Tree node overhead 32
  // bytes; heap blocks rounded up to 16 with 16 of malloc overhead.
  void memory() {
    constexpr double kTreeNode = 32, kHeapBlock = 16;
    const double mapping = sizeof(mesh::EndpointMapping) + kHeapBlock + 32;  // + 1 IP on the heap
    const double owner_set = mesh::kMapReplicasMax * sizeof(NodeId) + 16;
    const double sub = sizeof(std::pair<NodeId, std::uint64_t>);
    // held_: key, winning claim, updated, owner set, orphan time, subscriber vector.
    const double held = kTreeNode + sizeof(mesh::LookupKey) + mapping + 8 + owner_set + 8 + 24;
    // mappings_ (cached): key (12), mapping, 3 times, flags; cache_ips_: (vni, ip) -> mac.
    const double cached = kTreeNode + 12 + mapping + 48 + kTreeNode + 4 + sizeof(IpAddr) + 6;
    // own: mappings_ entry + own_seqs_ + own_regs_ for its 2 keys.
    const double own =
        cached + kTreeNode + 12 + 8 + 2 * (kTreeNode + sizeof(mesh::LookupKey) + owner_set + 6);
    std::uint64_t held_sum = 0, cached_sum = 0, own_sum = 0, up = 0;
    std::vector<std::uint64_t> own_count(cfg.nodes, 0);
    for (std::uint32_t e = 0; e < m.endpoints; ++e) ++own_count[publisher[e]];
    for (NodeIndex i = 0; i < cfg.nodes; ++i) {
      if (!cluster.up(i)) continue;
      ++up;
      const std::uint64_t h = cluster.core(i).held_count(), c = view[i].size();
      held_sum += h;
      cached_sum += c;
      own_sum += own_count[i];
      fig.held_max = std::max(fig.held_max, h);
      fig.cached_max = std::max(fig.cached_max, c);
    }
    const double n = static_cast<double>(std::max<std::uint64_t>(1, up));
    fig.held_mean = static_cast<double>(held_sum) / n;
    fig.cached_mean = static_cast<double>(cached_sum) / n;
    fig.own_mean = static_cast<double>(own_sum) / n;
    // Subscriptions: at most one per resolve sent, at the owner that answered.
    const double subs = static_cast<double>(subscriptions) / n * (sub + 8);
    fig.est_bytes_per_node =
        fig.held_mean * held + fig.cached_mean * cached + fig.own_mean * own + subs;
  }

  // Checks still unanswered count as failures and are forgotten.
  void abandon_checks() {
    check_failures += pending_checks;
    for (NodeIndex i = 0; i < cfg.nodes; ++i) {
      if (trace && cluster.up(i)) {
        for (const auto& [code, p] : pending[i]) {
          if (p.check) std::fprintf(stderr, "check unanswered: %s\n", describe(i, code).c_str());
        }
      }
      std::erase_if(pending[i], [](const auto& kv) { return kv.second.check; });
    }
    pending_checks = 0;
  }

  // ---------------------------------------------------------------- moves

  void moves() {
    std::vector<std::uint64_t> all, last;
    for (std::size_t mv = 0; mv < m.moves; ++mv) {
      // A popular endpoint (Zipf rank) with correspondents, and another node of its VNI.
      std::optional<std::uint32_t> pick;
      NodeIndex to = 0;
      std::vector<NodeIndex> corr;
      for (int tries = 0; tries < 64 && !pick; ++tries) {
        const std::uint32_t v = static_cast<std::uint32_t>(rng.between(1, m.vnis));
        const auto& eps = vni_endpoints[v];
        const auto& nodes = vni_nodes[v];
        if (eps.empty() || nodes.size() < 2) continue;
        const std::uint32_t e = eps[zipf(eps.size())];
        const NodeIndex from = publisher[e];
        to = nodes[rng.between(0, nodes.size() - 1)];
        if (to == from || !cluster.up(from) || !cluster.up(to)) continue;
        corr.clear();
        for (NodeIndex i = 0; i < cfg.nodes; ++i) {
          if (i == from || i == to || !cluster.up(i)) continue;
          auto it = view[i].find(e);
          if (it != view[i].end() && it->second == from) corr.push_back(i);
        }
        if (!corr.empty() || tries >= 48) pick = e;
      }
      if (!pick) continue;
      const std::uint32_t e = *pick;
      const NodeIndex from = publisher[e];
      move = MoveWatch{e, to, cluster.now_ms(), std::vector<std::uint64_t>(cfg.nodes, kNever)};
      cluster.act(from, [&](mesh::MeshCore& c, std::uint64_t now) {
        checker.expect(c.withdraw_endpoint(now, vni_of(e), mac_of(e)).ok(), "withdraw failed");
      });
      cluster.act(to, [&](mesh::MeshCore& c, std::uint64_t now) {
        checker.expect(c.publish_endpoint(now, vni_of(e), mac_of(e), {ip_of(e)}).ok(),
                       "publish (move) failed");
      });
      publisher[e] = to;
      cluster.run_until(
          [&] {
            return std::all_of(corr.begin(), corr.end(),
                               [&](NodeIndex i) { return move->seen_ms[i] != kNever; });
          },
          m.move_limit_ms, 5);
      std::uint64_t worst = 0;
      for (NodeIndex i : corr) {
        const std::uint64_t t = move->seen_ms[i];
        all.push_back(t);
        worst = std::max(worst, t);
        if (t == kNever) {
          ++fig.move_stale;
          if (trace) {
            auto it = view[i].find(e);
            std::fprintf(stderr, "move stale at %u (caches owner %s): %s / %s\n", i,
                         it == view[i].end() ? "none" : std::to_string(it->second).c_str(),
                         describe(i, e * 2).c_str(), describe(i, e * 2 + 1).c_str());
          }
          checker.expect(false, "move of endpoint " + std::to_string(e) + " (node " +
                                    std::to_string(from) + " -> " + std::to_string(to) +
                                    ") not seen by correspondent " + std::to_string(i) +
                                    " within " + std::to_string(m.move_limit_ms) + " ms");
        }
      }
      if (!corr.empty()) last.push_back(worst);
      ++fig.moves;
      fig.move_correspondents += corr.size();
      move.reset();
      // The node it left has tenants too: they must find it at its new place.
      const std::uint64_t failures_before = check_failures;
      for (std::uint32_t code : {e * 2, e * 2 + 1}) {
        if (view[from].count(e) != 0 || pending[from].count(code) != 0) continue;
        ++fig.move_old_resolves;
        start_resolve(from, code, true);
        cluster.run_until([&] { return pending_checks == 0; }, m.move_limit_ms, 5);
        abandon_checks();
      }
      const std::uint64_t failed = check_failures - failures_before;
      fig.move_old_failures += failed;
      checker.expect(failed == 0, "node " + std::to_string(from) + " cannot resolve endpoint " +
                                      std::to_string(e) + " after it moved away to node " +
                                      std::to_string(to));
      moved_from[e].push_back(from);
      cluster.run_to(cluster.now_ms() + 1'000);
    }
    fig.move_seen = quantiles(all);
    fig.move_all_seen = quantiles(last);
  }

  // ---------------------------------------------------------------- owner kills

  void kills() {
    const std::size_t kill = fig.replicas - 1;
    if (kill == 0) return;
    std::vector<std::uint64_t> detect, rerep;
    for (std::size_t round = 0; round < m.kill_rounds; ++round) {
      // The target: a random live endpoint's MAC key; its R-1 best owners other than
      // the publisher die.
      std::optional<std::uint32_t> target;
      std::vector<NodeIndex> victims;
      for (int tries = 0; tries < 64 && !target; ++tries) {
        const auto e = static_cast<std::uint32_t>(rng.between(0, m.endpoints - 1));
        const NodeIndex pub = publisher[e];
        if (!cluster.up(pub)) continue;
        victims.clear();
        for (const NodeId& id : cluster.core(pub).owners_of(key_of(e * 2))) {
          auto o = cluster.index_of(id);
          if (o && *o != pub && cluster.up(*o) && victims.size() < kill) victims.push_back(*o);
        }
        if (victims.size() == kill) target = e;
      }
      if (!target) break;
      // Keys a victim holds whose publisher lives on: they must survive.
      std::vector<std::uint32_t> affected;
      for (std::uint32_t e = 0; e < m.endpoints; ++e) {
        const NodeIndex pub = publisher[e];
        if (!cluster.up(pub) || std::find(victims.begin(), victims.end(), pub) != victims.end()) {
          continue;
        }
        for (std::uint32_t code : {e * 2, e * 2 + 1}) {
          const mesh::LookupKey k = key_of(code);
          if (std::any_of(victims.begin(), victims.end(),
                          [&](NodeIndex v) { return cluster.core(v).holds(k); })) {
            affected.push_back(code);
          }
        }
      }
      // Their owners before the kill, to count keys no survivor holds ("at risk").
      std::vector<std::vector<NodeIndex>> before(affected.size());
      for (std::size_t a = 0; a < affected.size(); ++a) {
        for (const NodeId& id :
             cluster.core(publisher[affected[a] / 2]).owners_of(key_of(affected[a]))) {
          if (auto o = cluster.index_of(id)) before[a].push_back(*o);
        }
      }
      for (NodeIndex v : victims) cluster.crash(v);
      checker.note_fault(cluster.now_ms());
      const std::uint64_t t0 = cluster.now_ms();
      fig.killed += victims.size();
      fig.keys_affected += affected.size();
      for (std::size_t a = 0; a < affected.size(); ++a) {
        const mesh::LookupKey k = key_of(affected[a]);
        if (std::none_of(before[a].begin(), before[a].end(),
                         [&](NodeIndex o) { return cluster.up(o) && cluster.core(o).holds(k); })) {
          ++fig.keys_at_risk;
        }
      }
      // Until both: every live node has the victims failed, and every affected key is
      // held by its R owners (which can come first: only the owners need to know).
      std::optional<std::uint64_t> known, done;
      std::vector<std::uint32_t> left = affected;
      cluster.run_until(
          [&] {
            if (!known && std::all_of(victims.begin(), victims.end(), [&](NodeIndex v) {
                  return cluster.all_see(v, Seen::dead);
                })) {
              known = cluster.now_ms() - t0;
            }
            if (!done) {
              std::erase_if(left, [&](std::uint32_t c) { return replicated(c); });
              if (left.empty()) done = cluster.now_ms() - t0;
            }
            return known && done;
          },
          cfg.measure_limit_ms, 100);
      detect.push_back(known.value_or(kNever));
      rerep.push_back(done.value_or(kNever));
      // Lost: no live node holds it at all.
      for (std::uint32_t code : left) {
        if (trace) {
          std::fprintf(stderr, "not re-replicated: %s; other key: %s\n",
                       describe(publisher[code / 2], code).c_str(),
                       describe(publisher[code / 2], code ^ 1).c_str());
        }
        const mesh::LookupKey k = key_of(code);
        bool held = false;
        for (NodeIndex i = 0; i < cfg.nodes && !held; ++i) {
          held = cluster.up(i) && cluster.core(i).holds(k);
        }
        if (!held) ++fig.keys_lost;
      }
      checker.expect(left.empty(), std::to_string(left.size()) +
                                       " keys not re-replicated to R live owners "
                                       "after a kill round");
      // Resolvable: spread over the affected keys, a live node of the VNI that does not
      // have it cached asks for it.
      const std::size_t checks = std::min(m.resolve_checks, affected.size());
      const std::uint64_t failures_before = check_failures;
      for (std::size_t c = 0; c < checks; ++c) {
        const std::uint32_t code = affected[c * affected.size() / checks];
        const std::uint32_t e = code / 2;
        const auto& nodes = vni_nodes[vni_of(e)];
        for (int tries = 0; tries < 16; ++tries) {
          const NodeIndex r = nodes[rng.between(0, nodes.size() - 1)];
          // Not a node the endpoint moved away from (moves() checks those).
          auto mf = moved_from.find(e);
          const bool former =
              mf != moved_from.end() &&
              std::find(mf->second.begin(), mf->second.end(), r) != mf->second.end();
          if (r == publisher[e] || former || !cluster.up(r) || view[r].count(e) != 0 ||
              pending[r].count(code) != 0) {
            continue;
          }
          ++fig.resolve_checks;
          start_resolve(r, code, true);
          break;
        }
      }
      cluster.run_until([&] { return pending_checks == 0; }, kCheckLimitMs, 10);
      abandon_checks();
      const std::uint64_t failed = check_failures - failures_before;
      fig.keys_lost += failed;
      fig.resolve_check_failures += failed;
      checker.expect(failed == 0,
                     std::to_string(failed) + " affected keys not resolvable after a kill round");
      ++fig.kill_rounds;
      cluster.run_to(cluster.now_ms() + 2'000);
    }
    fig.detect = quantiles(detect);
    fig.rereplicate = quantiles(rerep);
  }

  MappingFigures run() {
    fig.endpoints = m.endpoints;
    fig.keys = 2 * m.endpoints;
    fig.vnis = m.vnis;
    fig.replicas = std::clamp<std::size_t>(cfg.mesh.map_replicas, 1, mesh::kMapReplicasMax);
    checker.expect(m.endpoints <= kEndpointsMax && m.vnis >= 1,
                   "mapping: endpoints or vnis out of range");
    if (m.endpoints > kEndpointsMax || m.vnis == 0) return fig;
    place();
    const std::uint64_t heap0 = cfg.heap_bytes ? cfg.heap_bytes() : 0;
    publish();
    traffic();
    memory();
    if (cfg.heap_bytes) {
      const std::uint64_t heap1 = cfg.heap_bytes();
      fig.heap_bytes_per_node =
          static_cast<double>(heap1 > heap0 ? heap1 - heap0 : 0) / static_cast<double>(cfg.nodes);
    }
    moves();
    kills();
    const mesh::MeshCounters c = cluster.counters_total();
    fig.map_timeouts = c.map_timeouts;
    fig.map_negative = c.map_negative;
    fig.map_handoffs = c.map_handoffs;
    return fig;
  }
};

MappingRun::MappingRun(SimCluster& cluster, InvariantChecker& checker, const ScenarioConfig& cfg)
    : s_(std::make_unique<State>(cluster, checker, cfg)) {}
MappingRun::~MappingRun() = default;

void MappingRun::on_event(std::uint64_t now_ms, NodeIndex observer, const mesh::MeshEvent& ev) {
  s_->on_event(now_ms, observer, ev);
}

MappingFigures MappingRun::run() { return s_->run(); }

}  // namespace meshd::sim
