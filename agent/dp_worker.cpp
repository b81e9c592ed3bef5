#include "agent/dp_worker.hpp"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "agent/inner_header.hpp"
#include "agent/udp_socket.hpp"
#include "crypto/session.hpp"
#include "dataplane/checksum.hpp"
#include "dataplane/icmp_too_big.hpp"
#include "dataplane/offload.hpp"

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

namespace meshd::agent {

namespace {

constexpr std::size_t kHeadroom = wire::kTransportHeaderLen + wire::kInnerHeaderLen;
constexpr std::size_t kTagLen = wire::kTagLen;
constexpr std::size_t kSuperMax = 65535;                 // largest frame a TAP read returns
constexpr std::size_t kTapBurstMax = 64;                 // TAP reads per wakeup
constexpr std::size_t kSegSlots = 128;                   // segments of one super-frame (+ singles)
constexpr std::size_t kSegStride = 2048;                 // one segment: headroom + frame + tag
constexpr std::size_t kGsoSegmentsMax = 64;              // UDP_MAX_SEGMENTS
constexpr std::size_t kGsoBytesMax = 65535 - 8 - 40;      // one UDP datagram (IPv6 header counted)
constexpr std::size_t kRxMsgs = 8;                       // recvmmsg messages per call (64 KiB each with GRO)
constexpr std::size_t kRxRoundsMax = 8;                  // recvmmsg calls per wakeup
constexpr std::size_t kRxBufLen = 65535;
constexpr std::size_t kRxSegmentsMax = 64;               // datagrams in one GRO message we handle
constexpr std::size_t kCoalesceFlows = 8;
constexpr int kEventsMax = 32;
constexpr int kSendWaitsMax = 8;     // waits for a full socket buffer before dropping
constexpr int kSendWait_ms = 5;
constexpr std::uint64_t kTagUdp = 1ull << 40;
constexpr std::uint64_t kTagWake = 2ull << 40;
constexpr std::chrono::milliseconds kQuiesceMax{1000};

// Completes a partial checksum (virtio NEEDS_CSUM): the field at start+offset holds the
// pseudo-header sum; the checksum covers [start, end). False if the offsets are bad.
bool complete_csum(std::span<std::uint8_t> frame, std::size_t start, std::size_t offset) {
  if (start >= frame.size() || offset + 2 > frame.size() - start) return false;
  std::uint16_t c = dp::ip_checksum(ByteSpan(frame.data() + start, frame.size() - start));
  // UDP sends 0xffff for a computed zero; TCP does not care which zero it is.
  if (c == 0) c = 0xffff;
  frame[start + offset] = static_cast<std::uint8_t>(c >> 8);
  frame[start + offset + 1] = static_cast<std::uint8_t>(c);
  return true;
}

}  // namespace

WorkerCounters& WorkerCounters::operator+=(const WorkerCounters& o) {
  tap_rx_frames += o.tap_rx_frames;
  tap_rx_super += o.tap_rx_super;
  tap_segments += o.tap_segments;
  tap_tx_frames += o.tap_tx_frames;
  tap_tx_super += o.tap_tx_super;
  tap_coalesced += o.tap_coalesced;
  tap_write_errors += o.tap_write_errors;
  tap_drop_gso += o.tap_drop_gso;
  udp_rx_datagrams += o.udp_rx_datagrams;
  udp_rx_gro_batches += o.udp_rx_gro_batches;
  udp_rx_errors += o.udp_rx_errors;
  udp_rx_truncated += o.udp_rx_truncated;
  udp_tx_datagrams += o.udp_tx_datagrams;
  udp_tx_gso_sends += o.udp_tx_gso_sends;
  udp_tx_errors += o.udp_tx_errors;
  udp_tx_waits += o.udp_tx_waits;
  tunnel_rx_bytes += o.tunnel_rx_bytes;
  tunnel_tx_bytes += o.tunnel_tx_bytes;
  drop_decrypt += o.drop_decrypt;
  drop_replay += o.drop_replay;
  drop_inner_header += o.drop_inner_header;
  slow_path += o.slow_path;
  slow_drop_full += o.slow_drop_full;
  icmp_too_big += o.icmp_too_big;
  drop_oversize += o.drop_oversize;
  fwd += o.fwd;
  return *this;
}

// ---------------------------------------------------------------- one worker

class DataPlane::Worker : public dp::FrameSink {
 public:
  Worker(DataPlane& dp, unsigned index, int udp_fd)
      : dp_(dp), index_(index), slot_(index + 1), udp_fd_(udp_fd), fwd_(dp::FloodLimit{0, 0}),
        coalescer_(kCoalesceFlows, kSuperMax) {
    tap_in_.resize(kHeadroom + kSuperMax + kTagLen);
    arena_.resize(kSegSlots * kSegStride);
    seg_lens_.resize(kSegSlots);
    rx_storage_.resize(kRxMsgs * kRxBufLen);
    reply_.resize(std::max<std::size_t>(dp::kIcmpTooBigFrameMax, dp::kReplyFrameMax) + dp::kVnetHdrLen);
  }
  ~Worker() {
    if (epfd_ >= 0) ::close(epfd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  Status open() {
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd_ < 0 || wake_fd_ < 0) return make_error("dp.start", std::string("epoll/eventfd: ") + std::strerror(errno));
    if (!add_fd(wake_fd_, kTagWake) || !add_fd(udp_fd_, kTagUdp)) {
      return make_error("dp.start", std::string("epoll_ctl: ") + std::strerror(errno));
    }
    if (dp_.opt_.offload) {
      const int one = 1;
      // Best effort: without GRO every datagram is its own message.
      ::setsockopt(udp_fd_, IPPROTO_UDP, UDP_GRO, &one, sizeof one);
      gso_ = true;  // tried on the first batch; EIO/EINVAL turns it off
    }
    return ok_status();
  }

  void start() { thread_ = std::thread([this] { run(); }); }
  void stop() {
    stop_.store(true, std::memory_order_release);
    kick();
    if (thread_.joinable()) thread_.join();
  }
  void kick() const {
    const std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }
  bool add_fd(int fd, std::uint64_t tag) const {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    return ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) == 0;
  }
  void del_fd(int fd) const { ::epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr); }
  std::uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }

  WorkerCounters counters() const {
    std::lock_guard lock(stats_mu_);
    return published_;
  }

  // dp::FrameSink: coalesced (or single) frames for the current TAP fd.
  void write(std::span<const std::uint8_t> vnet_and_frame) override {
    if (::write(sink_fd_, vnet_and_frame.data(), vnet_and_frame.size()) < 0) {
      ++c_.tap_write_errors;
      return;
    }
    ++c_.tap_tx_frames;
    const dp::VnetHdr h = dp::read_vnet_hdr(vnet_and_frame.data());
    if (h.gso_type != dp::kGsoNone) ++c_.tap_tx_super;
  }

 private:
  // ---- loop ----

  void run() {
    std::array<epoll_event, kEventsMax> events{};
    while (!stop_.load(std::memory_order_acquire)) {
      // Entering the wait: nothing from earlier iterations (TAP fds) is held.
      epoch_.fetch_add(1, std::memory_order_acq_rel);
      const int n = ::epoll_wait(epfd_, events.data(), kEventsMax, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        spdlog::error("data-plane worker {}: epoll_wait: {}", index_, std::strerror(errno));
        return;
      }
      load_view();
      now_ms_ = dp_.clock_.now_ms();
      for (int i = 0; i < n; ++i) {
        const std::uint64_t tag = events[static_cast<std::size_t>(i)].data.u64;
        if (tag == kTagWake) {
          std::uint64_t v = 0;
          [[maybe_unused]] ssize_t r = ::read(wake_fd_, &v, sizeof v);
        } else if (tag == kTagUdp) {
          rx_udp();
        } else {
          rx_tap(static_cast<std::uint32_t>(tag));
        }
      }
      if (slow_pushed_) {
        slow_pushed_ = false;
        dp_.wake_();
      }
      std::lock_guard lock(stats_mu_);
      published_ = c_;
      published_.fwd = fwd_.counters();
    }
  }

  void load_view() {
    const std::uint64_t v = dp_.view_version_.load(std::memory_order_acquire);
    if (v == view_version_ && view_) return;
    view_ = dp_.view();
    view_version_ = v;
    fwd_.publish(view_->fib);
  }

  const TapRef* tap_of(std::uint32_t vni) const {
    const auto it = view_->taps->find(vni);
    return it == view_->taps->end() ? nullptr : &it->second;
  }

  void slow(SlowItem item) {
    ++c_.slow_path;
    if (!dp_.push_slow(std::move(item))) {
      ++c_.slow_drop_full;
      return;
    }
    slow_pushed_ = true;
  }
  void slow_frame(std::uint32_t vni, ByteSpan frame) {
    SlowItem it;
    it.kind = SlowItem::Kind::tap_frame;
    it.vni = vni;
    it.data.assign(frame.begin(), frame.end());
    slow(std::move(it));
  }

  void slow_plaintext(const crypto::NodeId& peer, ByteSpan plain) {
    SlowItem it;
    it.kind = SlowItem::Kind::plaintext;
    it.peer = peer;
    it.data.assign(plain.begin(), plain.end());
    slow(std::move(it));
  }

  // ---- TAP -> UDP ----

  void rx_tap(std::uint32_t vni) {
    const TapRef* tap = tap_of(vni);
    if (tap == nullptr) return;
    const int fd = tap->fds[index_];
    std::uint8_t* base = tap_in_.data();
    const std::size_t vh = tap->vnet ? dp::kVnetHdrLen : 0;
    // The frame always starts at kHeadroom: the vnet header (if any) sits in the headroom,
    // which the transport and inner headers overwrite later.
    for (std::size_t i = 0; i < kTapBurstMax; ++i) {
      const ssize_t n = ::read(fd, base + kHeadroom - vh, kSuperMax + vh);
      if (n <= 0) break;
      if (static_cast<std::size_t>(n) <= vh) continue;
      ++c_.tap_rx_frames;
      dp::VnetHdr h{};
      if (vh != 0) h = dp::read_vnet_hdr(base + kHeadroom - vh);
      on_tap_frame(vni, *tap, h, static_cast<std::size_t>(n) - vh);
    }
    flush_singles();
  }

  void on_tap_frame(std::uint32_t vni, const TapRef& tap, const dp::VnetHdr& h, std::size_t len) {
    const std::span<std::uint8_t> frame(tap_in_.data() + kHeadroom, len);
    const bool super = h.gso_type != dp::kGsoNone;
    if (super) ++c_.tap_rx_super;
    const std::optional<crypto::NodeId> to = fwd_.unicast_owner(vni, frame);
    const crypto::DataSendEntry* dst = nullptr;
    if (to) {
      const auto it = view_->sessions->send.find(*to);
      if (it != view_->sessions->send.end() && now_ms_ < it->second.expires_ms) dst = &it->second;
    }
    if (super) {
      const std::size_t mss_cap = mss_cap_for(h);
      const dp::SegmentArena arena{arena_, kSegStride, kHeadroom, seg_lens_};
      flush_singles();  // the arena is reused; keeps a flow's frames in order too
      const dp::SegmentResult r = dp::segment_frame(h, frame, mss_cap, arena);
      if (r.error != dp::SegmentError::none || r.count == 0) {
        ++c_.tap_drop_gso;
        return;
      }
      c_.tap_segments += r.count;
      if (dst == nullptr) {
        for (std::size_t i = 0; i < r.count; ++i) slow_frame(vni, ByteSpan(seg(i) + kHeadroom, seg_lens_[i]));
        return;
      }
      send_segments(vni, *dst, r.count);
      return;
    }
    if ((h.flags & dp::kVnetFlagNeedsCsum) && !complete_csum(frame, h.csum_start, h.csum_offset)) {
      ++c_.tap_drop_gso;
      return;
    }
    if (len > dp_.opt_.frame_max) {
      too_big(vni, tap, frame, dst);
      return;
    }
    if (dst == nullptr) {
      // Misses, floods, ARP/ND, no session yet: the control thread decides.
      slow_frame(vni, frame);
      return;
    }
    // A single frame: copied into the next slot so that a burst goes out in one
    // sendmmsg (the read buffer is reused by the next read).
    if (singles_ == kSegSlots || (singles_ > 0 && single_dst_ != dst)) flush_singles();
    std::uint8_t* s = seg(singles_);
    std::memcpy(s + kHeadroom, frame.data(), len);
    const std::size_t dlen = seal(vni, *dst, s, len);
    if (dlen == 0) {
      slow_frame(vni, frame);
      return;
    }
    seg_lens_[singles_] = static_cast<std::uint16_t>(dlen);
    single_dst_ = dst;
    ++singles_;
  }

  std::size_t mss_cap_for(const dp::VnetHdr& h) const {
    const std::size_t fmax = dp_.opt_.frame_max;
    const std::size_t hdr = h.hdr_len > 0 && h.hdr_len < fmax / 2 ? h.hdr_len : 14 + 60 + 60;
    return fmax > hdr ? fmax - hdr : 1;
  }

  std::uint8_t* seg(std::size_t i) { return arena_.data() + i * kSegStride; }

  // Writes the inner header, seals in place; buf holds headroom + frame + room for the
  // tag. Returns the datagram length, 0 if the session refused (exhausted).
  std::size_t seal(std::uint32_t vni, const crypto::DataSendEntry& dst, std::uint8_t* buf, std::size_t len) {
    encode_inner_header(std::span<std::uint8_t>(buf + wire::kTransportHeaderLen, wire::kInnerHeaderLen),
                        InnerHeader{vni, 0});
    return dst.session->seal_in_place(slot_, std::span<std::uint8_t>(buf, kHeadroom + len + kTagLen),
                                      wire::kInnerHeaderLen + len, static_cast<std::uint8_t>(index_));
  }

  void send_segments(std::uint32_t vni, const crypto::DataSendEntry& dst, std::size_t count) {
    std::array<iovec, kGsoSegmentsMax> iov{};
    std::size_t bytes = 0;
    std::size_t sealed = 0;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t dlen = seal(vni, dst, seg(i), seg_lens_[i]);
      if (dlen == 0) {
        // The session is spent: the control thread handshakes and sends the rest.
        for (std::size_t j = i; j < count; ++j) slow_frame(vni, ByteSpan(seg(j) + kHeadroom, seg_lens_[j]));
        break;
      }
      seg_lens_[i] = static_cast<std::uint16_t>(dlen);
      bytes += dlen;
      ++sealed;
    }
    dst.session->note_tx(now_ms_, bytes, true);
    sockaddr_storage ss{};
    const socklen_t sl = to_sockaddr(dst.endpoint, dp_.opt_.udp_family, ss);
    std::size_t i = 0;
    while (i < sealed) {
      // One GSO send: equal-sized datagrams, the last may be shorter.
      // The batch is one UDP datagram to the kernel until it segments it: at most
      // kGsoBytesMax bytes in all.
      const std::size_t size = seg_lens_[i];
      std::size_t n = 0;
      std::size_t total = 0;
      while (i + n < sealed && n < kGsoSegmentsMax && seg_lens_[i + n] == size && total + size <= kGsoBytesMax) {
        iov[n] = iovec{seg(i + n), seg_lens_[i + n]};
        total += size;
        ++n;
      }
      if (i + n < sealed && n < kGsoSegmentsMax && seg_lens_[i + n] < size &&
          total + seg_lens_[i + n] <= kGsoBytesMax) {
        iov[n] = iovec{seg(i + n), seg_lens_[i + n]};
        ++n;
      }
      send_gso(ss, sl, iov.data(), n, size);
      i += n;
    }
  }

  // A full socket buffer is backpressure, not loss: wait (bounded) until it drains, so
  // the TAP's queue fills up instead and the tenant's TCP sees a slower link.
  template <typename F>
  ssize_t send_retry(F&& f) {
    for (int attempt = 0;; ++attempt) {
      const ssize_t r = f();
      if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) || attempt == kSendWaitsMax) return r;
      pollfd p{udp_fd_, POLLOUT, 0};
      ++c_.udp_tx_waits;
      ::poll(&p, 1, kSendWait_ms);
    }
  }

  void send_gso(const sockaddr_storage& ss, socklen_t sl, iovec* iov, std::size_t n, std::size_t size) {
    if (gso_ && n > 1) {
      msghdr msg{};
      msg.msg_name = const_cast<sockaddr_storage*>(&ss);
      msg.msg_namelen = sl;
      msg.msg_iov = iov;
      msg.msg_iovlen = n;
      alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(std::uint16_t))> ctl{};
      msg.msg_control = ctl.data();
      msg.msg_controllen = ctl.size();
      cmsghdr* cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = IPPROTO_UDP;
      cm->cmsg_type = UDP_SEGMENT;
      cm->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
      const auto gs = static_cast<std::uint16_t>(size);
      std::memcpy(CMSG_DATA(cm), &gs, sizeof gs);
      if (send_retry([&] { return ::sendmsg(udp_fd_, &msg, MSG_DONTWAIT); }) >= 0) {
        ++c_.udp_tx_gso_sends;
        c_.udp_tx_datagrams += n;
        for (std::size_t k = 0; k < n; ++k) c_.tunnel_tx_bytes += iov[k].iov_len;
        return;
      }
      if (errno == EIO || errno == EINVAL || errno == ENOPROTOOPT || errno == EOPNOTSUPP) {
        // No UDP GSO on this path (old kernel, a device without checksum offload):
        // from now on one datagram per message.
        spdlog::info("data-plane worker {}: UDP GSO unavailable ({}), sending datagrams singly", index_,
                     std::strerror(errno));
        gso_ = false;
      } else {
        if (c_.udp_tx_errors == 0) spdlog::warn("data-plane worker {}: UDP send: {}", index_, std::strerror(errno));
        c_.udp_tx_errors += n;
        return;
      }
    }
    send_many(ss, sl, iov, n);
  }

  void send_many(const sockaddr_storage& ss, socklen_t sl, iovec* iov, std::size_t n) {
    std::array<mmsghdr, kGsoSegmentsMax> msgs{};
    std::size_t done = 0;
    while (done < n) {
      const std::size_t m = std::min(n - done, kGsoSegmentsMax);
      for (std::size_t k = 0; k < m; ++k) {
        msgs[k] = mmsghdr{};
        msgs[k].msg_hdr.msg_name = const_cast<sockaddr_storage*>(&ss);
        msgs[k].msg_hdr.msg_namelen = sl;
        msgs[k].msg_hdr.msg_iov = &iov[done + k];
        msgs[k].msg_hdr.msg_iovlen = 1;
      }
      const int sent = static_cast<int>(
          send_retry([&] { return ::sendmmsg(udp_fd_, msgs.data(), static_cast<unsigned>(m), MSG_DONTWAIT); }));
      if (sent <= 0) {
        if (c_.udp_tx_errors == 0) spdlog::warn("data-plane worker {}: UDP send: {}", index_, std::strerror(errno));
        c_.udp_tx_errors += n - done;
        return;
      }
      for (int k = 0; k < sent; ++k) c_.tunnel_tx_bytes += iov[done + static_cast<std::size_t>(k)].iov_len;
      c_.udp_tx_datagrams += static_cast<std::size_t>(sent);
      done += static_cast<std::size_t>(sent);
    }
  }

  void flush_singles() {
    if (singles_ == 0) return;
    std::array<iovec, kSegSlots> iov{};
    std::size_t bytes = 0;
    for (std::size_t i = 0; i < singles_; ++i) {
      iov[i] = iovec{seg(i), seg_lens_[i]};
      bytes += seg_lens_[i];
    }
    single_dst_->session->note_tx(now_ms_, bytes, true);
    sockaddr_storage ss{};
    const socklen_t sl = to_sockaddr(single_dst_->endpoint, dp_.opt_.udp_family, ss);
    send_many(ss, sl, iov.data(), singles_);
    singles_ = 0;
    single_dst_ = nullptr;
  }

  // A frame larger than the underlay carries: ICMP "fragmentation needed" / "packet too
  // big" back to the tenant, or (IPv4 without DF) sent as one datagram the underlay
  // fragments.
  void too_big(std::uint32_t vni, const TapRef& tap, std::span<std::uint8_t> frame,
               const crypto::DataSendEntry* dst) {
    switch (dp::classify_oversize(frame, dp_.opt_.frame_max)) {
      case dp::TooBigAction::fits:
        break;
      case dp::TooBigAction::icmp: {
        const std::size_t vh = tap.vnet ? dp::kVnetHdrLen : 0;
        std::fill(reply_.begin(), reply_.begin() + static_cast<std::ptrdiff_t>(vh), 0);
        const std::size_t n = dp::build_icmp_too_big(
            frame, dp::icmp_too_big_mtu(frame, dp_.opt_.frame_max),
            std::span<std::uint8_t>(reply_.data() + vh, reply_.size() - vh));
        if (n == 0) {
          ++c_.drop_oversize;
          return;
        }
        if (::write(tap.fds[index_], reply_.data(), vh + n) < 0) {
          ++c_.tap_write_errors;
        } else {
          ++c_.icmp_too_big;
          ++c_.tap_tx_frames;
        }
        return;
      }
      case dp::TooBigAction::send_anyway:
        break;
      case dp::TooBigAction::drop:
        ++c_.drop_oversize;
        return;
    }
    if (dst == nullptr) {
      slow_frame(vni, frame);
      return;
    }
    flush_singles();
    const std::size_t dlen = seal(vni, *dst, tap_in_.data(), frame.size());
    if (dlen == 0) {
      slow_frame(vni, frame);
      return;
    }
    dst->session->note_tx(now_ms_, dlen, true);
    sockaddr_storage ss{};
    const socklen_t sl = to_sockaddr(dst->endpoint, dp_.opt_.udp_family, ss);
    iovec iov{tap_in_.data(), dlen};
    send_many(ss, sl, &iov, 1);
  }

  // ---- UDP -> TAP ----

  void rx_udp() {
    std::array<mmsghdr, kRxMsgs> msgs{};
    std::array<iovec, kRxMsgs> iov{};
    std::array<sockaddr_storage, kRxMsgs> addrs{};
    alignas(cmsghdr) std::array<std::array<char, CMSG_SPACE(sizeof(int))>, kRxMsgs> ctl{};
    for (std::size_t round = 0; round < kRxRoundsMax; ++round) {
      for (std::size_t i = 0; i < kRxMsgs; ++i) {
        iov[i] = iovec{rx_storage_.data() + i * kRxBufLen, kRxBufLen};
        msgs[i] = mmsghdr{};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &addrs[i];
        msgs[i].msg_hdr.msg_namelen = sizeof addrs[i];
        msgs[i].msg_hdr.msg_control = ctl[i].data();
        msgs[i].msg_hdr.msg_controllen = ctl[i].size();
      }
      const int got = ::recvmmsg(udp_fd_, msgs.data(), kRxMsgs, MSG_DONTWAIT, nullptr);
      if (got <= 0) {
        if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++c_.udp_rx_errors;
        break;
      }
      for (int i = 0; i < got; ++i) {
        const auto k = static_cast<std::size_t>(i);
        if (msgs[k].msg_hdr.msg_flags & MSG_TRUNC) {
          ++c_.udp_rx_truncated;
          continue;
        }
        std::size_t seg_size = msgs[k].msg_len;
        for (cmsghdr* cm = CMSG_FIRSTHDR(&msgs[k].msg_hdr); cm != nullptr; cm = CMSG_NXTHDR(&msgs[k].msg_hdr, cm)) {
          if (cm->cmsg_level == IPPROTO_UDP && cm->cmsg_type == UDP_GRO) {
            int gs = 0;
            std::memcpy(&gs, CMSG_DATA(cm), sizeof gs);
            if (gs > 0) seg_size = static_cast<std::size_t>(gs);
          }
        }
        if (seg_size < msgs[k].msg_len) ++c_.udp_rx_gro_batches;
        on_udp_message(from_sockaddr(addrs[k]),
                       std::span<std::uint8_t>(rx_storage_.data() + k * kRxBufLen, msgs[k].msg_len), seg_size);
      }
      coalescer_.flush(*this);
      if (static_cast<std::size_t>(got) < kRxMsgs) break;
    }
    c_.tap_coalesced = coalescer_.coalesced_frames();
  }

  // One message: `seg_size`-byte datagrams back to back (the last may be shorter).
  void on_udp_message(const Locator& from, std::span<std::uint8_t> msg, std::size_t seg_size) {
    struct Opened {
      std::span<std::uint8_t> plain;
      std::uint64_t counter;
    };
    std::array<Opened, kRxSegmentsMax> opened{};
    std::array<std::uint64_t, kRxSegmentsMax> ctrs{};
    std::array<std::uint8_t, kRxSegmentsMax> ok{};
    std::size_t n = 0;
    const crypto::DataRecvEntry* group = nullptr;
    std::size_t group_bytes = 0;

    auto finish_group = [&] {
      if (group == nullptr || n == 0) {
        n = 0;
        return;
      }
      for (std::size_t i = 0; i < n; ++i) {
        ctrs[i] = opened[i].counter;
        ok[i] = 1;
      }
      group->session->accept_counters(std::span<const std::uint64_t>(ctrs.data(), n), std::span<std::uint8_t>(ok.data(), n));
      bool data = false;
      for (std::size_t i = 0; i < n; ++i) {
        if (!ok[i]) {
          ++c_.drop_replay;
          continue;
        }
        data |= deliver(*group, opened[i].plain);
      }
      group->session->note_rx(now_ms_, group_bytes, data);
      n = 0;
      group_bytes = 0;
    };

    for (std::size_t off = 0; off < msg.size(); off += seg_size) {
      const std::span<std::uint8_t> d = msg.subspan(off, std::min(seg_size, msg.size() - off));
      ++c_.udp_rx_datagrams;
      c_.tunnel_rx_bytes += d.size();
      const auto hdr = crypto::parse_transport_header(d);
      const crypto::DataRecvEntry* e = nullptr;
      if (hdr) {
        const auto it = view_->sessions->recv.find(hdr->receiver_index);
        if (it != view_->sessions->recv.end()) e = &it->second;
      }
      if (e == nullptr || !e->confirmed || !e->endpoint || *e->endpoint != from || now_ms_ >= e->expires_ms) {
        // Handshakes, unknown indices (counted there), a session to confirm, roaming.
        finish_group();
        group = nullptr;
        SlowItem it;
        it.kind = SlowItem::Kind::datagram;
        it.from = from;
        it.data.assign(d.begin(), d.end());
        slow(std::move(it));
        continue;
      }
      if (e != group || n == kRxSegmentsMax) {
        finish_group();
        group = e;
      }
      std::span<std::uint8_t> plain;
      if (!e->session->decrypt_in_place(slot_, d, *hdr, plain)) {
        ++c_.drop_decrypt;
        continue;
      }
      opened[n++] = Opened{plain, hdr->counter};
      group_bytes += d.size();
    }
    finish_group();
  }

  // An authenticated plaintext from the group's peer; true if it carried data.
  bool deliver(const crypto::DataRecvEntry& e, std::span<std::uint8_t> plain) {
    const auto ih = decode_inner_header(plain);
    if (!ih) {
      ++c_.drop_inner_header;
      return false;
    }
    if (ih->flags & wire::kFlagKeepalive) return false;
    const auto chain = view_->chains->find(e.peer);
    if ((ih->flags & wire::kFlagControl) || chain == view_->chains->end()) {
      slow_plaintext(e.peer, plain);
      return true;
    }
    const std::span<std::uint8_t> frame = plain.subspan(wire::kInnerHeaderLen);
    const TapRef* tap = tap_of(ih->vni);
    const dp::TunnelDecision d = fwd_.on_tunnel_frame(e.peer, *chain->second, ih->vni, tap != nullptr, frame);
    if (d.src_unknown) {
      // The sender's endpoint is not resolved yet: the control thread asks the mapping
      // system and the frame waits there.
      SlowItem it;
      it.kind = SlowItem::Kind::plaintext;
      it.peer = e.peer;
      it.data.assign(plain.begin(), plain.end());
      slow(std::move(it));
      return true;
    }
    if (d.kind != dp::TunnelDecision::Kind::deliver || tap == nullptr) return true;
    const int fd = tap->fds[index_];
    if (!tap->vnet) {
      if (::write(fd, frame.data(), frame.size()) < 0) {
        ++c_.tap_write_errors;
      } else {
        ++c_.tap_tx_frames;
      }
      return true;
    }
    if (fd != sink_fd_) {
      coalescer_.flush(*this);
      sink_fd_ = fd;
    }
    coalescer_.add(frame, *this);
    return true;
  }

  DataPlane& dp_;
  const unsigned index_;
  const unsigned slot_;
  const int udp_fd_;
  int epfd_ = -1;
  int wake_fd_ = -1;
  bool gso_ = false;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> epoch_{0};

  std::shared_ptr<const WorkerView> view_;
  std::uint64_t view_version_ = 0;
  std::uint64_t now_ms_ = 0;
  dp::Forwarder fwd_;
  dp::TcpCoalescer coalescer_;
  int sink_fd_ = -1;
  bool slow_pushed_ = false;

  std::vector<std::uint8_t> tap_in_, arena_, rx_storage_, reply_;
  std::vector<std::uint16_t> seg_lens_;
  std::size_t singles_ = 0;
  const crypto::DataSendEntry* single_dst_ = nullptr;

  WorkerCounters c_;
  mutable std::mutex stats_mu_;
  WorkerCounters published_;
};

