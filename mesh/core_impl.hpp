// MeshCore internals, shared by the files that implement one concern each:
//   mesh_core.cpp   public API, dispatch, timers, queues
//   membership.cpp  member table, SWIM state rules and incarnations, join/admission,
//                   token over-use, leave, reaping
//   probe.cpp       failure detection: direct + indirect probes, nacks, suspicion, gossip tick
//   suspicion.cpp   Lifeguard suspicion timer (standalone, no MeshCore state)
//   local_health.cpp Lifeguard local health multiplier (standalone)
//   mapping_store.cpp  endpoint mappings: publish/withdraw, apply, anti-entropy
//   revocation.cpp  root-signed node revocations: verify, store, enforce, spread
//   persist.cpp     storage load/save
// Not a public header: only mesh/*.cpp include it.
#pragma once

#include <algorithm>
#include <array>
#include <bitset>
#include <deque>
#include <memory>
#include <memory_resource>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "mesh/broadcast_queue.hpp"
#include "mesh/codec.hpp"
#include "mesh/local_health.hpp"
#include "mesh/mesh_core.hpp"
#include "mesh/messages.hpp"
#include "mesh/record_cache.hpp"
#include "mesh/suspicion.hpp"

namespace meshd::mesh {

// Helpers asked at the probe timeout; the rest of indirect_probe_count() only if none
// of them (nor the direct retry) got an ack through by halfway to the period's end.
inline constexpr std::size_t kIndirectFirstWave = 3;

struct MapKey {
  std::uint32_t vni = 0;
  MacAddr mac{};
  auto operator<=>(const MapKey&) const = default;
};

struct MeshCore::Impl {
  static constexpr std::uint32_t kNotLive = ~std::uint32_t{0};
  // One member table entry. The record is shared (RecordCache): a mesh of N nodes
  // holds each record once per process, not once per member table.
  struct Member {
    std::shared_ptr<const NodeRecord> rec;
    std::uint64_t incarnation = 0;
    std::uint64_t state_since_ms = 0;
    std::shared_ptr<const crypto::Signature> proof;  // the node's proof of `incarnation`
    std::uint32_t live_pos = kNotLive;  // index in live_ while alive or suspect
    MemberState state = MemberState::alive;
    const NodeRecord& record() const { return *rec; }
    const NodeId& id() const { return rec->id(); }
    bool live() const { return state == MemberState::alive || state == MemberState::suspect; }
    MemberInfo info() const { return MemberInfo{*rec, state, incarnation, state_since_ms}; }
  };
  struct MappingEntry {
    EndpointMapping m;
    std::uint64_t updated_ms = 0;
    // Cached (owner != self): lapses at expires_ms unless refreshed; used since
    // last_used_ms (touch, resolve).
    std::uint64_t expires_ms = 0;
    std::uint64_t last_used_ms = 0;
    bool refreshing = false;
    // Own: a newer claim elsewhere superseded ours within kMapFreshMs of publishing ->
    // a move, we claim above it once (reclaimed); superseded again within that time ->
    // the other node attached it as recently, its claim stands; later -> a duplicate,
    // reported until then.
    std::uint64_t published_ms = 0;
    bool reclaimed = false;
    std::uint64_t duplicate_until_ms = 0;
  };
  // Owners of a key as last computed (rendezvous order) and the R-th best score: a
  // member that joins with a higher score for the key is a new owner.
  struct OwnerSet {
    std::array<NodeId, kMapReplicasMax> ids{};
    std::uint8_t n = 0;
    std::uint64_t min_score = 0;
    bool contains(const NodeId& id) const {
      return std::find(ids.begin(), ids.begin() + n, id) != ids.begin() + n;
    }
    bool operator==(const OwnerSet& o) const {
      return n == o.n && std::equal(ids.begin(), ids.begin() + n, o.ids.begin());
    }
  };
  struct Held {  // a key we hold as one of its owners
    EndpointMapping m;  // the winning claim (a tombstone beats older copies of that claim)
    std::uint64_t updated_ms = 0;
    OwnerSet owners;
    std::uint64_t orphan_since_ms = 0;  // no longer an owner (handed off); 0 = owner
    std::vector<std::pair<NodeId, std::uint64_t>> subs;  // subscriber, until
  };
  struct PendingLookup {
    std::uint64_t nonce = 0;
    std::uint64_t deadline_ms = 0;
    std::uint8_t tries = 0;
  };
  struct Probe {
    bool active = false;
    bool acked = false;
    bool indirect_sent = false;
    NodeId target{};
    std::uint64_t incarnation = 0;      // the target's, when probed: a refutation since wins
    std::uint64_t seq = 0;
    std::uint64_t sent_ms = 0;
    std::uint64_t indirect_ms = 0;      // no ack by then: ask helpers (timeout scaled by LHM)
    // Still no ack by then: ask the rest of the helpers (halfway from indirect_ms to the
    // end of the period), without nacks: theirs could not arrive in time.
    std::uint64_t second_wave_ms = 0;
    bool second_wave_sent = false;
    std::array<NodeId, kIndirectFirstWave> first_wave{};
    std::size_t first_wave_size = 0;
    std::size_t nacks_expected = 0;     // helpers asked for a nack
    std::size_t nacks_received = 0;     // bound: nacks_expected
  };
  struct Relay {  // we forward a ping on behalf of `origin` (ping_req)
    NodeId origin{};
    std::uint64_t origin_seq = 0;
    std::uint64_t deadline_ms = 0;
    std::uint64_t nack_ms = 0;          // no ack from the target by then: nack the origin
    bool nack_pending = false;          // origin asked for a nack and none was sent yet
  };

