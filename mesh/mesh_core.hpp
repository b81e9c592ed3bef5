// MeshCore: membership, liveness and endpoint-mapping dissemination for one node.
// Sans-I/O (quinn-proto style): messages and timer ticks in with `now_ms`, messages to
// send, events and the next deadline out. Messages are addressed by NodeId; the agent
// carries them inside encrypted sessions (crypto/tunnel.hpp), so `from` is always an
// authenticated node.
//
// First version (issue 2): join through bootstrap peers, full member list on join,
// node records gossiped to all, SWIM-style probing (direct + indirect) with suspicion
// so a killed node is marked failed within 10 s, endpoint mappings signed by the
// owner and pushed to nodes serving the same VNI, with periodic anti-entropy.
// Issue 3 adds Lifeguard to the failure detector: a suspicion timer that shrinks with
// independent confirmations (suspicion.hpp), local health that slows a node's own
// probing when it is the slow one (local_health.hpp), and nacks from indirect probers.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/cert.hpp"
#include "crypto/keys.hpp"
#include "crypto/random.hpp"
#include "mesh/storage.hpp"
#include "mesh/types.hpp"

namespace meshd::mesh {

class RecordCache;

inline constexpr std::size_t kIndirectProbesAuto = ~std::size_t{0};

struct MeshConfig {
  // ---- Failure detection (SWIM + Lifeguard). Defaults tuned with the simulator for
  // meshes of 3 to 10,000 nodes (bench/README.md has the runs): a crash is known by
  // every node in ~3-4 s, no healthy node is declared dead at 10 % packet loss, and
  // idle traffic stays well under 1 KB/s per node. For a WAN with round trips over
  // ~150 ms raise probe_timeout_ms (and probe_interval_ms with it).
  std::uint64_t probe_interval_ms = 500;  // one probe per interval (times LHM + 1)
  std::uint64_t probe_timeout_ms = 200;   // no ack by then: indirect probes + one direct retry
  // Helpers asked to ping the target when the direct probe got no ack. Bound: <= 16.
  // The first 3 are asked at probe_timeout_ms (with nacks, as in Lifeguard); the rest
  // only if there is still no ack halfway to the end of the period.
  // kIndirectProbesAuto (the default) = 3 + 2 * ceil(log10(N + 1)): 7 at 10 nodes, 9 at
  // 100, 11 at 1,000, 13 at 10,000. A false suspicion costs every node its gossip, which
  // grows with N; a helper costs four small datagrams, and the second wave is needed by
  // ~1 failed probe in 130 at 10 % loss (each helper path fails with p = 0.34, so each
  // one cuts false suspicions ~3x; bench/README.md). memberlist uses a fixed 3.
  std::size_t indirect_probes = kIndirectProbesAuto;
  // A probe with no ack by probe_timeout is also resent directly (same seq) while the
  // helpers try: one lost ping or ack no longer makes a suspicion.
  bool direct_retry = true;
  // Suspicion timer (Lifeguard, mesh/suspicion.hpp): min = max(suspicion_floor_ms,
  // suspicion_mult * max(1, log10(N)) * probe_interval_ms) (N = live members
  // including self), max = min * suspicion_max_timeout_mult; it starts at max and
  // shrinks to min as suspicion_confirmations other members independently suspect the
  // same node (at most N - 2 are expected). Defaults: min = 2 s up to N = 10,000,
  // max = 12 s. memberlist's LAN profile is mult 4 with a 1 s probe: min = 4 s (N <= 10)
  // to 16 s (N = 10,000), max = 6 * min. Bounds: suspicion_mult <= kSuspicionMultMax
  // (32), 0 = the fixed suspicion_timeout_ms without confirmations;
  // suspicion_max_timeout_mult in [1, kSuspicionMaxTimeoutMultMax (16)];
  // suspicion_confirmations <= kSuspicionConfirmationsMax (16).
  std::uint64_t suspicion_mult = 1;
  std::uint64_t suspicion_max_timeout_mult = 6;
  std::uint64_t suspicion_floor_ms = 2000;  // a small mesh still gives a stalled node time
  std::size_t suspicion_confirmations = 2;  // memberlist: suspicion mult - 2
  std::uint64_t suspicion_timeout_ms = 4000;  // only with suspicion_mult == 0
  // Local health multiplier: 0..lhm_max; probe interval and probe timeout are
  // multiplied by (LHM + 1). +1 per failed probe of ours (or +missing nacks when
  // nacks were expected), +1 per refutation of a suspicion about us, -1 per probe
  // acked. Bound: lhm_max <= kLocalHealthMaxBound (64); 0 turns local health off.
  std::uint32_t lhm_max = 8;
  // An indirect prober that has no ack from the target after this share of
  // probe_timeout_ms sends a nack to the requester, which counts missing nacks as
  // evidence that it is the slow one. Bound: [1, 100].
  std::uint32_t nack_timeout_pct = 80;
  std::uint64_t failed_probe_interval_ms = 5000;  // ping one failed member (notice restarts)

