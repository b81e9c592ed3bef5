#include "crypto/address.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <cstdio>
#include <cstring>

#include "crypto/bytes.hpp"

namespace meshd {

namespace {

// Longest textual forms we accept; anything longer is not an address.
constexpr std::size_t kAddrTextMax = 64;
constexpr std::size_t kLocatorTextMax = 80;

Error addr_error(std::string_view s) {
  return make_error("addr.invalid", "not an IP address: '" + std::string(s.substr(0, kAddrTextMax)) + "'");
}

bool parse_uint(std::string_view s, std::uint32_t max, std::uint32_t& out) {
  if (s.empty() || s.size() > 5) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  std::uint32_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v > max) return false;
  out = v;
  return true;
}

}  // namespace

IpAddr IpAddr::v4(std::uint32_t host_order) {
  IpAddr a;
  a.family = 4;
  a.bytes[0] = static_cast<std::uint8_t>(host_order >> 24);
  a.bytes[1] = static_cast<std::uint8_t>(host_order >> 16);
  a.bytes[2] = static_cast<std::uint8_t>(host_order >> 8);
  a.bytes[3] = static_cast<std::uint8_t>(host_order);
  return a;
}

Result<IpAddr> IpAddr::parse(std::string_view s) {
  if (s.empty() || s.size() > kAddrTextMax) return addr_error(s);
  // inet_pton needs a NUL-terminated string.
  char buf[kAddrTextMax + 1];
  std::memcpy(buf, s.data(), s.size());
  buf[s.size()] = '\0';
  IpAddr a;
  if (s.find(':') != std::string_view::npos) {
    if (inet_pton(AF_INET6, buf, a.bytes.data()) != 1) return addr_error(s);
    a.family = 6;
  } else {
    if (inet_pton(AF_INET, buf, a.bytes.data()) != 1) return addr_error(s);
    a.family = 4;
  }
  return a;
}

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family == 4) {
    inet_ntop(AF_INET, bytes.data(), buf, sizeof buf);
  } else if (family == 6) {
    inet_ntop(AF_INET6, bytes.data(), buf, sizeof buf);
  } else {
    return "unset";
  }
  return buf;
}

Result<IpPrefix> IpPrefix::parse(std::string_view s) {
  std::size_t slash = s.find('/');
  auto addr = IpAddr::parse(s.substr(0, slash));
  if (!addr) return addr.error();
  IpPrefix p;
  p.addr = *addr;
  std::uint32_t max_len = addr->is_v4() ? 32 : 128;
  if (slash == std::string_view::npos) {
    p.len = static_cast<std::uint8_t>(max_len);
    return p;
  }
  std::uint32_t len = 0;
  if (!parse_uint(s.substr(slash + 1), max_len, len)) {
    return make_error("addr.invalid", "bad prefix length in '" + std::string(s.substr(0, kAddrTextMax)) + "'");
  }
  p.len = static_cast<std::uint8_t>(len);
  return p;
}

std::string IpPrefix::str() const {
  std::string out = addr.str();
  out.push_back('/');
  out.append(std::to_string(len));
  return out;
}

Result<Locator> Locator::parse(std::string_view s) {
  auto bad = [&] {
    return make_error("locator.invalid",
                      "not a locator (ip:port or [ipv6]:port): '" + std::string(s.substr(0, kLocatorTextMax)) + "'");
  };
  if (s.empty() || s.size() > kLocatorTextMax) return bad();
  std::string_view host, port;
  if (s.front() == '[') {
    std::size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') return bad();
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
    if (host.find(':') == std::string_view::npos) return bad();  // brackets only for v6
  } else {
    std::size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return bad();
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad();  // v6 needs brackets
  }
  auto ip = IpAddr::parse(host);
  if (!ip) return bad();
  std::uint32_t p = 0;
  if (!parse_uint(port, 65535, p)) return bad();
  Locator l;
  l.ip = *ip;
  l.port = static_cast<std::uint16_t>(p);
  return l;
}

std::string Locator::str() const {
  // Built by appends: GCC 12 at -O2 reports a false -Wrestrict on chained operator+.
  std::string out;
  out.reserve(INET6_ADDRSTRLEN + 8);
  if (ip.is_v6()) out.push_back('[');
  out.append(ip.str());
  if (ip.is_v6()) out.push_back(']');
  out.push_back(':');
  out.append(std::to_string(port));
  return out;
}

Result<MacAddr> parse_mac(std::string_view s) {
  auto bad = [&] { return make_error("mac.invalid", "not a MAC address: '" + std::string(s.substr(0, 32)) + "'"); };
  if (s.size() != 17) return bad();
  MacAddr m{};
  for (std::size_t i = 0; i < 6; ++i) {
    if (i > 0 && s[i * 3 - 1] != ':') return bad();
    Bytes b;
    if (!from_hex(s.substr(i * 3, 2), b)) return bad();
    m[i] = b[0];
  }
  return m;
}

std::string mac_str(const MacAddr& m) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
  return buf;
}

}  // namespace meshd
