// Validation of command-line values. Each returns the value or an error whose
// message is the one line the user sees after "meshd: ".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/cert.hpp"
#include "crypto/result.hpp"

namespace meshd::agent {

inline constexpr std::uint64_t kTtlMax_s = 365ull * 24 * 3600;
inline constexpr std::uint32_t kTokenUsesMax = 1'000'000;
inline constexpr std::size_t kIfnameMax = 15;  // IFNAMSIZ - 1

// "90", "90s", "30m", "24h", "7d"; 1 s .. 365 d.
Result<std::uint64_t> parse_ttl_s(std::string_view s);
// 1 .. 16777215.
Result<std::uint32_t> parse_vni(std::string_view s);
// "100,200" -> sorted unique list.
Result<std::vector<std::uint32_t>> parse_vni_list(std::string_view s);
// "IP:PORT" or "[v6]:PORT".
Result<Locator> parse_listen(std::string_view s);
// "10.0.0.1/24" (a bare address means /32 or /128).
Result<IpPrefix> parse_cidr(std::string_view s);
// A routed prefix "192.168.77.0/24" or "fd00:77::/64" (a bare address is a host route),
// normalised: host bits are cleared, so "192.168.77.9/24" gives 192.168.77.0/24.
Result<IpPrefix> parse_route_prefix(std::string_view s);
// `p` with its host bits cleared (the network it names).
IpPrefix network_of(IpPrefix p);
// An address without prefix length (route --via).
Result<IpAddr> parse_via(std::string_view s);
// Unicast MAC "02:00:00:00:00:01".
Result<MacAddr> parse_unicast_mac(std::string_view s);
Result<std::uint32_t> parse_uses(std::string_view s);
// Linux interface name rules: 1..15 bytes, no '/', ':' or whitespace.
Status check_ifname(std::string_view s);
// A name under /run/netns.
Status check_netns(std::string_view s);
// Printable, 1..kNameMax bytes.
Status check_node_name(std::string_view s);

// "2026-11-21 10:00:00 UTC"
std::string format_utc(std::uint64_t unix_s);

}  // namespace meshd::agent
