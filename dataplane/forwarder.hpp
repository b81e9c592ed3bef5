// Forwarding decisions, sans-I/O: frames in, decisions out. The agent does the I/O.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "crypto/bytes.hpp"
#include "crypto/cert.hpp"
#include "dataplane/fib.hpp"

namespace meshd::dp {

struct ForwarderCounters {
  std::uint64_t tx_unicast = 0, tx_flood = 0, arp_proxied = 0, rx_delivered = 0;
  std::uint64_t drop_malformed = 0;      // not a valid Ethernet frame
  std::uint64_t drop_src_not_local = 0;  // frame from a TAP with a source MAC we did not attach
  std::uint64_t drop_vni_not_allowed = 0;  // sender's certificate does not allow the VNI
  std::uint64_t drop_src_not_owner = 0;  // inner source MAC not mapped to the sender
  std::uint64_t drop_vni_not_served = 0; // we have no device for the VNI
  std::uint64_t drop_no_route = 0;       // unknown unicast with no members to flood to
  std::uint64_t drop_dst_local = 0;      // unicast to a local endpoint: the bridge switched it
};

struct TapDecision {
  enum class Kind { drop, unicast, flood, reply_local };
  Kind kind = Kind::drop;
  NodeId to{};                      // unicast
  const std::vector<NodeId>* flood = nullptr;  // flood: nodes to replicate to (in the snapshot)
  std::size_t reply_len = 0;        // reply_local: frame written into the reply buffer
  // flood because the destination MAC is unknown: the agent may send a map-request.
  bool mac_miss = false;
  MacAddr miss_mac{};
  // flood of an ARP request whose target IP is not in the FIB (family 0 = none): the
  // agent may send a map-request for it.
  IpAddr arp_miss_ip;
};

struct TunnelDecision {
  enum class Kind { drop, deliver };
  Kind kind = Kind::drop;
};

class Forwarder {
 public:
  void publish(FibPtr fib) { fib_ = std::move(fib); }
  const FibPtr& fib() const { return fib_; }

  // A frame read from the TAP of `vni`. For reply_local, an ARP reply is written into
  // `reply` (>= 64 bytes) and should be written back to the same TAP. `flood` points
  // into the current snapshot: use it before the next publish(). No allocation, no
  // exceptions; every drop is counted.
  TapDecision on_tap_frame(std::uint32_t vni, ByteSpan frame, std::span<std::uint8_t> reply);

  // A decrypted frame from `sender` (whose verified chain is `chain`) for `vni`.
  // `vni_served` says whether we have a device for it.
  TunnelDecision on_tunnel_frame(const NodeId& sender, const crypto::CertChain& chain,
                                 std::uint32_t vni, bool vni_served, ByteSpan frame);

  const ForwarderCounters& counters() const { return counters_; }

 private:
  FibPtr fib_ = std::make_shared<const Fib>();
  ForwarderCounters counters_;
};

}  // namespace meshd::dp
