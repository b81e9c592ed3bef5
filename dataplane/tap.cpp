#include "dataplane/tap.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace meshd::dp {

namespace {

std::string errno_str(int err) { return std::strerror(err); }

}  // namespace

Result<TapDevice> TapDevice::open(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return make_error("tap.open", "TAP name '" + name + "' must be 1.." +
                                      std::to_string(IFNAMSIZ - 1) + " characters");
  }
  const int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO) {
      return make_error("tap.open", "cannot open /dev/net/tun (" + errno_str(err) +
                                        "): the tun driver is missing; load it with "
                                        "'modprobe tun' or give the container /dev/net/tun");
    }
    if (err == EACCES || err == EPERM) {
      return make_error("tap.open", "cannot open /dev/net/tun (" + errno_str(err) +
                                        "): run meshd as root or with CAP_NET_ADMIN");
    }
    return make_error("tap.open", "cannot open /dev/net/tun: " + errno_str(err));
  }
  ifreq ifr{};
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
    const int err = errno;
    ::close(fd);
    if (err == EBUSY || err == EINVAL) {
      // EINVAL: the name belongs to a device that is not a TAP; EBUSY: another process
      // holds the TAP.
      return make_error("tap.busy", "cannot create TAP '" + name + "' (" + errno_str(err) +
                                        "): the name is in use by another device or "
                                        "process; delete it or stop the other agent");
    }
    if (err == EPERM || err == EACCES) {
      return make_error("tap.open", "cannot create TAP '" + name + "' (" + errno_str(err) +
                                        "): run meshd as root or with CAP_NET_ADMIN");
    }
    return make_error("tap.open", "cannot create TAP '" + name + "': " + errno_str(err));
  }
  return TapDevice(fd, name);
}

TapDevice::TapDevice(TapDevice&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), name_(std::move(o.name_)) {}

TapDevice& TapDevice::operator=(TapDevice&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    name_ = std::move(o.name_);
  }
  return *this;
}

TapDevice::~TapDevice() {
  if (fd_ >= 0) ::close(fd_);
}

long TapDevice::read(std::span<std::uint8_t> buf) const {
  return static_cast<long>(::read(fd_, buf.data(), buf.size()));
}

long TapDevice::write(std::span<const std::uint8_t> frame) const {
  return static_cast<long>(::write(fd_, frame.data(), frame.size()));
}

}  // namespace meshd::dp
