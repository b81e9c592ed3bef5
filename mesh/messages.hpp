// Control message schemas (version 1). Every message is a msgpack array whose first
// two fields are [version, type]; later fields are positional. Decoders accept extra
// trailing fields (a newer minor revision may append) but nothing else unexpected.
//
// Shared pieces:
//   locator  = [family, bin16 ip, port]
//   record   = [bin chain, [locator..], [vni..], version, bin64 sig]
//   member   = [record, state, incarnation]
//   mapping  = [vni, bin6 mac, [[family, bin16 ip]..], bin32 owner, seq, removed, bin64 sig]
//   revocation = [bin32 node, issued_s, str reason, bin64 sig]   (root-signed)
//   update   = [0, member] | [1, bin32 node, state, incarnation(, bin32 accuser)]
//            | [2, mapping] | [3, revocation]
//   (the accuser of a suspect state update was appended in issue 3 for Lifeguard
//   confirmations; without it the update decodes with no accuser)
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "crypto/bytes.hpp"
#include "crypto/result.hpp"
#include "mesh/codec.hpp"
#include "mesh/types.hpp"

namespace meshd::mesh {

inline constexpr std::uint64_t kMessageVersion = 1;
inline constexpr std::size_t kReasonMax = 128;

enum class MsgType : std::uint8_t {
  join_request = 1,  // [1, 1, incarnation, record]
  join_accept = 2,   // [1, 2, [member..], [mapping..], [revocation..]]  first chunk; rest go as push
  join_refuse = 3,   // [1, 3, reason]
  ping = 4,          // [1, 4, seq, [update..]]
  ack = 5,           // [1, 5, seq, [update..]]
  ping_req = 6,      // [1, 6, seq, bin32 target(, want_nack)]  want_nack: issue 3
  gossip = 7,        // [1, 7, [update..]]
  sync_request = 8,  // [1, 8, want_reply, members_digest, [[vni, digest]..], revocations_digest
                     //  (, [bucket digest x256](, states_ok))]
  push = 9,          // [1, 9, [member..], [mapping..], want_locals, [revocation..](, [state..]))]
                     //  state = [bin32 node, record version, state, incarnation(, bin64 proof)]
  leave = 10,        // [1, 10, incarnation]
  nack = 11,         // [1, 11, seq]  issue 3: a ping_req helper got no ack from the target
  // Issue 4, the mapping system (mesh/mapping_system.cpp):
  map_register = 12,  // [1, 12, [mapping..]]  to a key's owners (registrant, or hand-off)
  map_request = 13,   // [1, 13, nonce, key]  key = [vni, 0, mac] | [vni, 1, ip]
  map_reply = 14,     // [1, 14, nonce, key, [mapping..], ttl_ms]  no mapping = negative
  map_notify = 15,    // [1, 15, [mapping..]]  owner -> subscribers (and a superseded claimant)
  // Compact push-pull: a push of member states names the records the receiver lacks.
  record_request = 16,  // [1, 16, [bin32 node..]]  answered with a push of those members
};

// Most node ids in one record_request (a push of states names at most this many).
inline constexpr std::size_t kRecordRequestMax = 1024;

// Incarnations above 0 are proven by the node itself: `proof` is its signature over
// its id and that incarnation (alive_proof_bytes, mesh/types.hpp). Nobody else can
// raise a member's incarnation, so nobody can revive a dead node or bury a live one at
// an incarnation it never had. Absent for incarnation 0.
struct MemberEntry {
  NodeRecord record;
  MemberState state = MemberState::alive;
  std::uint64_t incarnation = 0;
  std::optional<crypto::Signature> proof;
};

struct StateUpdate {
  NodeId node{};
  MemberState state = MemberState::alive;
  std::uint64_t incarnation = 0;
  // Who suspects (suspect updates from issue 3 on): distinct accusers shorten the
  // Lifeguard suspicion timer. Absent from older senders and other states.
  std::optional<NodeId> accuser;
  std::optional<crypto::Signature> proof;  // the node's proof of `incarnation` (see MemberEntry)
};

using Update = std::variant<MemberEntry, StateUpdate, EndpointMapping, Revocation>;

// A member as push-pull compares it, without its record: what the members digest
// hashes (node, record version, incarnation) plus the state and the incarnation's
// proof. A receiver that holds the record at this version (the usual case) applies
// the state; otherwise it asks for the record (record_request).
struct MemberStateEntry {
  NodeId node{};
  std::uint64_t version = 0;
  MemberState state = MemberState::alive;
  std::uint64_t incarnation = 0;
  std::optional<crypto::Signature> proof;  // as in MemberEntry
};

struct JoinRequest {
  std::uint64_t incarnation = 0;
  NodeRecord record;
  std::optional<crypto::Signature> proof;  // of incarnation, so others accept it too
};
// Revocation lists were appended (trailing fields, issue 3); a message without them
// decodes with empty lists / no digest.
struct JoinAccept {
  std::vector<MemberEntry> members;
  std::vector<EndpointMapping> mappings;
  std::vector<Revocation> revocations;
};
struct JoinRefuse { std::string reason; };
struct Ping { std::uint64_t seq = 0; std::vector<Update> updates; };
struct Ack { std::uint64_t seq = 0; std::vector<Update> updates; };
// want_nack absent (older sender): false, the helper sends no nack.
struct PingReq { std::uint64_t seq = 0; NodeId target{}; bool want_nack = false; };
// `seq` is the requester's ping_req seq.
struct Nack { std::uint64_t seq = 0; };
struct MapRegister { std::vector<EndpointMapping> mappings; };
struct MapRequest { std::uint64_t nonce = 0; LookupKey key; };
struct MapReply {
  std::uint64_t nonce = 0;
  LookupKey key;
  std::vector<EndpointMapping> mappings;  // empty: negative (no live claim)
  std::uint64_t ttl_ms = 0;
};
struct MapNotify { std::vector<EndpointMapping> mappings; };
struct Gossip { std::vector<Update> updates; };
inline constexpr std::size_t kMemberBuckets = 256;

struct SyncRequest {
  bool want_reply = false;
  std::uint64_t members_digest = 0;
  std::vector<std::pair<std::uint32_t, std::uint64_t>> vni_digests;
  std::optional<std::uint64_t> revocations_digest;  // absent: sender predates revocations
  // Empty, or kMemberBuckets digests of the sender's live members by the first byte of
  // their id: "send me your members in the buckets where we differ".
  std::vector<std::uint64_t> member_buckets;
  // With member_buckets only: "send states, not records; I will ask for the records I
  // lack" (compact push-pull). Absent from older senders: they get full members.
  bool states_ok = false;
};
struct Push {
  std::vector<MemberEntry> members;
  std::vector<EndpointMapping> mappings;
  bool want_locals = false;  // "send me your own mappings for the VNIs I serve"
  std::vector<Revocation> revocations;
  std::vector<MemberStateEntry> states;  // compact push-pull (only to a states_ok asker)
};
struct RecordRequest { std::vector<NodeId> nodes; };  // bound: kRecordRequestMax
struct Leave {
  std::uint64_t incarnation = 0;
  std::optional<crypto::Signature> proof;  // of incarnation, so the news can be relayed
};

using Message = std::variant<JoinRequest, JoinAccept, JoinRefuse, Ping, Ack, PingReq, Gossip,
                             SyncRequest, Push, Leave, Nack, MapRegister, MapRequest, MapReply,
                             MapNotify, RecordRequest>;

// Pieces, pre-encoded so the broadcast queue can budget bytes per message.
Bytes encode_member(const MemberEntry& m);
Bytes encode_mapping(const EndpointMapping& m);
Bytes encode_revocation(const Revocation& r);
Bytes encode_member_state(const MemberStateEntry& s);
Bytes encode_update(const Update& u);
Result<MemberEntry> decode_member(ByteSpan b, const codec::Limits& limits);
Result<EndpointMapping> decode_mapping(ByteSpan b, const codec::Limits& limits);
Result<Revocation> decode_revocation(ByteSpan b, const codec::Limits& limits);

Bytes encode_join_request(const JoinRequest& m);
Bytes encode_join_refuse(const JoinRefuse& m);
Bytes encode_ping_req(const PingReq& m);
Bytes encode_sync_request(const SyncRequest& m);
Bytes encode_leave(const Leave& m);
Bytes encode_nack(const Nack& m);
// `updates` are encode_update() outputs.
Bytes encode_ping(std::uint64_t seq, std::span<const Bytes> updates);
Bytes encode_ack(std::uint64_t seq, std::span<const Bytes> updates);
Bytes encode_gossip(std::span<const Bytes> updates);
// `members` / `mappings` / `revocations` / `states` are encode_member() /
// encode_mapping() / encode_revocation() / encode_member_state() outputs.
Bytes encode_join_accept(std::span<const Bytes> members, std::span<const Bytes> mappings,
                         std::span<const Bytes> revocations = {});
Bytes encode_push(std::span<const Bytes> members, std::span<const Bytes> mappings,
                  bool want_locals, std::span<const Bytes> revocations = {},
                  std::span<const Bytes> states = {});
Bytes encode_record_request(const RecordRequest& m);

// `mappings` are encode_mapping() outputs.
Bytes encode_map_register(std::span<const Bytes> mappings);
Bytes encode_map_request(const MapRequest& m);
Bytes encode_map_reply(std::uint64_t nonce, const LookupKey& key, std::span<const Bytes> mappings,
                       std::uint64_t ttl_ms);
Bytes encode_map_notify(std::span<const Bytes> mappings);

// Errors: "codec.too_big", "codec.malformed" (also: unknown version or type, a field
// out of range, unsorted VNI list, too many locators/IPs).
Result<Message> decode_message(ByteSpan b, const codec::Limits& limits);

}  // namespace meshd::mesh
