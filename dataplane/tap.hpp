// A TAP device (IFF_TAP | IFF_NO_PI), non-blocking, with one fd per queue. Closing the
// fds removes the device unless it was made persistent.
//
// Offloads (TapOptions::offload): the device is opened with IFF_VNET_HDR, so every
// frame read or written carries a 10-byte virtio_net_hdr in front (dataplane/offload.hpp),
// and TUNSETOFFLOAD lets the kernel hand over TCP (and UDP) super-frames of up to 64 KiB
// with the checksum left partial. A kernel that refuses a flag set falls back to a
// smaller one (csum + TSO, then csum, then none); without IFF_VNET_HDR support the
// device is plain. Queues (IFF_MULTI_QUEUE) let one worker thread own each fd.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "crypto/result.hpp"

namespace meshd::dp {

inline constexpr unsigned kTapQueuesMax = 8;

struct TapOptions {
  unsigned queues = 1;  // 1..kTapQueuesMax; more than 1 uses IFF_MULTI_QUEUE
  bool offload = false;  // IFF_VNET_HDR + TUNSETOFFLOAD
};

class TapDevice {
 public:
  // Errors: "tap.open" (no /dev/net/tun, not root), "tap.busy" (name in use by a
  // non-TAP device), "tap.queues" (queues out of range). The message says what to do.
  static Result<TapDevice> open(const std::string& name, TapOptions opt = {});
  TapDevice(TapDevice&&) noexcept;
  TapDevice& operator=(TapDevice&&) noexcept;
  TapDevice(const TapDevice&) = delete;
  ~TapDevice();

  int fd() const { return fds_.empty() ? -1 : fds_[0]; }  // queue 0
  int queue_fd(unsigned q) const { return q < fds_.size() ? fds_[q] : -1; }
  unsigned queues() const { return static_cast<unsigned>(fds_.size()); }
  const std::string& name() const { return name_; }
  // Frames carry a virtio_net_hdr (kVnetHdrLen bytes) on this device's fds.
  bool vnet_hdr() const { return vnet_hdr_; }
  // TUN_F_* flags the kernel accepted (0 without offloads).
  unsigned offload_flags() const { return offload_flags_; }

  // Plain-frame I/O on queue 0, for the control thread: read() strips the vnet header
  // (a super-frame read this way is returned as is, without its header); write() adds
  // an all-zero one. -1 with errno EAGAIN when nothing is pending.
  long read(std::span<std::uint8_t> buf) const;
  long write(std::span<const std::uint8_t> frame) const;

 private:
  TapDevice(std::vector<int> fds, std::string name, bool vnet, unsigned offload)
      : fds_(std::move(fds)), name_(std::move(name)), vnet_hdr_(vnet), offload_flags_(offload) {}
  void close_all();
  std::vector<int> fds_;
  std::string name_;
  bool vnet_hdr_ = false;
  unsigned offload_flags_ = 0;
};

}  // namespace meshd::dp
