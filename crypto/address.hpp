// Underlay and tenant IP addresses, and underlay locators (IP + UDP port).
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "crypto/result.hpp"

namespace meshd {

struct IpAddr {
  std::uint8_t family = 0;  // 4 or 6; 0 = unset
  std::array<std::uint8_t, 16> bytes{};  // v4 uses the first 4 bytes

  bool is_v4() const { return family == 4; }
  bool is_v6() const { return family == 6; }
  static IpAddr v4(std::uint32_t host_order);
  // "10.0.0.1" or "fd00::1". Error code "addr.invalid".
  static Result<IpAddr> parse(std::string_view s);
  std::string str() const;
  auto operator<=>(const IpAddr&) const = default;
};

// Address with prefix length: "10.0.0.1/24".
struct IpPrefix {
  IpAddr addr;
  std::uint8_t len = 0;
  // Accepts "ip/len"; without "/len" uses 32 or 128. Error code "addr.invalid".
  static Result<IpPrefix> parse(std::string_view s);
  std::string str() const;
  auto operator<=>(const IpPrefix&) const = default;
};

struct Locator {
  IpAddr ip;
  std::uint16_t port = 0;
  // "1.2.3.4:51900" or "[fd00::1]:51900". Error code "locator.invalid".
  static Result<Locator> parse(std::string_view s);
  std::string str() const;
  auto operator<=>(const Locator&) const = default;
};

using MacAddr = std::array<std::uint8_t, 6>;
// "02:00:00:00:00:01". Error code "mac.invalid".
Result<MacAddr> parse_mac(std::string_view s);
std::string mac_str(const MacAddr& m);

}  // namespace meshd
