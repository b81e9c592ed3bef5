// A TAP device (IFF_TAP | IFF_NO_PI), non-blocking. Closing the fd removes the device
// unless it was made persistent.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "crypto/result.hpp"

namespace meshd::dp {

class TapDevice {
 public:
  // Errors: "tap.open" (no /dev/net/tun, not root), "tap.busy" (name in use by a
  // non-TAP device). The message says what to do.
  static Result<TapDevice> open(const std::string& name);
  TapDevice(TapDevice&&) noexcept;
  TapDevice& operator=(TapDevice&&) noexcept;
  TapDevice(const TapDevice&) = delete;
  ~TapDevice();

  int fd() const { return fd_; }
  const std::string& name() const { return name_; }
  // -1 with errno EAGAIN when nothing is pending.
  long read(std::span<std::uint8_t> buf) const;
  long write(std::span<const std::uint8_t> frame) const;

 private:
  TapDevice(int fd, std::string name) : fd_(fd), name_(std::move(name)) {}
  int fd_ = -1;
  std::string name_;
};

}  // namespace meshd::dp