  Impl(MeshConfig cfg, crypto::SigningKey key, crypto::PublicKey root, NodeRecord self,
       crypto::Random& rng, Storage* storage, std::uint64_t now_ms, RecordCache* cache);

  // ---- configuration and identity
  MeshConfig cfg_;
  codec::Limits limits_;
  crypto::SigningKey key_;
  crypto::PublicKey root_pub_;
  NodeRecord self_;
  crypto::Random& rng_;
  Storage* storage_;
  std::unique_ptr<RecordCache> own_cache_;  // unless the caller shares one
  RecordCache* cache_;
  std::uint64_t incarnation_ = 0;
  std::optional<crypto::Signature> self_proof_;  // our proof of incarnation_ (none at 0)
  bool left_ = false;

  // ---- tables (ordered maps: iteration order is deterministic, so runs replay)
  // Member table nodes come from a pool: a 10,000-node mesh has 10,000 of them per
  // node, and the simulator runs 10,000 nodes in one process (no per-node malloc slack).
  std::pmr::unsynchronized_pool_resource member_pool_{std::pmr::pool_options{256, 256}};
  // The key is the id inside the member's own record (8 bytes, not a 32-byte copy:
  // 100 million entries in a 10,000-node simulation). set_record re-points it when the
  // record is replaced (same id, so the order holds). Lookups take a NodeId.
  struct MemberKey {
    mutable const NodeId* id;
    operator const NodeId&() const { return *id; }  // NOLINT: a key reads as its id
  };
  struct MemberKeyLess {
    using is_transparent = void;
    bool operator()(const MemberKey& a, const MemberKey& b) const { return *a.id < *b.id; }
    bool operator()(const MemberKey& a, const NodeId& b) const { return *a.id < b; }
    bool operator()(const NodeId& a, const MemberKey& b) const { return a < *b.id; }
  };
  using MemberMap = std::pmr::map<MemberKey, Member, MemberKeyLess>;
  MemberMap members_{&member_pool_};          // bound: cfg_.members_max
  // Indexes over members_, kept in step by insert_member / erase_member / set_state /
  // set_record, so nothing periodic scans the whole table:
  std::vector<Member*> live_;                 // alive or suspect; also the probe order
  // Pooled like the member table, and keyed the same way (the id in the suspect's
  // record; set_record re-points both): while a 10,000-node mesh is cut in half the
  // simulator holds 50 million suspicions.
  std::pmr::unsynchronized_pool_resource suspicion_pool_{std::pmr::pool_options{256, 256}};
  using SuspicionMap = std::pmr::map<MemberKey, Suspicion, MemberKeyLess>;
  SuspicionMap suspicions_{&suspicion_pool_};  // exactly the suspect members
  // Their deadlines, earliest first: (deadline, suspicions_' key) for exactly the
  // entries of suspicions_, so poll_timeout and check_suspicions do not scan every
  // suspicion (thousands at once while a partition lasts). Change suspicions_ only
  // through these three, which keep both in step:
  struct DeadlineLess {
    bool operator()(const std::pair<std::uint64_t, const MemberKey*>& a,
                    const std::pair<std::uint64_t, const MemberKey*>& b) const {
      return a.first != b.first ? a.first < b.first : *a.second->id < *b.second->id;
    }
  };
  std::pmr::set<std::pair<std::uint64_t, const MemberKey*>, DeadlineLess> suspicion_deadlines_{&suspicion_pool_};
  void suspicion_start(const Member& m, Suspicion s);  // replaces one in progress
  void suspicion_end(const NodeId& id);                 // none: no-op
  bool confirm_suspicion(SuspicionMap::iterator sus, const NodeId& who);
  std::uint64_t members_xor_ = 0;             // XOR of member_hash over live_
  std::array<std::uint64_t, kMemberBuckets> bucket_xor_{};  // same, by first id byte
  std::map<crypto::TokenId, std::size_t> token_members_;  // members_ per enrollment token
  // Members in the order they failed (id, when): those failed less than
  // gossip_to_dead_ms ago are gossip and push-pull partners too. Stale entries (old,
  // or alive again) are skipped and pruned. Bound: cfg_.members_max.
  // An entry points at the member's key in members_ (stable; erase_member drops the
  // member's entries first): 16 bytes, where a 10,000-node partition fails 50 million.
  std::deque<std::pair<const MemberKey*, std::uint64_t>> recently_failed_;
  std::deque<NodeId> refused_order_;          // bound: cfg_.refused_max
  std::set<NodeId> refused_;
  using MappingMap = std::map<MapKey, MappingEntry>;
  MappingMap mappings_;   // bound: cfg_.mappings_max
  std::map<MapKey, std::uint64_t> own_seqs_;  // bound: cfg_.mappings_max
  bool self_refused_reported_ = false;
  std::map<NodeId, Revocation> revocations_;  // bound: cfg_.revocations_max; never evicted
  std::uint64_t revocations_digest_ = 0;      // XOR of per-node hashes: order-free, O(1) update
  bool self_revoked_ = false;                 // we learned our own revocation: quiet for good

