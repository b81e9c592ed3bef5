// Forwarding decisions, sans-I/O: frames in, decisions out. The agent does the I/O.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "crypto/bytes.hpp"
#include "crypto/cert.hpp"
#include "dataplane/fib.hpp"
#include "dataplane/frame.hpp"

namespace meshd::dp {

// The reply buffer given to on_tap_frame() must hold this many bytes: the largest frame
// it writes (an NA with its option, 86 bytes; an ARP reply is 42).
inline constexpr std::size_t kReplyFrameMax = std::max(kArpReplyFrameLen, kNaFrameLen);
static_assert(kReplyFrameMax == 86);

// Flooded-frame budget per VNI (token bucket). frames_per_s == 0 means unlimited; a burst
// of 0 with a non-zero rate is taken as 1.
struct FloodLimit {
  std::uint32_t frames_per_s = 200;
  std::uint32_t burst = 400;
};
// Flood buckets: a fixed table of kFloodBucketsMax VNIs, allocated once when the Forwarder
// is built. Overflow policy: a VNI that finds no slot within kFloodProbeMax probes (table
// full of buckets that are not yet refilled) shares one overflow bucket. A bucket idle
// long enough to refill completely is indistinguishable from a new one and is reused.
inline constexpr std::size_t kFloodBucketsMax = 4096;
inline constexpr std::size_t kFloodProbeMax = 32;

struct ForwarderCounters {
  std::uint64_t tx_unicast = 0;            // frame from a TAP sent to one node
  std::uint64_t tx_flood = 0;              // frame from a TAP to replicate to the VNI's members
  std::uint64_t arp_proxied = 0;           // ARP request for a remote endpoint answered locally
  std::uint64_t nd_proxied = 0;            // IPv6 NS for a remote endpoint answered locally
  std::uint64_t route_proxied = 0;         // ARP or NS for a routed address answered locally
  std::uint64_t rx_delivered = 0;          // tunnel frame accepted for the TAP
  std::uint64_t drop_malformed = 0;        // not a valid Ethernet frame
  std::uint64_t drop_src_not_local = 0;    // frame from a TAP with a source MAC we did not attach
  std::uint64_t drop_vni_not_allowed = 0;  // sender's certificate does not allow the VNI
  std::uint64_t drop_src_not_owner = 0;    // inner source MAC mapped to another node than the sender
  std::uint64_t src_unresolved = 0;        // inner source MAC not in the FIB (TunnelDecision::src_unknown)
  std::uint64_t drop_vni_not_served = 0;   // we have no device for the VNI
  std::uint64_t drop_no_route = 0;         // unknown unicast with no members to flood to
  std::uint64_t drop_dst_local = 0;        // unicast to a local endpoint: the bridge switched it
  std::uint64_t drop_flood_limited = 0;    // allow_flood() refused: the VNI's budget is spent
  bool operator==(const ForwarderCounters&) const = default;
  ForwarderCounters& operator+=(const ForwarderCounters& o);
};

struct TapDecision {
  enum class Kind { drop, unicast, flood, reply_local };
  Kind kind = Kind::drop;
  NodeId to{};                                 // unicast
  const std::vector<NodeId>* flood = nullptr;  // flood: nodes to replicate to (in the snapshot)
  std::size_t reply_len = 0;                   // reply_local: frame written into the reply buffer
  // flood because the destination MAC is unknown: the agent may send a map-request.
  bool mac_miss = false;
  MacAddr miss_mac{};
  // flood (or drop for lack of members) of an ARP request (v4) or IPv6 Neighbour
  // Solicitation (v6) whose target IP is neither an endpoint nor covered by a route in
  // the FIB: the agent may send a map-request for it. family 0 = none. (Formerly
  // arp_miss_ip, which only carried v4.)
  IpAddr ip_miss;
};

struct TunnelDecision {
  enum class Kind { drop, deliver };
  Kind kind = Kind::drop;
  // Dropped because the inner source MAC is not in the FIB at all (not: mapped to
  // another node): the agent may resolve it and try again (src_unresolved counted).
  bool src_unknown = false;
  MacAddr src_mac{};
};

class Forwarder {
 public:
  explicit Forwarder(FloodLimit flood_limit = {});

  void publish(FibPtr fib) { fib_ = std::move(fib); }
  const FibPtr& fib() const { return fib_; }

  // A frame read from the TAP of `vni`. For reply_local, a frame is written into `reply`
  // and should be written back to the same TAP; `reply` should hold kReplyFrameMax bytes
  // (if it is smaller, the request is flooded instead). `flood` points into the current
  // snapshot: use it before the next publish(). No allocation, no exceptions; every drop
  // is counted.
  //
  // Local answers, on untagged requests only (the reply would lose the tag):
  //  - broadcast ARP request, or multicast IPv6 NS (not a DAD probe), for an IP in
  //    ip_to_mac whose MAC is a remote endpoint: answered with that MAC (arp_proxied,
  //    nd_proxied). A local endpoint's IP is flooded: the tenant answers itself.
  //  - the same for an IP that is not in ip_to_mac but inside a route of the VNI:
  //    answered with the route's next_hop_mac, even a local one (route_proxied). Not for
  //    ARP probes and announcements (sender IP 0.0.0.0 or the target itself), nor when
  //    the requester is the next hop itself.
  // Flooding is not rate limited here: the agent calls allow_flood() before replicating.
  TapDecision on_tap_frame(std::uint32_t vni, ByteSpan frame, std::span<std::uint8_t> reply);

  // The data-plane workers' fast path: if the frame's destination is a remote endpoint
  // and its source one of ours, counts tx_unicast, marks the endpoint used and returns
  // its owner. Anything else (multicast, a miss, a local destination, malformed):
  // nullopt with nothing counted; the frame then goes through on_tap_frame.
  std::optional<NodeId> unicast_owner(std::uint32_t vni, ByteSpan frame);

  // A decrypted frame from `sender` (whose verified chain is `chain`) for `vni`.
  // `vni_served` says whether we have a device for it.
  TunnelDecision on_tunnel_frame(const NodeId& sender, const crypto::CertChain& chain,
                                 std::uint32_t vni, bool vni_served, ByteSpan frame);

  // Takes one frame from `vni`'s flood budget at `now_ms` (any monotonic clock; a clock
  // going back refills nothing). Call once per flooded frame, not per copy. False (and
  // drop_flood_limited counted) if the budget is spent: drop the frame. Always true when
  // frames_per_s is 0. No allocation.
  bool allow_flood(std::uint32_t vni, std::uint64_t now_ms);

  const ForwarderCounters& counters() const { return counters_; }

 private:
  struct FloodBucket {
    std::uint64_t last_ms = 0;
    std::uint64_t tokens_milli = 0;  // thousandths of a frame
    std::uint32_t vni = 0;
    bool used = false;
  };
  FloodBucket& flood_bucket(std::uint32_t vni, std::uint64_t now_ms);
  void refill(FloodBucket& b, std::uint64_t now_ms) const;

  FibPtr fib_ = std::make_shared<const Fib>();
  ForwarderCounters counters_;
  FloodLimit flood_limit_;
  std::uint64_t flood_cap_milli_ = 0;       // bucket size
  std::uint64_t flood_full_ms_ = 0;         // time to refill an empty bucket
  std::vector<FloodBucket> flood_buckets_;  // kFloodBucketsMax, or empty if unlimited
  FloodBucket flood_overflow_;
};

}  // namespace meshd::dp
