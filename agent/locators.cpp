#include "agent/locators.hpp"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace meshd::agent {

namespace {

bool usable(const IpAddr& ip) {
  if (ip.is_v4()) {
    return ip.bytes[0] != 127 && !(ip.bytes[0] == 169 && ip.bytes[1] == 254) &&
           !(ip.bytes[0] == 0);
  }
  static const std::array<std::uint8_t, 16> loopback{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (ip.bytes == loopback) return false;
  if (ip.bytes[0] == 0xfe && (ip.bytes[1] & 0xc0) == 0x80) return false;  // fe80::/10
  if (ip.bytes[0] == 0xff) return false;
  return true;
}

}  // namespace

bool is_wildcard(const IpAddr& ip) {
  return std::all_of(ip.bytes.begin(), ip.bytes.end(), [](std::uint8_t b) { return b == 0; });
}

std::vector<Locator> advertised_locators(const Locator& listen) {
  if (!is_wildcard(listen.ip)) return {listen};
  const bool want_v6 = listen.ip.is_v6();  // [::] is dual-stack
  std::vector<Locator> v4, v6;
  ifaddrs* ifa = nullptr;
  if (getifaddrs(&ifa) != 0) return {};
  for (ifaddrs* p = ifa; p; p = p->ifa_next) {
    if (!p->ifa_addr || !(p->ifa_flags & IFF_UP)) continue;
    // Our own VNI bridges carry tenant addresses in host mode: never underlay.
    if (p->ifa_name && std::strncmp(p->ifa_name, "vni", 3) == 0) continue;
    Locator l;
    l.port = listen.port;
    if (p->ifa_addr->sa_family == AF_INET) {
      const auto* sin = reinterpret_cast<const sockaddr_in*>(p->ifa_addr);
      l.ip.family = 4;
      std::memcpy(l.ip.bytes.data(), &sin->sin_addr, 4);
      if (usable(l.ip) && std::find(v4.begin(), v4.end(), l) == v4.end()) v4.push_back(l);
    } else if (p->ifa_addr->sa_family == AF_INET6 && want_v6) {
      const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(p->ifa_addr);
      l.ip.family = 6;
      std::memcpy(l.ip.bytes.data(), &sin6->sin6_addr, 16);
      if (usable(l.ip) && std::find(v6.begin(), v6.end(), l) == v6.end()) v6.push_back(l);
    }
  }
  freeifaddrs(ifa);
  std::vector<Locator> out = std::move(v4);
  out.insert(out.end(), v6.begin(), v6.end());
  if (out.size() > kAdvertisedLocatorsMax) out.resize(kAdvertisedLocatorsMax);
  return out;
}

}  // namespace meshd::agent