  // ---- Dissemination
  std::uint64_t gossip_interval_ms = 200;
  std::size_t gossip_fanout = 3;
  // With a backlog of queued updates a gossip tick may send up to this many times
  // gossip_fanout messages (1 = never more than the fanout). Bound: [1, 16].
  std::size_t gossip_burst_max = 4;
  std::size_t retransmit_mult = 4;        // gossip sends per update = mult * ceil(log10(N+1))
  std::size_t gossip_bytes_max = 1300;    // piggyback budget per message (fits one packet)
  // Members failed less than this long ago still get gossip and push-pull now and then
  // (memberlist's GossipToTheDeadTime): after a partition heals, that is how the two
  // sides find each other again. 0 = never.
  std::uint64_t gossip_to_dead_ms = 30'000;
  // Push-pull anti-entropy with one random member; after one that found differences,
  // the next comes after a tenth of this (catching up), until the digests match.
  std::uint64_t anti_entropy_interval_ms = 5000;

  // ---- Joining, tables, queues
  std::uint64_t join_retry_ms = 1000;
  std::uint64_t failed_reap_ms = 24ull * 3600 * 1000;  // forget failed members after
  std::size_t members_max = 16384;
  std::size_t mappings_max = 65536;
  // Gossip updates waiting to be sent; full: the most transmitted is dropped (push-pull
  // repairs what gossip loses). 128 measured as good as 1,024 for join, crash and loss
  // at 1,000 nodes, and better during a partition, when every node queues news of half
  // the mesh: 2.2 s heal instead of 2.9, 371 instead of 642 kB/node (bench/README.md).
  std::size_t broadcast_queue_max = 128;
  std::size_t message_bytes_max = 60000;  // a control message never exceeds this
  std::uint64_t tombstone_keep_ms = 10ull * 60 * 1000;  // removed mappings kept to beat stale copies
  std::size_t transmit_queue_max = 16384; // overflow: new message dropped, counted
  std::size_t event_queue_max = 65536;    // overflow: new event dropped, counted
  std::size_t indirect_pending_max = 256; // ping_req relays in flight; overflow: refused
  std::size_t refused_max = 4096;         // refused node ids remembered; overflow: oldest forgotten
  // Root-signed revocations are never forgotten (forgetting one would re-admit the
  // node). Overflow: a new revocation is not stored: revoke() returns "mesh.full", a
  // gossiped one is dropped and counted (drop_table_full). Only the root key holder
  // can fill this table; a mesh that needs more should rotate its root.
  std::size_t revocations_max = 65536;