  // ---- mapping system (mapping_system.cpp)
  std::map<LookupKey, Held> held_;                      // bound: cfg_.map_held_max
  std::map<LookupKey, std::vector<std::pair<NodeId, std::uint64_t>>> neg_subs_;  // same bound
  struct OwnReg {
    OwnerSet owners;  // registered with
    MacAddr mac{};    // the own mapping's MAC (for IP keys)
  };
  std::map<LookupKey, OwnReg> own_regs_;                // own keys
  std::map<LookupKey, PendingLookup> pending_;          // bound: cfg_.map_pending_max
  std::map<std::uint64_t, LookupKey> pending_nonces_;
  std::map<LookupKey, std::uint64_t> negative_;         // key -> until; bound: pending max
  std::map<std::pair<std::uint32_t, IpAddr>, MacAddr> cache_ips_;  // IPs of mappings_ entries
  std::vector<NodeId> map_joined_, map_gone_;           // since the last rebalance
  bool map_rebalance_all_ = false;
  std::uint64_t next_map_rebalance_ms_ = 0;
  std::uint64_t next_map_sweep_ms_ = 0;
  std::uint64_t next_map_refresh_ms_ = 0;
  // Own mappings registered once more kMapRegisterAgainMs after a change (registrations
  // are not acknowledged; one lost at all R owners would otherwise wait for the
  // refresh). Bound: cfg_.mappings_max (oldest first).
  std::deque<std::pair<std::uint64_t, MapKey>> register_again_;

  // ---- queues
  BroadcastQueue broadcasts_;
  std::deque<MeshTransmit> tx_;     // bound: cfg_.transmit_queue_max
  std::deque<MeshEvent> events_;    // bound: cfg_.event_queue_max
  MeshCounters counters_;
  LocalHealth health_;

  // ---- joining
  std::vector<Contact> contacts_;   // bound: kContactsMax
  bool joining_ = false;
  bool join_reported_ = false;
  std::uint64_t next_join_ms_ = 0;