// ---------------------------------------------------------------- DataPlane

DataPlane::DataPlane(DataPlaneOptions opt, const Clock& clock, std::function<void()> wake)
    : opt_(opt), clock_(clock), wake_(std::move(wake)), view_(std::make_shared<const WorkerView>()) {}

DataPlane::~DataPlane() { stop(); }

Status DataPlane::start(const std::vector<int>& udp_fds) {
  if (udp_fds.empty() || udp_fds.size() > kWorkersMax) return make_error("dp.start", "bad worker count");
  for (unsigned i = 0; i < udp_fds.size(); ++i) {
    auto w = std::make_unique<Worker>(*this, i, udp_fds[i]);
    if (auto s = w->open(); !s) return s;
    workers_.push_back(std::move(w));
  }
  for (auto& w : workers_) w->start();
  started_ = true;
  return ok_status();
}

void DataPlane::stop() {
  if (!started_) return;
  for (auto& w : workers_) w->stop();
  started_ = false;
}

void DataPlane::publish(std::shared_ptr<const WorkerView> view) {
  {
    std::lock_guard lock(view_mu_);
    view_ = std::move(view);
  }
  view_version_.fetch_add(1, std::memory_order_acq_rel);
}

std::shared_ptr<const WorkerView> DataPlane::view() const {
  std::lock_guard lock(view_mu_);
  return view_;
}

