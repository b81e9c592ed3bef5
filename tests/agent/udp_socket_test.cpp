// Real UDP sockets on loopback: the lane steering of a SO_REUSEPORT group.
#include <doctest/doctest.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <vector>

#include "agent/udp_socket.hpp"
#include "crypto/session.hpp"

using namespace meshd;
using namespace meshd::agent;

namespace {

// A loopback port that nobody holds right now.
std::uint16_t free_port() {
  UdpSocket probe;
  REQUIRE(probe.open(*Locator::parse("127.0.0.1:0")));
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  REQUIRE(::getsockname(probe.fd(), reinterpret_cast<sockaddr*>(&ss), &len) == 0);
  return from_sockaddr(ss).port;
}

// Which of `socks` has a datagram waiting (-1: none within 1 s, -2: more than one).
int who_got(const std::vector<std::unique_ptr<UdpSocket>>& socks) {
  std::vector<pollfd> p;
  for (const auto& s : socks) p.push_back(pollfd{s->fd(), POLLIN, 0});
  if (::poll(p.data(), p.size(), 1000) <= 0) return -1;
  int got = -1;
  for (std::size_t i = 0; i < p.size(); ++i) {
    if (!(p[i].revents & POLLIN)) continue;
    if (got != -1) return -2;
    got = static_cast<int>(i);
    std::array<std::uint8_t, 2048> buf{};
    REQUIRE(::recv(p[i].fd, buf.data(), buf.size(), 0) >= 0);
  }
  return got;
}

}  // namespace

TEST_CASE("lane steering: a datagram reaches the worker socket its lane names, mod the workers") {
  for (unsigned workers : {2u, 3u}) {
    CAPTURE(workers);
    const Locator at = *Locator::parse("127.0.0.1:" + std::to_string(free_port()));
    std::vector<std::unique_ptr<UdpSocket>> socks;
    for (unsigned i = 0; i < workers; ++i) {
      socks.push_back(std::make_unique<UdpSocket>());
      REQUIRE(socks.back()->open(at, true));
    }
    REQUIRE(attach_lane_steering(socks[0]->fd(), workers));
    UdpSocket client;
    REQUIRE(client.open(*Locator::parse("127.0.0.1:0")));

    std::array<std::uint8_t, wire::kTransportHeaderLen + wire::kTagLen + 10> d{};
    for (unsigned lane = 0; lane < 12; ++lane) {
      CAPTURE(lane);
      crypto::write_transport_header(d.data(), 7, lane, static_cast<std::uint8_t>(lane));
      REQUIRE(crypto::parse_transport_header(d)->lane == lane);
      REQUIRE(client.send_to(at, d));
      CHECK(who_got(socks) == static_cast<int>(lane % workers));
    }
    // Lane 255 and a handshake's zero byte; a datagram too short to hold a lane goes to 0.
    crypto::write_transport_header(d.data(), 7, 99, 255);
    REQUIRE(client.send_to(at, d));
    CHECK(who_got(socks) == static_cast<int>(255 % workers));
    const std::array<std::uint8_t, 1> tiny{1};
    REQUIRE(client.send_to(at, tiny));
    CHECK(who_got(socks) == 0);
  }
}

TEST_CASE("lane steering: one socket needs none; a socket outside a reuseport group is refused") {
  UdpSocket one;
  REQUIRE(one.open(*Locator::parse("127.0.0.1:0")));
  CHECK(attach_lane_steering(one.fd(), 1));
  const auto r = attach_lane_steering(one.fd(), 2);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == "udp.steer");
}

TEST_CASE("transport header: the lane is carried; the two reserved bytes must stay zero") {
  std::array<std::uint8_t, wire::kTransportHeaderLen + wire::kTagLen> d{};
  crypto::write_transport_header(d.data(), 0x01020304, 42, 5);
  auto h = crypto::parse_transport_header(d);
  REQUIRE(h);
  CHECK(h->lane == 5);
  CHECK(h->receiver_index == 0x01020304);
  CHECK(h->counter == 42);
  for (std::size_t i : {std::size_t{2}, std::size_t{3}}) {
    auto bad = d;
    bad[i] = 1;
    CHECK_FALSE(crypto::parse_transport_header(bad));
  }
}