  // ---- probing and timers
  std::size_t probe_index_ = 0;  // next in live_ (shuffled at the start of each round)
  // Probed next, out of turn: a member someone else just suspected (see apply_state).
  std::optional<NodeId> probe_first_;
  Probe probe_;
  std::uint64_t next_seq_ = 1;
  std::map<std::uint64_t, Relay> relays_;  // bound: cfg_.indirect_pending_max
  std::uint64_t next_probe_ms_ = 0;
  std::uint64_t next_gossip_ms_ = 0;
  std::uint64_t next_anti_entropy_ms_ = 0;
  std::uint64_t next_failed_probe_ms_ = 0;

  // ---- mesh_core.cpp
  void send(const NodeId& to, Bytes payload);
  void emit(MeshEvent ev);
  void handle_message(std::uint64_t now, const NodeId& from, ByteSpan payload);
  void handle_timeout(std::uint64_t now);
  std::uint64_t poll_timeout() const;
  MemberInfo self_info(std::uint64_t now) const;
  bool serves(std::uint32_t vni) const;
  static bool record_serves(const NodeRecord& r, std::uint32_t vni);
  std::vector<NodeId> live_members() const;  // alive or suspect
  std::size_t live_count() const { return live_.size(); }
  // Up to k distinct live members for which pred holds, chosen at random.
  template <typename Pred>
  std::vector<Member*> sample_live(std::size_t k, Pred pred);
  // Index upkeep (see members_).
  // k distinct random partners for gossip or push-pull: live members and, in their
  // share, members failed within gossip_to_dead_ms.
  std::vector<NodeId> sample_partners(std::uint64_t now, std::size_t k, bool alive_only);
  void live_add(Member& m);
  void live_remove(Member& m);
  void live_shuffle();
  void set_record(MemberMap::iterator it, std::shared_ptr<const NodeRecord> rec);
  // In or out of the digests (live members only).
  void digest_toggle(const NodeId& id, std::uint64_t version, std::uint64_t incarnation);
  MemberMap::iterator erase_member(MemberMap::iterator it);
  std::size_t token_holders(const crypto::TokenId& tid) const;  // self + members + revoked
  std::size_t transmit_limit() const;
  // Next push-pull after anti_entropy_interval_ms / kAntiEntropyCatchUpDiv at the latest.
  void catch_up_soon(std::uint64_t now);
  // Our view of `to` as an update when we hold it suspect or failed (it refutes on it).
  std::optional<Bytes> target_state(const NodeId& to) const;
  std::size_t indirect_probe_count() const;  // cfg or 3 + 2 * ceil(log10(N + 1))
  void probe_second_wave(std::uint64_t now);
  void queue_broadcast(const BroadcastQueue::Key& key, const Update& u);
  // Gossips a state fact. A suspect with an accuser is keyed per (node, accuser) so
  // independent confirmations travel side by side; any other state about the node
  // replaces them all (a newer fact makes them moot).
  void queue_state(const StateUpdate& s);
  void bump_record(std::uint64_t now);  // own record changed: version+1, sign, persist, gossip
  std::uint64_t now_s(std::uint64_t now_ms) const { return now_ms / 1000; }