void DataPlane::add_tap(std::uint32_t vni, const dp::TapDevice& tap) {
  for (unsigned i = 0; i < workers_.size(); ++i) {
    const int fd = tap.queue_fd(i);
    if (fd >= 0 && !workers_[i]->add_fd(fd, vni)) {
      spdlog::warn("data-plane worker {}: cannot watch {}: {}", i, tap.name(), std::strerror(errno));
    }
  }
}

void DataPlane::remove_tap(const dp::TapDevice& tap) {
  std::vector<std::uint64_t> epochs;
  for (unsigned i = 0; i < workers_.size(); ++i) {
    const int fd = tap.queue_fd(i);
    if (fd >= 0) workers_[i]->del_fd(fd);
    epochs.push_back(workers_[i]->epoch());
    workers_[i]->kick();
  }
  if (!started_) return;
  // Each worker must come back to its wait once: then it has reloaded the view (which
  // no longer names the TAP) and holds none of its fds.
  const auto deadline = std::chrono::steady_clock::now() + kQuiesceMax;
  for (unsigned i = 0; i < workers_.size(); ++i) {
    while (workers_[i]->epoch() <= epochs[i] && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }
}

bool DataPlane::push_slow(SlowItem item) {
  std::lock_guard lock(slow_mu_);
  if (slow_.size() >= kSlowQueueMax) return false;
  slow_.push_back(std::move(item));
  return true;
}

void DataPlane::take_slow(std::vector<SlowItem>& out) {
  std::lock_guard lock(slow_mu_);
  for (auto& s : slow_) out.push_back(std::move(s));
  slow_.clear();
}

WorkerCounters DataPlane::counters() const {
  WorkerCounters sum;
  for (const auto& w : workers_) sum += w->counters();
  return sum;
}

std::vector<WorkerCounters> DataPlane::worker_counters() const {
  std::vector<WorkerCounters> out;
  for (const auto& w : workers_) out.push_back(w->counters());
  return out;
}

}  // namespace meshd::agent