  // ---- Mapping system (issue 4, mesh/mapping_system.cpp). Endpoint mappings live at
  // their key's owners: map_replicas members chosen by rendezvous hashing of the key
  // over live members (self included). A node registers its own endpoints there under
  // (VNI, MAC) and each (VNI, IP), and resolves the keys it needs with a map-request;
  // the answer is cached for map_ttl_ms and the owners notify it of changes while the
  // subscription (renewed by every request) lasts.
  std::size_t map_replicas = 3;                 // R. Bound: [1, kMapReplicasMax]
  std::uint64_t map_ttl_ms = 300'000;           // positive answers; subscriptions as long
  std::uint64_t map_negative_ttl_ms = 2'000;    // "nobody has it", cached this long
  std::uint64_t map_request_timeout_ms = 250;   // no reply: ask the next owner (R tries)
  // Own registrations are sent again this often (a lost one is repaired); owners and
  // registrants also re-send at once when the owner set of a key changes.
  std::uint64_t map_register_refresh_ms = 300'000;
  // An owner that is no longer one of a key's R owners keeps answering for it this
  // long after handing it off, while views of the membership converge.
  std::uint64_t map_handoff_keep_ms = 30'000;
  std::size_t map_held_max = 1 << 20;           // keys held as owner; overflow: refused, counted
  std::size_t map_pending_max = 4096;           // map-requests in flight; overflow: refused
  std::size_t map_subscribers_max = 256;        // per key; overflow: the oldest is dropped
};

inline constexpr std::size_t kMapReplicasMax = 8;

struct Contact {  // how to reach a node before its record is known (join tokens)
  NodeId id{};
  crypto::PublicKey dh_pub{};
  std::vector<Locator> locators;
};

struct MeshTransmit {
  NodeId to{};
  Bytes payload;  // msgpack control message
};

struct MeshEvent {
  enum class Kind {
    member_up,        // new or back alive; `member` set
    member_updated,   // record changed (locators, VNIs); `member` set
    member_failed,    // `member` set
    member_left,      // `member` set
    mapping_upsert,   // learned/changed remote mapping; `mapping` set
    mapping_removed,  // `mapping` set (tombstone)
    join_accepted,    // a bootstrap peer accepted us
    join_refused,     // `reason` says why ("token.used_up", "token.expired", ...)
    node_refused,     // a node must not be served (token over-used); `node` set
    mapping_conflict, // two owners claim (vni, mac); `mapping` is the loser
    mapping_unresolved,  // resolve() found no live claim (`key` set; negative answer or
                         // every owner silent): frames held for it may be flooded
    node_revoked,     // root-signed revocation learned (or restored); `node` set, `member`
                      // set if it was a member, reason "revoked". node == self().id():
                      // this node is revoked; the core has gone quiet, the agent stops.
  };
  Kind kind{};
  std::optional<MemberInfo> member;
  std::optional<EndpointMapping> mapping;
  NodeId node{};
  std::string reason;
  std::optional<LookupKey> key;  // mapping_unresolved
};

struct MeshCounters {
  std::uint64_t rx_messages = 0, tx_messages = 0;
  std::uint64_t drop_malformed = 0;     // codec errors
  std::uint64_t drop_bad_signature = 0; // record or mapping signature / chain failure
  std::uint64_t drop_scope = 0;         // mapping for a VNI the owner's cert does not allow
  std::uint64_t drop_stale = 0;         // older version/seq than known
  std::uint64_t drop_table_full = 0;
  std::uint64_t probes_sent = 0, probe_failures = 0, suspicions = 0;
  std::uint64_t probe_second_waves = 0;  // probes that needed the second wave of helpers
  // Added in issue 2:
  std::uint64_t drop_unserved = 0;       // mapping for a VNI this node does not serve
  std::uint64_t drop_unknown_owner = 0;  // mapping whose owner is not a live member
  std::uint64_t drop_refused = 0;        // message from a refused node
  std::uint64_t drop_queue_full = 0;     // transmit/event/broadcast/relay queue overflow
  std::uint64_t refutations = 0;         // we were suspected and bumped our incarnation
  std::uint64_t joins_refused = 0;       // join requests we refused
  // Added in issue 3:
  std::uint64_t drop_revoked = 0;        // message from, or record/mapping/join of, a revoked node
  // Added in issue 3 (Lifeguard):
  std::uint64_t nacks_sent = 0;          // we relayed a ping_req and the target stayed silent
  std::uint64_t nacks_received = 0;      // a helper nacked our probe (it, at least, hears us)
  std::uint64_t nacks_missed = 0;        // nacks expected for a failed probe but not received
  std::uint64_t suspicion_confirmations = 0;  // distinct confirmers that shortened a timer
  std::uint64_t local_health = 0;        // gauge: current local health multiplier (0..lhm_max)
  std::uint64_t local_health_max_seen = 0;  // gauge: highest LHM since start
  // Added in issue 4 (mapping system):
  std::uint64_t map_requests = 0;         // map-requests sent (retries to the next owner too)
  std::uint64_t map_replies = 0;          // positive replies received
  std::uint64_t map_negative = 0;         // negative replies received
  std::uint64_t map_timeouts = 0;         // keys no owner answered (after R tries)
  std::uint64_t map_requests_served = 0;  // map-requests we answered as an owner
  std::uint64_t map_registers_sent = 0;   // map-register messages (own, refresh, hand-off)
  std::uint64_t map_notifies_sent = 0;    // map-notify messages to subscribers and claimants
  std::uint64_t map_handoffs = 0;         // keys sent to new owners after a membership change
  std::uint64_t map_duplicates = 0;       // our claim was superseded while still attached
  std::uint64_t map_held = 0;             // gauge: keys held as an owner
  std::uint64_t map_cached = 0;           // gauge: remote mappings cached
  // Compact push-pull (states first, records on request):
  std::uint64_t records_requested = 0;        // records we asked for after a push of states
  std::uint64_t records_requests_served = 0;  // record requests we answered
};

// One endpoint as this node sees it (meshd endpoints).
struct EndpointInfo {
  EndpointMapping mapping;
  bool local = false;
  bool duplicate = false;             // local: another node claims it too (see map_duplicates)
  std::uint64_t expires_ms = 0;       // cached: when the cache entry lapses
};

class MeshCore {
 public:
  // `self` must be signed by the caller (record.sign(node_key)) or left unsigned:
  // MeshCore re-signs with node_key whenever it bumps the version.
  // `cache`: verified records shared with other cores of this process (the simulator);
  // nullptr = a cache of its own. It must be made for the same root_pub.
  MeshCore(MeshConfig cfg, crypto::SigningKey node_key, crypto::PublicKey root_pub,
           NodeRecord self, crypto::Random& rng, Storage* storage, std::uint64_t now_ms,
           RecordCache* cache = nullptr);
  ~MeshCore();
  MeshCore(const MeshCore&) = delete;
  MeshCore& operator=(const MeshCore&) = delete;