  // ---- membership.cpp
  // The shared verified record, or nullptr (signature, chain or expiry).
  std::shared_ptr<const NodeRecord> verify_record(std::uint64_t now, const NodeRecord& r);
  void apply_update(std::uint64_t now, const Update& u);
  // from_subject: the entry comes from the node it describes (join request), whose
  // incarnation needs no proof.
  void apply_member(std::uint64_t now, const MemberEntry& e, bool from_subject = false);
  // `accuser`: who suspects (suspect updates only; absent from older senders).
  // An incarnation above the one we hold needs `proof` (the node's signature), unless
  // from_subject (the node itself said it, e.g. its leave message).
  void apply_state(std::uint64_t now, const NodeId& id, MemberState st, std::uint64_t inc,
                   const std::optional<NodeId>& accuser = std::nullopt,
                   const std::optional<crypto::Signature>& proof = std::nullopt,
                   bool from_subject = false);
  // The shared proof if `inc` is above `m`'s incarnation and `proof` proves it; nullptr
  // (counted) if it does not. `ok` false means: reject the update.
  std::shared_ptr<const crypto::Signature> check_proof(const Member& m, std::uint64_t inc,
                                                       const std::optional<crypto::Signature>& proof,
                                                       bool from_subject, bool& ok);
  void set_incarnation(std::uint64_t inc);  // persists and signs our proof
  static std::optional<crypto::Signature> proof_of(const Member& m) {
    return m.proof ? std::optional<crypto::Signature>(*m.proof) : std::nullopt;
  }
  MemberEntry entry_of(const Member& m) const {
    return MemberEntry{*m.rec, m.state, m.incarnation, proof_of(m)};
  }
  MemberEntry self_entry() const {
    return MemberEntry{self_, MemberState::alive, incarnation_, self_proof_};
  }
  MemberStateEntry state_of(const Member& m) const {
    return MemberStateEntry{m.id(), m.rec->version, m.state, m.incarnation, proof_of(m)};
  }
  MemberStateEntry self_state() const {
    return MemberStateEntry{self_.id(), self_.version, MemberState::alive, incarnation_,
                            self_proof_};
  }
  void set_state(std::uint64_t now, Member& m, MemberState st, std::uint64_t inc,
                 const std::optional<NodeId>& accuser = std::nullopt);
  void start_suspicion(std::uint64_t now, Member& m, const std::optional<NodeId>& accuser);
  bool token_admits(const NodeRecord& candidate);  // over-use check, refuses extras
  void refuse_node(const NodeId& id);
  void on_member_up(std::uint64_t now, const Member& m);
  void on_join_request(std::uint64_t now, const NodeId& from, const JoinRequest& m);
  void on_join_accept(std::uint64_t now, const NodeId& from, const JoinAccept& m);
  void on_join_refuse(std::uint64_t now, const NodeId& from, const JoinRefuse& m);
  void on_leave(std::uint64_t now, const NodeId& from, const Leave& m);
  void send_join_requests(std::uint64_t now);
  // include_members: every member, or with `buckets` only those whose id starts
  // with a byte set there; `as_states`: their states without records (compact
  // push-pull, to a peer that said states_ok).
  // A join accept (first message) or pushes, split to fit message_bytes_max.
  void send_members(const NodeId& to, bool as_join_accept, bool include_members,
                    bool include_revocations = false,
                    const std::bitset<kMemberBuckets>* buckets = nullptr, bool as_states = false);
  void on_record_request(std::uint64_t now, const NodeId& from, const RecordRequest& m);
  void reap(std::uint64_t now);
  void refute(std::uint64_t now, std::uint64_t heard_inc);

  // ---- probe.cpp
  void probe_tick(std::uint64_t now);
  void probe_indirect(std::uint64_t now);
  void check_suspicions(std::uint64_t now);
  void probe_failed_member(std::uint64_t now);
  void gossip_tick(std::uint64_t now);
  // Appends queued gossip to `updates` up to gossip_bytes_max in all; how many it added.
  std::size_t add_piggyback(std::vector<Bytes>& updates);
  void on_ping(std::uint64_t now, const NodeId& from, const Ping& m);
  void on_ack(std::uint64_t now, const NodeId& from, const Ack& m);
  void on_ping_req(std::uint64_t now, const NodeId& from, const PingReq& m);
  void on_nack(std::uint64_t now, const NodeId& from, const Nack& m);
  void relay_tick(std::uint64_t now);  // nacks due, expired relays
  void health_delta(int delta);
  std::uint64_t probe_interval_ms() const { return health_.scale_ms(cfg_.probe_interval_ms); }
  std::uint64_t probe_timeout_ms() const { return health_.scale_ms(cfg_.probe_timeout_ms); }
  void send_ping(const NodeId& to, std::uint64_t seq, bool with_own_state);

  // ---- mapping_store.cpp
  Status publish(std::uint64_t now, std::uint32_t vni, const MacAddr& mac, std::vector<IpAddr> ips);
  Status withdraw(std::uint64_t now, std::uint32_t vni, const MacAddr& mac);
  void apply_mapping(std::uint64_t now, const EndpointMapping& m);
  void store_mapping(std::uint64_t now, const EndpointMapping& m);
  void remove_owner_mappings(const NodeId& owner);
  // Erases one mapping: emits mapping_removed (unless already a tombstone), unpersists.
  MappingMap::iterator forget_mapping(MappingMap::iterator it);
  void drop_unserved_vni(std::uint32_t vni);
  void start_serving(std::uint64_t now, std::uint32_t vni);
  std::uint64_t members_digest() const;
  void send_sync_request(const NodeId& to, bool want_reply, bool with_buckets = false);
  std::array<std::uint64_t, kMemberBuckets> member_buckets() const;  // self included
  void anti_entropy(std::uint64_t now);
  void on_sync_request(std::uint64_t now, const NodeId& from, const SyncRequest& m);
  void on_push(std::uint64_t now, const NodeId& from, const Push& m);
  // The states of a compact push: applied where we hold the record at that version;
  // the rest are asked for (record_request to `from`).
  void apply_pushed_states(std::uint64_t now, const NodeId& from,
                           const std::vector<MemberStateEntry>& states);
  void gc_tombstones(std::uint64_t now);

