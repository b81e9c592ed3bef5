#include "agent/udp_socket.hpp"

#include <fcntl.h>
#include <linux/filter.h>
#include <unistd.h>

#include <algorithm>
#include <array>

#include <cerrno>
#include <cstring>

#include "agent/locators.hpp"

namespace meshd::agent {

socklen_t to_sockaddr(const Locator& l, int family, sockaddr_storage& ss) {
  std::memset(&ss, 0, sizeof ss);
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(l.port);
    std::memcpy(&sin->sin_addr, l.ip.bytes.data(), 4);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(l.port);
  if (l.ip.is_v4()) {  // v4-mapped on a dual-stack socket
    sin6->sin6_addr.s6_addr[10] = 0xff;
    sin6->sin6_addr.s6_addr[11] = 0xff;
    std::memcpy(&sin6->sin6_addr.s6_addr[12], l.ip.bytes.data(), 4);
  } else {
    std::memcpy(&sin6->sin6_addr, l.ip.bytes.data(), 16);
  }
  return sizeof(sockaddr_in6);
}

Locator from_sockaddr(const sockaddr_storage& ss) {
  Locator l;
  if (ss.ss_family == AF_INET) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(&ss);
    l.ip.family = 4;
    std::memcpy(l.ip.bytes.data(), &sin->sin_addr, 4);
    l.port = ntohs(sin->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    l.port = ntohs(sin6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
      l.ip.family = 4;
      std::memcpy(l.ip.bytes.data(), &sin6->sin6_addr.s6_addr[12], 4);
    } else {
      l.ip.family = 6;
      std::memcpy(l.ip.bytes.data(), &sin6->sin6_addr, 16);
    }
  }
  return l;
}

Status attach_lane_steering(int fd, unsigned workers) {
  if (workers < 2) return ok_status();
  // Offsets count from the UDP payload. An out-of-range load ends the program with 0.
  std::array<sock_filter, 3> code{{
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, static_cast<std::uint32_t>(wire::kLaneOffset)),
      BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, workers),
      BPF_STMT(BPF_RET | BPF_A, 0),
  }};
  sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
  if (::setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) != 0) {
    return make_error("udp.steer", std::string("cannot steer datagrams to workers: ") + std::strerror(errno));
  }
  return ok_status();
}

UdpSocket::~UdpSocket() {
  if (fd_ >= 0) ::close(fd_);
}

Status UdpSocket::open(const Locator& listen, bool reuse_port) {
  family_ = listen.ip.is_v4() ? AF_INET : AF_INET6;
  fd_ = ::socket(family_, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) return make_error("udp.bind", std::string("cannot create UDP socket: ") + std::strerror(errno));
  if (family_ == AF_INET6) {
    const int v6only = is_wildcard(listen.ip) ? 0 : 1;
    setsockopt(fd_, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
  }
  if (reuse_port) {
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  }
  // Best effort: larger buffers absorb bursts between loop iterations.
  // With CAP_NET_ADMIN the FORCE variants pass net.core.[rw]mem_max (208 KiB by default,
  // a few GSO batches); without it the plain ones are capped there.
  int sz = kUdpSocketBufferBytes;
  if (setsockopt(fd_, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz) != 0) {
    setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
  }
  if (setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &sz, sizeof sz) != 0) {
    setsockopt(fd_, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
  }
  sockaddr_storage ss{};
  const socklen_t len = to_sockaddr(listen, family_, ss);
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    const int e = errno;
    ::close(fd_);
    fd_ = -1;
    std::string hint = e == EADDRINUSE ? " (another process uses this port; pick one with --listen)"
                       : e == EADDRNOTAVAIL ? " (the address is not on this host)"
                                            : "";
    return make_error("udp.bind", "cannot listen on " + listen.str() + ": " + std::strerror(e) + hint);
  }
  return ok_status();
}

bool UdpSocket::send_to(const Locator& to, std::span<const std::uint8_t> datagram) {
  if (family_ == AF_INET && !to.ip.is_v4()) {
    ++tx_errors_;  // an IPv4 socket cannot reach an IPv6 locator
    return false;
  }
  sockaddr_storage ss{};
  const socklen_t len = to_sockaddr(to, family_, ss);
  const ssize_t n = ::sendto(fd_, datagram.data(), datagram.size(), MSG_DONTWAIT,
                             reinterpret_cast<const sockaddr*>(&ss), len);
  if (n < 0) {
    ++tx_errors_;
    return false;
  }
  return true;
}

}  // namespace meshd::agent
