// The underlay UDP socket: non-blocking. One per data-plane worker (dp_worker.hpp
// receives on it); a wildcard IPv6 listen address is dual-stack, and IPv4 peers are then
// reached through v4-mapped addresses.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/result.hpp"
#include "crypto/wire.hpp"

namespace meshd::agent {

inline constexpr int kUdpSocketBufferBytes = 4 << 20;

// Locator <-> socket address for a socket of `family` (an IPv4 locator on an IPv6
// socket becomes v4-mapped).
socklen_t to_sockaddr(const Locator& l, int family, sockaddr_storage& ss);
Locator from_sockaddr(const sockaddr_storage& ss);

// Spreads a SO_REUSEPORT group of `workers` sockets by the lane byte of the transport
// header (crypto/wire.hpp): the kernel hands each datagram to the socket at index
// `lane mod workers`, the index being the order in which the sockets were bound. The
// sender's worker index is the lane, so a flow stays on one worker at both ends (its TAP
// queue follows, see dp_worker.hpp) and different flows use different cores. Handshakes
// (lane byte 0) and datagrams too short to hold a lane go to socket 0. A classic BPF
// program on the group, attached through any member once all are bound.
// Errors: "udp.steer" (the kernel refused the program).
Status attach_lane_steering(int fd, unsigned workers);

class UdpSocket {
 public:
  UdpSocket() = default;
  ~UdpSocket();
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  // Errors: "udp.bind" with the reason (address in use, not local, ...).
  // reuse_port: SO_REUSEPORT, so that every data-plane worker binds its own socket to
  // the same address and the kernel spreads senders across them (the caller checks
  // first that no one else holds the port).
  Status open(const Locator& listen, bool reuse_port = false);
  int fd() const { return fd_; }
  int family() const { return family_; }

  // false if the kernel refused it (buffer full, unreachable); counted.
  bool send_to(const Locator& to, std::span<const std::uint8_t> datagram);

  std::uint64_t tx_errors() const { return tx_errors_; }

 private:
  int fd_ = -1;
  int family_ = AF_INET;
  std::uint64_t tx_errors_ = 0;
};

}  // namespace meshd::agent
