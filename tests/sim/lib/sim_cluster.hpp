// N real MeshCores in one process on a virtual clock, talking through SimNetwork.
// One event queue (deliveries and per-node timers) ordered by (time, sequence), so a
// seed replays exactly: nothing depends on hash order, addresses or the wall clock.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <queue>
#include <unordered_map>
#include <vector>

#include "crypto/cert.hpp"
#include "crypto/keys.hpp"
#include "mesh/mesh_core.hpp"
#include "mesh/record_cache.hpp"
#include "sim/lib/sim_network.hpp"
#include "sim/lib/sim_random.hpp"
#include "sim/lib/sim_storage.hpp"

namespace meshd::sim {

using crypto::NodeId;

inline constexpr std::uint64_t kSimT0Ms = 1'700'000'000'000ull;  // virtual clock start (unix ms)

struct ClusterConfig {
  std::size_t nodes = 8;
  std::uint64_t seed = 1;
  mesh::MeshConfig mesh{};  // members_max is raised to fit `nodes`
  LinkModel link{};
  bool use_storage = true;     // false: restarts come back empty (saves memory at scale)
  bool lose_unsynced = false;  // SimStorage: crash loses writes after the last checkpoint
  // With lose_unsynced: how often a node's storage is checkpointed (an fsync cadence;
  // MeshCore's Storage has no sync call, so the simulator picks the moments).
  std::uint64_t checkpoint_interval_ms = 5'000;
  std::size_t seeds = 3;  // nodes 0..seeds-1 are everyone's bootstrap contacts
  std::uint64_t events_max = 4'000'000'000ull;  // runaway bound on processed events
  // Nodes [0, preformed) start as a mesh that has been running: each one's storage
  // holds all of their signed records as alive members; the first start() of such a
  // node restores that and does not join. Others join as usual. With use_storage false
  // the shared member table is read-only (writes to it dropped), so 10,000 nodes do
  // not each store 10,000 records.
  std::size_t preformed = 0;
  // Endpoint VNIs (mapping scenario). all_vnis: the enrollment allows every VNI (else
  // only VNI 1). node_vnis[i], if given: the VNIs node i's record says it serves from
  // the start (its endpoints are published later; a preformed mesh's stored records
  // carry them, so publishing does not have to gossip 1,000 new records).
  bool all_vnis = false;
  std::vector<std::vector<std::uint32_t>> node_vnis;
};

// Control messages offered to the network by type (the msgpack [version, type] head;
// mesh/messages.hpp MsgType), before loss.
struct MessageCount {
  std::uint64_t packets = 0, bytes = 0;
};
inline constexpr std::size_t kMsgTypesMax = 32;  // MsgType values; larger ones count as 0
using MessageCounts = std::array<MessageCount, kMsgTypesMax>;

// What each observer believes about each subject, kept from the events it emitted.
enum class Seen : std::uint8_t { unknown, alive, dead };

class SimCluster {
 public:
  using Listener = std::function<void(std::uint64_t now_ms, NodeIndex observer,
                                      std::optional<NodeIndex> subject, const mesh::MeshEvent&)>;

  explicit SimCluster(ClusterConfig cfg);
  ~SimCluster();
  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  std::size_t size() const { return nodes_.size(); }
  std::uint64_t now_ms() const { return now_ms_; }
  std::uint64_t elapsed_ms() const { return now_ms_ - kSimT0Ms; }
  const ClusterConfig& config() const { return cfg_; }
  SimNetwork& network() { return net_; }
  const SimNetwork& network() const { return net_; }

  // (Re)creates node i's core from its storage, restores and joins via the seed nodes
  // (a preformed node's first start restores only: it is already a member).
  void start(NodeIndex i);
  // Drops the core; with lose_unsynced its storage forgets writes since the checkpoint.
  void crash(NodeIndex i);
  bool up(NodeIndex i) const;
  std::uint64_t up_since_ms(NodeIndex i) const;
  std::size_t up_count() const;
  mesh::MeshCore& core(NodeIndex i);  // i must be up
  SimStorage& storage(NodeIndex i);
  const NodeId& id(NodeIndex i) const;
  std::optional<NodeIndex> index_of(const NodeId& id) const;

