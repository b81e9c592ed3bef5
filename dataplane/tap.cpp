#include "dataplane/tap.hpp"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

namespace meshd::dp {

namespace {

constexpr int kVnetHdrLen = 10;  // legacy struct virtio_net_hdr (dataplane/offload.hpp)

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#define TUN_F_USO6 0x40
#endif

std::string errno_str(int err) { return std::strerror(err); }

Error open_error(const std::string& name, int err) {
  if (err == ENOENT || err == ENODEV || err == ENXIO) {
    return Error{"tap.open", "cannot open /dev/net/tun (" + errno_str(err) +
                                 "): the tun driver is missing; load it with "
                                 "'modprobe tun' or give the container /dev/net/tun"};
  }
  if (err == EACCES || err == EPERM) {
    return Error{"tap.open", "cannot open /dev/net/tun (" + errno_str(err) +
                                 "): run meshd as root or with CAP_NET_ADMIN"};
  }
  (void)name;
  return Error{"tap.open", "cannot open /dev/net/tun: " + errno_str(err)};
}

Error setiff_error(const std::string& name, int err) {
  if (err == EBUSY || err == EINVAL) {
    // EINVAL: the name belongs to a device that is not a TAP (or one with other
    // flags); EBUSY: another process holds the TAP.
    return Error{"tap.busy", "cannot create TAP '" + name + "' (" + errno_str(err) +
                                 "): the name is in use by another device or "
                                 "process; delete it or stop the other agent"};
  }
  if (err == EPERM || err == EACCES) {
    return Error{"tap.open", "cannot create TAP '" + name + "' (" + errno_str(err) +
                                 "): run meshd as root or with CAP_NET_ADMIN"};
  }
  return Error{"tap.open", "cannot create TAP '" + name + "': " + errno_str(err)};
}

// One queue: open /dev/net/tun and attach it to `name` with `flags`. -errno on failure.
int open_queue(const std::string& name, short flags) {
  const int fd = ::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -errno;
  ifreq ifr{};
  ifr.ifr_flags = flags;
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  if (::ioctl(fd, TUNSETIFF, &ifr) < 0) {
    const int err = errno;
    ::close(fd);
    return -err;
  }
  return fd;
}

}  // namespace

Result<TapDevice> TapDevice::open(const std::string& name, TapOptions opt) {
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return make_error("tap.open", "TAP name '" + name + "' must be 1.." +
                                      std::to_string(IFNAMSIZ - 1) + " characters");
  }
  if (opt.queues < 1 || opt.queues > kTapQueuesMax) {
    return make_error("tap.queues", "TAP queues must be 1.." + std::to_string(kTapQueuesMax));
  }
  short flags = IFF_TAP | IFF_NO_PI;
  if (opt.queues > 1) flags |= IFF_MULTI_QUEUE;
  bool vnet = opt.offload;
  int first = open_queue(name, static_cast<short>(flags | (vnet ? IFF_VNET_HDR : 0)));
  if (first == -EINVAL && vnet) {
    // A kernel (or an existing device) without vnet headers: run plain.
    vnet = false;
    first = open_queue(name, flags);
  }
  if (first == -EINVAL && opt.queues > 1) {
    return make_error("tap.queues", "cannot open TAP '" + name +
                                        "' with several queues: the kernel refuses "
                                        "IFF_MULTI_QUEUE; run with one data-plane worker");
  }
  if (first < 0) {
    const int err = -first;
    if (err == ENOENT || err == ENODEV || err == ENXIO || err == EACCES || err == EPERM) {
      Error e = open_error(name, err);
      if (err == EPERM || err == EACCES) e = setiff_error(name, err);
      return e;
    }
    return setiff_error(name, err);
  }
  std::vector<int> fds{first};
  unsigned offload = 0;
  if (vnet) {
    int sz = kVnetHdrLen;
    if (::ioctl(first, TUNSETVNETHDRSZ, &sz) < 0) {
      ::close(first);
      return make_error("tap.open", "cannot set the vnet header size on TAP '" + name + "': " +
                                        errno_str(errno));
    }
    // Largest set the kernel accepts: USO needs 6.2+, TSO is old.
    const unsigned tries[] = {TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
                              TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6, TUN_F_CSUM, 0};
    for (unsigned f : tries) {
      if (::ioctl(first, TUNSETOFFLOAD, static_cast<unsigned long>(f)) == 0) {
        offload = f;
        break;
      }
    }
  }
  const short qflags = static_cast<short>(flags | (vnet ? IFF_VNET_HDR : 0));
  for (unsigned q = 1; q < opt.queues; ++q) {
    const int fd = open_queue(name, qflags);
    if (fd < 0) {
      for (int f : fds) ::close(f);
      return make_error("tap.queues", "cannot open queue " + std::to_string(q) + " of TAP '" + name +
                                          "': " + errno_str(-fd));
    }
    fds.push_back(fd);
  }
  return TapDevice(std::move(fds), name, vnet, offload);
}

TapDevice::TapDevice(TapDevice&& o) noexcept
    : fds_(std::move(o.fds_)), name_(std::move(o.name_)), vnet_hdr_(o.vnet_hdr_),
      offload_flags_(o.offload_flags_) {
  o.fds_.clear();
}

TapDevice& TapDevice::operator=(TapDevice&& o) noexcept {
  if (this != &o) {
    close_all();
    fds_ = std::move(o.fds_);
    o.fds_.clear();
    name_ = std::move(o.name_);
    vnet_hdr_ = o.vnet_hdr_;
    offload_flags_ = o.offload_flags_;
  }
  return *this;
}

void TapDevice::close_all() {
  for (int fd : fds_) ::close(fd);
  fds_.clear();
}

TapDevice::~TapDevice() { close_all(); }

long TapDevice::read(std::span<std::uint8_t> buf) const {
  if (!vnet_hdr_) return static_cast<long>(::read(fd(), buf.data(), buf.size()));
  std::array<std::uint8_t, kVnetHdrLen> hdr{};
  iovec iov[2] = {{hdr.data(), hdr.size()}, {buf.data(), buf.size()}};
  const ssize_t n = ::readv(fd(), iov, 2);
  if (n < 0) return -1;
  return n < kVnetHdrLen ? 0 : static_cast<long>(n - kVnetHdrLen);
}

long TapDevice::write(std::span<const std::uint8_t> frame) const {
  if (!vnet_hdr_) return static_cast<long>(::write(fd(), frame.data(), frame.size()));
  std::array<std::uint8_t, kVnetHdrLen> hdr{};
  iovec iov[2] = {{hdr.data(), hdr.size()}, {const_cast<std::uint8_t*>(frame.data()), frame.size()}};
  const ssize_t n = ::writev(fd(), iov, 2);
  if (n < 0) return -1;
  return n < kVnetHdrLen ? 0 : static_cast<long>(n - kVnetHdrLen);
}

}  // namespace meshd::dp
