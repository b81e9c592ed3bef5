// Scenario drivers shared by the simulator tests and build/mesh-sim. Each forms a mesh
// (nodes start staggered and join through the seed nodes), injects its fault, measures,
// and returns figures plus any invariant violations. Every phase has a simulated-time
// limit, so every run ends.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mesh/mesh_core.hpp"
#include "sim/lib/sim_network.hpp"

namespace meshd::sim {

enum class Scenario { join, crash, partition, churn, steady, mapping };
std::optional<Scenario> parse_scenario(std::string_view s);
const char* scenario_name(Scenario s);

// The mapping scenario (issue 4, mapping_scenario.cpp): E endpoints over V VNIs on a
// formed mesh, tenant traffic that resolves them, moves, and owners killed R-1 at once.
struct MappingConfig {
  std::size_t endpoints = 100'000;  // E: one MAC and one IP each
  std::uint32_t vnis = 100;         // V: endpoint e is in VNI 1 + e % V
  // VNIs each node serves (its tenants' endpoints are spread over them). 0 = auto:
  // max(3, ceil(2 V / N)), so every VNI has about 2 nodes or more.
  std::size_t vnis_per_node = 0;
  // Traffic: each node starts lookups at Poisson times, lookups_per_node over traffic_ms
  // on average, to endpoints of its VNIs with Zipf(zipf_s) popularity (rank 1 = hot),
  // by IP key with probability ip_key_share, else by MAC key.
  std::size_t lookups_per_node = 1'000;
  std::uint64_t traffic_ms = 60'000;
  double zipf_s = 1.0;
  double ip_key_share = 0.5;
  std::size_t moves = 10;        // endpoints withdrawn on A and published on B, one by one
  std::size_t kill_rounds = 3;   // rounds of R-1 owners of one key killed at once
  std::size_t resolve_checks = 200;  // per kill round: affected keys resolved by a live node
  std::uint64_t publish_spread_ms = 2'000;  // nodes publish their endpoints over this
  std::uint64_t move_limit_ms = 5'000;      // a move not seen by then counts as stale
};

struct ScenarioConfig {
  Scenario scenario = Scenario::join;
  std::size_t nodes = 8;  // >= 2 (crash needs one node besides the seeds)
  std::uint64_t seed = 1;
  LinkModel link{};  // loss, delay, duplication, reordering of every link
  bool use_storage = true;
  bool lose_unsynced = false;  // a crash loses storage writes since the last checkpoint
  bool asymmetric = false;     // partition: only one direction is cut
  std::optional<std::uint64_t> false_death_budget;  // default: 0 without loss, else nodes
  std::uint64_t form_spread_ms = 2'000;             // node starts spread over this
  std::uint64_t form_limit_ms = 600'000;            // formation must converge within this
  std::uint64_t settle_ms = 2'000;                  // quiet time after formation
  std::uint64_t measure_limit_ms = 120'000;
  std::uint64_t partition_ms = 15'000;
  std::size_t crashes = 1;  // crash: victims killed at the same moment (not the seeds)
  std::uint64_t churn_ms = 30'000;
  std::uint64_t churn_interval_ms = 1'000;
  std::uint64_t churn_down_ms = 12'000;  // a crashed node stays down this long
  std::uint64_t steady_ms = 600'000;     // steady: how long the formed mesh runs (loss applies)
  // Start from a mesh that has been running (every node restores all members) instead
  // of forming it by joins: the only way to reach 10,000 nodes in minutes. The join
  // scenario's newcomer still joins for real.
  bool preformed = false;
  mesh::MeshConfig mesh{};
  MappingConfig map{};
  // Optional: bytes the process has allocated now (mesh-sim passes mallinfo2). The
  // library never reads process state itself; with it the mapping scenario reports the
  // heap its phase added per node.
  std::function<std::uint64_t()> heap_bytes;
};

struct Quantiles {  // of a set of times; nullopt when empty or not all happened
  std::optional<std::uint64_t> p50_ms, p99_ms, max_ms;
  std::size_t count = 0;
};

struct MappingFigures {
  std::uint64_t endpoints = 0, keys = 0, vnis = 0, replicas = 0;
  double vnis_per_node = 0, nodes_per_vni = 0;
  // Publishing: time from the first publish until every key is held by its R owners.
  std::optional<std::uint64_t> registered_ms;
  std::uint64_t keys_underreplicated = 0;  // not held by all R owners at the end of that wait
  double held_after_publish_mean = 0;      // keys held per node then (R * keys / N expected)
  // Traffic phase: lookups (packets to a destination), hits (mapping cached: touch()),
  // misses (resolve() called, or a resolve for the key already in flight).
  std::uint64_t lookups = 0, hits = 0, misses = 0, resolves = 0;
  std::uint64_t resolved = 0, unresolved = 0, unanswered = 0;  // of the resolves
  // resolve() calls (any phase) that returned at once (cached, negative, busy) without
  // the mapping event the caller waits for.
  std::uint64_t resolve_no_answer = 0;
  double hit_ratio = 0;
  Quantiles resolve_time;  // resolve() to mapping_upsert at that node
  // Map messages (register, request, reply, notify) per node per second, traffic phase.
  double map_bytes_per_node_s = 0, map_packets_per_node_s = 0;
  double all_bytes_per_node_s = 0, all_packets_per_node_s = 0;  // every control message
  std::array<double, 4> map_bytes_by_type{};    // register, request, reply, notify
  std::array<double, 4> map_packets_by_type{};
  // Memory at the end of the traffic phase, per node.
  double held_mean = 0, cached_mean = 0, own_mean = 0;
  std::uint64_t held_max = 0, cached_max = 0;
  double est_bytes_per_node = 0;  // estimate from entry counts (see mapping_scenario.cpp)
  std::optional<double> heap_bytes_per_node;  // measured heap growth, publish to traffic end
  // Moves: per correspondent (a node that had it cached), time until it caches B.
  std::uint64_t moves = 0, move_correspondents = 0, move_stale = 0;
  // After each move the node it left resolves both keys (its other tenants talk to it).
  std::uint64_t move_old_resolves = 0, move_old_failures = 0;
  Quantiles move_seen;      // over all correspondents of all moves
  Quantiles move_all_seen;  // per move: when its last correspondent saw B
  // Owners killed R-1 at a time.
  std::uint64_t kill_rounds = 0, killed = 0, keys_affected = 0, keys_at_risk = 0;
  std::uint64_t keys_lost = 0, resolve_checks = 0, resolve_check_failures = 0;
  Quantiles detect;       // per round: until every live node has the victims failed
  Quantiles rereplicate;  // per round: until every affected key is held by R live owners
  std::uint64_t conflicts_moved = 0, conflicts_duplicate = 0;
  std::uint64_t map_timeouts = 0, map_negative = 0, map_handoffs = 0;
};

struct Figures {
  bool ok = true;
  std::vector<std::string> violations;
  std::optional<std::uint64_t> form_ms;  // until every live node sees every other alive
  // join: time until the joining node is known (alive) by 50/99/99.9/100 % of the others
  std::optional<std::uint64_t> join_p50_ms, join_p99_ms, join_p999_ms, join_p100_ms;
  // crash: time until the crashed node is seen failed by 50 % and by all live nodes
  // (with several victims: p50 is the first victim's, "all" is all of them by all)
  std::optional<std::uint64_t> crash_p50_ms, crash_all_ms;
  // partition: time from heal until converged again
  std::optional<std::uint64_t> heal_converge_ms;
  // churn: crashes and restarts done; time from the last restart until converged
  std::uint64_t churn_crashes = 0, churn_restarts = 0;
  std::optional<std::uint64_t> churn_converge_ms;
  std::uint64_t suspicions = 0, refutations = 0;  // refutation: a live node was suspected
  std::uint64_t false_deaths = 0, expected_deaths = 0;  // member_failed events (per observer)
  std::uint64_t false_dead_nodes = 0;  // distinct healthy nodes declared dead by anyone
  std::uint64_t bad_signature_drops = 0, queue_full_drops = 0, table_full_drops = 0;
  // Traffic offered to the network (before loss) per node per simulated second.
  double form_bytes_per_node_s = 0, form_packets_per_node_s = 0;
  double bytes_per_node_s = 0, packets_per_node_s = 0;  // after formation
  std::uint64_t sim_ms = 0, events = 0;
  std::uint64_t digest = 0;  // hash of every event (time, observer, subject, kind): replay check
  std::optional<MappingFigures> mapping;  // mapping scenario only
};

Figures run_scenario(const ScenarioConfig& cfg);

}  // namespace meshd::sim