  // ---- mapping_system.cpp
  OwnerSet compute_owners(const LookupKey& k) const;
  static std::vector<LookupKey> keys_of(const EndpointMapping& m);
  void map_membership_changed(const NodeId& id, bool joined);
  void map_tick(std::uint64_t now);
  std::uint64_t map_deadline() const;
  void map_rebalance(std::uint64_t now);
  void map_sweep(std::uint64_t now);
  // Own mapping changed (publish/withdraw) or its owners: register it where needed.
  // `old`: the previous version, whose IP keys' owners must hear it lost those IPs.
  void register_own(std::uint64_t now, const EndpointMapping& m, const EndpointMapping* old);
  void send_registers(std::map<NodeId, std::vector<Bytes>>& batches);
  // Queues `enc` (one encoded mapping) for each owner in `o`, once per owner even when
  // several keys of the mapping share it (keys are added one mapping at a time).
  static void add_to_owners(std::map<NodeId, std::vector<Bytes>>& batches, const OwnerSet& o,
                            const Bytes& enc);
  MeshCore::Lookup resolve(std::uint64_t now, const LookupKey& k);
  void send_lookup(std::uint64_t now, const LookupKey& k, PendingLookup& p);
  std::size_t other_owners(const LookupKey& k) const;  // owners of k but us: lookup tries
  bool map_checks(const EndpointMapping& m);  // signature, live owner, scope, revocation
  void hold(std::uint64_t now, const LookupKey& k, const EndpointMapping& m);
  // The claim that holds a key, to a node whose claim lost it.
  void tell_claimant(std::uint64_t now, const NodeId& claimant, const EndpointMapping& winner);
  void notify_subs(std::uint64_t now, Held& h);
  void on_map_register(std::uint64_t now, const MapRegister& m);
  void on_map_request(std::uint64_t now, const NodeId& from, const MapRequest& m);
  void on_map_reply(std::uint64_t now, const NodeId& from, const MapReply& m);
  void on_map_notify(std::uint64_t now, const NodeId& from, const MapNotify& m);
  // A mapping from a reply or notify, for our cache (or our own key, superseded).
  void cache_apply(std::uint64_t now, const EndpointMapping& m, std::uint64_t ttl_ms);
  // A refresh of a cached mapping (not a first lookup) ended without an answer: keep
  // the entry (timeout) or drop it (negative), and report nothing. False: not a refresh.
  bool refresh_ended(const LookupKey& k, bool negative);
  void cache_ips_add(const EndpointMapping& m);
  void cache_ips_remove(const EndpointMapping& m);
  void drop_held_of(const NodeId& owner);
  void persist_held(const LookupKey& k, const EndpointMapping& m);
  void unpersist_held(const LookupKey& k);
  void restore_held(std::uint64_t now);

  // ---- revocation.cpp
  bool is_revoked(const NodeId& id) const { return revocations_.count(id) != 0; }
  Status revoke(std::uint64_t now, const Revocation& r);
  void apply_revocation(std::uint64_t now, const Revocation& r);  // network input
  // Stores (unless already known), enforces and, if `spread`, gossips. False if full.
  bool learn_revocation(std::uint64_t now, const Revocation& r, bool spread);
  void revoked_self(std::uint64_t now);
  // A revoked node spoke to us: drop, and tell it (once per message it sends) so it stops.
  void on_revoked_sender(const NodeId& from, const Message& msg);
  Bytes revocation_gossip(const NodeId& node) const;