  // Loads members, mappings and own incarnation from storage (restart without token).
  void restore(std::uint64_t now_ms);
  // Join through these contacts (token bootstrap peers or restored members).
  void join(std::uint64_t now_ms, std::vector<Contact> contacts);
  // Announce departure to everyone; after this the core only drains its queue.
  void leave(std::uint64_t now_ms);

  // A control message from an authenticated node, whose verified chain is `chain`.
  void handle_message(std::uint64_t now_ms, const NodeId& from, const crypto::CertChain& chain,
                      ByteSpan payload);
  void handle_timeout(std::uint64_t now_ms);

  // Local endpoints. Errors: "mesh.scope" (VNI not allowed by our cert), "mesh.full".
  Status publish_endpoint(std::uint64_t now_ms, std::uint32_t vni, const MacAddr& mac,
                          std::vector<IpAddr> ips);
  Status withdraw_endpoint(std::uint64_t now_ms, std::uint32_t vni, const MacAddr& mac);
  void set_locators(std::uint64_t now_ms, std::vector<Locator> locators);
  // The routes this node announces (replaces the list; sorted and de-duplicated here).
  // Errors: "mesh.scope" (a VNI our cert does not allow), "mesh.full" (over
  // kRoutesPerNodeMax), "mesh.invalid" (VNI 0, prefix length over the family's).
  Status set_routes(std::uint64_t now_ms, std::vector<RouteAnnouncement> routes);

  // Mapping system. resolve(): ask the key's owners unless the answer is cached (or a
  // request is in flight). The answer arrives as mapping_upsert (the endpoint's
  // mapping, also for an IP key) or mapping_unresolved. touch(): the cached mapping
  // for (vni, mac) carried traffic; a cached mapping in use is refreshed before its
  // TTL runs out, one not used for a whole TTL lapses (mapping_removed).
  // What resolve() did: the answer is already here (cached, our own, or we hold it),
  // a request is (now) in flight, the key is negatively cached, or the request table
  // is full (map_pending_max; counted).
  enum class Lookup { cached, requested, negative, busy };
  Lookup resolve(std::uint64_t now_ms, const LookupKey& key);
  void touch(std::uint64_t now_ms, std::uint32_t vni, const MacAddr& mac);
  // This node's owners for `key` (best first), by its view of the membership.
  std::vector<NodeId> owners_of(const LookupKey& key) const;
  std::vector<EndpointInfo> endpoints() const;  // local and cached, tombstones excluded
  std::size_t held_count() const;
  bool holds(const LookupKey& key) const;  // we hold a live claim for key as an owner

  // Revokes `r.node` mesh-wide (the CLI signs `r` with the root key). Verifies, stores,
  // persists and gossips it; removes the node and its mappings here at once. Idempotent:
  // an already revoked node returns ok. Errors: "mesh.bad_revocation" (signature not by
  // the mesh root, or reason over kRevocationReasonMax), "mesh.revoke_self" (names this
  // node: revoke it from another member), "mesh.full" (revocations_max), "mesh.left".
  Status revoke(std::uint64_t now_ms, const Revocation& r);

  std::optional<MeshTransmit> poll_transmit();
  std::optional<MeshEvent> poll_event();
  // Next deadline for handle_timeout(); kNoDeadline after leave().
  std::uint64_t poll_timeout() const;
  static constexpr std::uint64_t kNoDeadline = ~std::uint64_t{0};

  // Queries (copies; control path only).
  const NodeRecord& self() const;
  std::vector<MemberInfo> members() const;  // excludes self
  std::optional<MemberInfo> member(const NodeId& id) const;
  // Every member's id and state, without copying records (large meshes, simulator).
  void visit_members(const std::function<void(const NodeId&, MemberState)>& fn) const;
  std::vector<EndpointMapping> mappings() const;  // live (non-removed), local and remote
  // How to reach a node (record's dh key + locators), if known.
  // nullopt for a revoked node.
  std::optional<Contact> contact(const NodeId& id) const;
  std::vector<Revocation> revocations() const;  // sorted by node id
  bool is_revoked(const NodeId& id) const;
  const MeshCounters& counters() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace meshd::mesh
