// TAP offloads (IFF_VNET_HDR + TUNSETOFFLOAD): cutting the kernel's TCP/UDP super-frames
// into wire-sized segments before encryption, and merging received TCP segments back
// into super-frames (GRO-like) before they are written to the TAP. Pure: no I/O, and no
// allocation after TcpCoalescer's constructor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "crypto/bytes.hpp"
#include "dataplane/checksum.hpp"

namespace meshd::dp {

// struct virtio_net_hdr (legacy, 10 bytes; include/uapi/linux/virtio_net.h). Its 16-bit
// fields are in host byte order (a TAP without TUNSETVNETLE/BE on a little-endian host).
inline constexpr std::size_t kVnetHdrLen = 10;
inline constexpr std::uint8_t kVnetFlagNeedsCsum = 1, kVnetFlagDataValid = 2;
inline constexpr std::uint8_t kGsoNone = 0, kGsoTcpV4 = 1, kGsoUdp = 3, kGsoTcpV6 = 4,
                              kGsoUdpL4 = 5, kGsoEcn = 0x80;

struct VnetHdr {
  std::uint8_t flags = 0, gso_type = 0;
  std::uint16_t hdr_len = 0, gso_size = 0, csum_start = 0, csum_offset = 0;
  bool operator==(const VnetHdr&) const = default;
};
VnetHdr read_vnet_hdr(const std::uint8_t* p);  // p has kVnetHdrLen bytes
void write_vnet_hdr(std::uint8_t* p, const VnetHdr& h);

// Where segments go: segment i is written at arena[i*stride + headroom .. + lens[i]).
struct SegmentArena {
  std::span<std::uint8_t> arena;
  std::size_t stride = 0;
  std::size_t headroom = 0;
  std::span<std::uint16_t> lens;  // lens.size() = max segments
};
enum class SegmentError { none, malformed, unsupported, too_many };
struct SegmentResult {
  std::size_t count = 0;
  SegmentError error = SegmentError::none;
};

// Splits `frame` (Ethernet, as read after the vnet header) as `h` asks:
//  * kGsoNone: one segment, a copy. With NEEDS_CSUM the checksum at
//    csum_start + csum_offset (which holds the pseudo-header partial sum) is completed
//    over csum_start..end (0 is stored as 0xffff, as the kernel does).
//  * kGsoTcpV4 / kGsoTcpV6 (kGsoEcn allowed), kGsoUdpL4: the L4 payload is cut into
//    pieces of min(h.gso_size, mss_cap) bytes (mss_cap 0: no cap). Each segment gets the
//    Ethernet/IP/L4 headers with lengths, IPv4 id (+i) and header checksum, TCP seq, flags
//    (FIN/PSH last only, CWR first only) and a full L4 checksum. One 802.1Q/802.1ad tag
//    is fine; IPv4 options are fine. The header length is measured (csum_start + TCP data
//    offset, or + 8 for UDP): h.hdr_len is only a hint from the kernel (skb_headlen) and
//    is merely checked to lie within the frame. Bytes past the IP length (Ethernet
//    padding) are dropped.
//  * kGsoUdp (UFO), other types, IPv6 extension headers: `unsupported`.
//  * Lengths or fields that do not add up (gso_size 0, csum_start / hdr_len / the L4
//    header beyond the frame, csum_start not the L4 header, csum_offset not the L4
//    checksum field, IP version or protocol not matching the GSO type, IP lengths larger
//    than the frame, IPv4 fragments): `malformed`.
//  * More segments than lens.size(), or a segment not fitting its stride (headroom + len)
//    or the arena, or longer than 65535: `too_many`.
// Everything is checked before the first byte is written: on error, count is 0 and the
// arena is untouched. Never reads or writes out of bounds; never allocates.
SegmentResult segment_frame(const VnetHdr& h, ByteSpan frame, std::size_t mss_cap,
                            const SegmentArena& out);

// Where the receive side sends frames: the vnet header (kVnetHdrLen bytes) followed by
// the frame, to be written to the TAP in one write().
class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual void write(std::span<const std::uint8_t> vnet_and_frame) = 0;
};