  // ---- persist.cpp
  void load_meta();
  void restore(std::uint64_t now);
  // Adds a member from an entry (new: caller checked bounds, signature, admission).
  Member& insert_member(std::uint64_t now, std::shared_ptr<const NodeRecord> rec, MemberState st,
                        std::uint64_t inc);
  void persist_member(const Member& m);
  void unpersist_member(const NodeId& id);
  void persist_mapping(const EndpointMapping& m);
  void unpersist_mapping(const MapKey& k);
  void persist_incarnation();
  void persist_record_version();
  void persist_seq(const MapKey& k, std::uint64_t seq);
  void persist_revocation(const Revocation& r);
  void restore_revocations(std::uint64_t now);
};

inline constexpr std::size_t kContactsMax = 64;
// Queued gossip updates per extra gossip message in one tick (see gossip_tick).
inline constexpr std::size_t kGossipBacklogPerMessage = 32;
// After a push-pull that found the member tables different (or after seeing a failed
// member back), the next one comes after anti_entropy_interval_ms / this (catching
// up: 500 ms by default), not the full interval. Heal time grows with the number of
// rounds (~log N), so this sets how fast a large partition heals (bench/README.md).
inline constexpr std::uint64_t kAntiEntropyCatchUpDiv = 10;
// On hearing a new suspicion, a node probes the suspect next with probability
// kConfirmProbers / N: about this many members check at once, so a dead node's
// suspicion is confirmed within a probe period instead of waiting for round robin.
inline constexpr std::size_t kConfirmProbers = 3;
// Failed members a push says are alive that we ping at once (see on_push).
inline constexpr std::size_t kRevivalPingsMax = 8;
// Most local-health points one failed probe adds for helpers' missing nacks.
inline constexpr std::size_t kNackEvidenceMax = 3;
// A superseded own claim younger than this is a move (we claim above it once); older,
// a duplicate (two nodes claim the MAC at once).
inline constexpr std::uint64_t kMapFreshMs = 5'000;
// A changed own mapping is registered again this long after the first time.
inline constexpr std::uint64_t kMapRegisterAgainMs = 1'000;
// Rebalance at most this often after membership changes (batches churn).
inline constexpr std::uint64_t kMapRebalanceMs = 200;
// Cache sweep (expiry, refresh of entries in use) period.
inline constexpr std::uint64_t kMapSweepMs = 1'000;
// Changed members remembered for an incremental rebalance; more: recompute all.
inline constexpr std::size_t kMapChangesMax = 64;
// Claim order for one key: the same claim (owner and MAC) by seq; another claim's
// tombstone never beats a live claim; two live claims by (higher seq, lower owner id).
bool claim_beats(const EndpointMapping& in, const EndpointMapping& cur);

// Order-free hash of (node, record version, incarnation) for the members digest: a
// refutation nobody has heard of (or a stale suspicion it answers) shows up in push-pull.
std::uint64_t member_hash(const NodeId& id, std::uint64_t version, std::uint64_t incarnation);

template <typename Pred>
std::vector<MeshCore::Impl::Member*> MeshCore::Impl::sample_live(std::size_t k, Pred pred) {
  std::vector<Member*> out;
  if (k == 0 || live_.empty()) return out;
  if (live_.size() <= 4 * k + 16) {  // small: every candidate, partially shuffled
    for (Member* m : live_) {
      if (pred(*m)) out.push_back(m);
    }
    for (std::size_t i = 0; i < out.size() && i < k; ++i) {
      std::swap(out[i], out[i + rng_.uniform(out.size() - i)]);
    }
    if (out.size() > k) out.resize(k);
    return out;
  }
  // Large: random draws, bounded, so a cost never grows with the table.
  for (std::size_t tries = 0; out.size() < k && tries < 8 * k; ++tries) {
    Member* m = live_[rng_.uniform(live_.size())];
    if (pred(*m) && std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
  }
  return out;
}

BroadcastQueue::Key member_key(const NodeId& id);
BroadcastQueue::Key state_key(const NodeId& id);
BroadcastQueue::Key mapping_key(const MapKey& k);
BroadcastQueue::Key revocation_key(const NodeId& id);
// kind 5: a suspect of `node` by `accuser` (first 7 bytes of its id: a collision
// only merges two confirmations in our queue, never changes a fact).
BroadcastQueue::Key confirm_key(const NodeId& node, const NodeId& accuser);

}  // namespace meshd::mesh