  // Calls fn on node i's core (which must be up) at the current time, then sends what it
  // queued and re-arms its timer: how a driver feeds API calls (resolve, publish...).
  void act(NodeIndex i, const std::function<void(mesh::MeshCore&, std::uint64_t now_ms)>& fn);

  // Processes every event up to and including until_ms; the clock ends at until_ms.
  void run_to(std::uint64_t until_ms);
  // Runs until pred() holds (checked every check_ms of simulated time) or limit_ms of
  // simulated time passes. Returns the simulated time taken, or nullopt.
  std::optional<std::uint64_t> run_until(const std::function<bool()>& pred, std::uint64_t limit_ms,
                                         std::uint64_t check_ms = 50);

  Seen seen(NodeIndex observer, NodeIndex subject) const { return views_[observer][subject]; }
  // Every up node sees every other up node alive.
  bool converged() const;
  std::uint64_t pairs_not_alive() const {  // ordered pairs (a, b) where a sees b not alive
    const std::uint64_t up = up_;
    return up < 2 ? 0 : up * (up - 1) - alive_pairs_;
  }
  // Every up node other than `subject` sees it as `s`.
  bool all_see(NodeIndex subject, Seen s) const;

  void set_listener(Listener l) { listener_ = std::move(l); }
  std::uint64_t events_processed() const { return events_processed_; }
  // Sums of every live core's counters plus those of crashed incarnations.
  mesh::MeshCounters counters_total() const;
  const MessageCounts& message_counts() const { return by_type_; }

 private:
  struct Node;
  struct Event {
    std::uint64_t at_ms;
    std::uint64_t seq;  // tie-break: insertion order
    bool timer;
    NodeIndex to, from;
    std::uint32_t generation;  // timers: the incarnation of the core that armed them
    std::uint32_t payload;     // deliveries: slot in payloads_
    bool operator>(const Event& o) const {
      return at_ms != o.at_ms ? at_ms > o.at_ms : seq > o.seq;
    }
  };

  void drain(NodeIndex i);
  // views_[obs][subj] = s, keeping alive_pairs_ in step.
  void set_view(NodeIndex obs, NodeIndex subj, Seen s);
  // Node i goes up or down: pairs it takes part in start or stop counting.
  void count_node(NodeIndex i, bool up);
  void rearm(NodeIndex i);
  void push(Event e);
  std::uint32_t store_payload(Bytes b);
  void add_counters(mesh::MeshCounters& into, const mesh::MeshCounters& c) const;

  ClusterConfig cfg_;
  bool sodium_ready_;
  SimRandom key_rng_;
  crypto::SigningKey root_;
  crypto::SigningKey enroll_key_;
  crypto::EnrollmentCert enrollment_;
  // One verified-record cache for every core, as if they shared a process: each
  // record is checked once per run instead of once per node (results are the same).
  std::unique_ptr<mesh::RecordCache> records_;
  SimNetwork net_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::unordered_map<NodeId, NodeIndex, crypto::NodeIdHash> index_;  // lookups only
  std::vector<std::vector<Seen>> views_;
  // converged() in O(1): pairs (a, b), a != b, both up, a sees b alive; per observer too.
  std::uint64_t alive_pairs_ = 0;
  std::vector<std::uint32_t> alive_seen_by_;
  std::size_t up_ = 0;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> queue_;
  std::vector<Bytes> payloads_;
  std::vector<std::uint32_t> free_payloads_;
  std::uint64_t now_ms_ = kSimT0Ms;
  std::uint64_t seq_ = 0;
  std::uint64_t events_processed_ = 0;
  mesh::MeshCounters crashed_counters_{};
  MessageCounts by_type_{};
  Listener listener_;
};

}  // namespace meshd::sim