// Receive side: merges in-order TCP segments of a flow into super-frames.
//
// Candidates: untagged Ethernet, TCP over IPv4 without options and not a fragment, or over
// IPv6 with no extension header, IP length equal to the frame's, TCP flags ACK or ACK|PSH,
// payload > 0. A candidate continues the held flow with its key (Ethernet header,
// addresses, ports) if the IPv4 TOS/TTL/DF (IPv6 traffic class, flow label, hop limit),
// TCP ack, window and option bytes are equal, seq is the next expected, payload <= the
// flow's mss (the first segment's payload) and the super-frame stays within super_max.
// A short segment or PSH is appended and ends the flow (emitted at once).
// Any other TCP frame emits the held flow with its key first; a non-TCP frame emits all
// held flows first. Frames of one flow leave in arrival order.
//
// Emission: a one-segment flow, and every frame not held, goes out as is with a vnet
// header of flags = kVnetFlagDataValid when it is TCP/UDP over IPv4/IPv6 (no fragment; one
// VLAN tag allowed), else all zero. A larger flow goes out with IP lengths and the IPv4
// header checksum fixed, the TCP checksum field holding the pseudo-header partial sum,
// the last segment's PSH, and {NEEDS_CSUM, kGsoTcpV4/V6, hdr_len = headers,
// gso_size = mss, csum_start = TCP header offset, csum_offset = 16}.
//
// Bounds: flows_max held flows (when all are busy, the oldest is emitted), super-frames of
// at most min(super_max, 65535) bytes of frame, pass-through frames of at most
// kCoalescerFrameMax bytes (longer ones are dropped and counted: no TAP takes them).
inline constexpr std::size_t kCoalescerFrameMax = 65535;

class TcpCoalescer {
 public:
  // Allocates flows_max buffers of kVnetHdrLen + super_max bytes and one pass-through
  // buffer, once.
  explicit TcpCoalescer(std::size_t flows_max = 8, std::size_t super_max = 65535);

  // A received frame. Its checksums are trusted (the tunnel authenticated it); lengths
  // are still checked. May call sink.write() several times.
  void add(ByteSpan frame, FrameSink& sink);
  // The same, for a frame preceded by kVnetHdrLen bytes of headroom that this call may
  // overwrite: a frame that is written at once then leaves without a copy.
  void add_with_headroom(std::span<std::uint8_t> headroom_and_frame, FrameSink& sink);
  // Emits every held flow. Call at the end of each receive batch.
  void flush(FrameSink& sink);

  std::uint64_t coalesced_frames() const { return coalesced_frames_; }  // segments merged
  std::uint64_t dropped_frames() const { return dropped_frames_; }      // > kCoalescerFrameMax
  std::size_t flows_held() const;

 private:
  struct Flow {
    bool busy = false;
    bool v6 = false;
    std::size_t len = 0;      // frame bytes held, after the vnet header room
    std::size_t tcp_off = 0;  // offset of the TCP header in the frame
    std::size_t hdr_len = 0;  // Ethernet + IP + TCP headers
    std::size_t mss = 0;      // the first segment's payload
    std::uint32_t next_seq = 0;
    std::uint32_t segments = 0;
    std::uint64_t started = 0;  // for evicting the oldest
  };
  struct Parsed;

  void add_impl(ByteSpan frame, std::uint8_t* headroom, FrameSink& sink);
  std::uint8_t* slot(std::size_t i) { return storage_.data() + i * slot_len_; }
  void emit(std::size_t i, FrameSink& sink);
  void start(std::size_t i, const Parsed& p, ByteSpan frame);
  bool continues(std::size_t i, const Parsed& p, ByteSpan frame) const;
  void pass(ByteSpan frame, std::uint8_t* headroom, std::uint8_t flags, FrameSink& sink);

  std::size_t super_max_;
  std::size_t slot_len_;
  std::vector<Flow> flows_;
  std::vector<std::uint8_t> storage_;   // flows_max slots of slot_len_ bytes
  std::vector<std::uint8_t> pass_buf_;  // kVnetHdrLen + kCoalescerFrameMax
  std::uint64_t clock_ = 0;
  std::uint64_t coalesced_frames_ = 0;
  std::uint64_t dropped_frames_ = 0;
};

}  // namespace meshd::dp
