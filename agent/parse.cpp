#include "agent/parse.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>

namespace meshd::agent {

namespace {

bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

}  // namespace

Result<std::uint64_t> parse_ttl_s(std::string_view s) {
  const auto bad = [&] {
    return make_error("cli.ttl", "invalid --ttl " + quoted(s) +
                                     ": use a number with s, m, h or d (e.g. 24h), at most 365d");
  };
  if (s.empty()) return bad();
  std::uint64_t mult = 1;
  switch (s.back()) {
    case 's': mult = 1; s.remove_suffix(1); break;
    case 'm': mult = 60; s.remove_suffix(1); break;
    case 'h': mult = 3600; s.remove_suffix(1); break;
    case 'd': mult = 86400; s.remove_suffix(1); break;
    default: break;
  }
  std::uint64_t n = 0;
  if (!parse_u64(s, n) || n == 0 || n > kTtlMax_s / mult) return bad();
  return n * mult;
}

Result<std::uint32_t> parse_vni(std::string_view s) {
  std::uint64_t n = 0;
  if (!parse_u64(s, n) || n < 1 || n > crypto::kVniMax) {
    return make_error("cli.vni", "invalid VNI " + quoted(s) + ": must be 1..16777215");
  }
  return static_cast<std::uint32_t>(n);
}

Result<std::vector<std::uint32_t>> parse_vni_list(std::string_view s) {
  std::vector<std::uint32_t> out;
  while (true) {
    const auto comma = s.find(',');
    auto v = parse_vni(s.substr(0, comma));
    if (!v) return v.error();
    out.push_back(*v);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  if (out.size() > crypto::kScopeVnisMax) {
    return make_error("cli.vni", "too many VNIs (at most 4096)");
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<Locator> parse_listen(std::string_view s) {
  auto l = Locator::parse(s);
  if (!l || l->port == 0) {
    return make_error("cli.listen", "invalid --listen " + quoted(s) +
                                        ": expected IP:PORT (e.g. 0.0.0.0:51900 or [::]:51900)");
  }
  return l;
}

Result<IpPrefix> parse_cidr(std::string_view s) {
  auto p = IpPrefix::parse(s);
  if (!p) {
    return make_error("cli.ip", "invalid --ip " + quoted(s) + ": expected an address with prefix, e.g. 10.0.0.1/24");
  }
  return p;
}

IpPrefix network_of(IpPrefix p) {
  const std::size_t width_bits = p.addr.is_v4() ? 32 : 128;
  for (std::size_t i = 0; i < p.addr.bytes.size(); ++i) {
    const std::size_t first_bit = i * 8;
    if (first_bit >= width_bits || first_bit >= p.len) {
      p.addr.bytes[i] = 0;
    } else if (first_bit + 8 > p.len) {
      p.addr.bytes[i] &= static_cast<std::uint8_t>(0xff << (first_bit + 8 - p.len));
    }
  }
  return p;
}

Result<IpPrefix> parse_route_prefix(std::string_view s) {
  auto p = IpPrefix::parse(s);
  if (!p) {
    return make_error("cli.prefix", "invalid prefix " + quoted(s) +
                                        ": expected a network such as 192.168.77.0/24 or fd00:77::/64");
  }
  return network_of(*p);
}

Result<IpAddr> parse_via(std::string_view s) {
  auto a = IpAddr::parse(s);
  if (!a) {
    return make_error("cli.via", "invalid --via " + quoted(s) +
                                     ": expected the IP address of an endpoint attached in the VNI, e.g. 10.30.0.254");
  }
  return a;
}

Result<MacAddr> parse_unicast_mac(std::string_view s) {
  auto m = parse_mac(s);
  if (!m) return make_error("cli.mac", "invalid --mac " + quoted(s) + ": expected 6 hex bytes like 02:00:00:00:00:01");
  if ((*m)[0] & 0x01) return make_error("cli.mac", "invalid --mac " + quoted(s) + ": a multicast MAC cannot be an endpoint");
  if (*m == MacAddr{}) return make_error("cli.mac", "invalid --mac " + quoted(s) + ": all-zero MAC");
  return m;
}

Result<std::uint32_t> parse_uses(std::string_view s) {
  std::uint64_t n = 0;
  if (!parse_u64(s, n) || n < 1 || n > kTokenUsesMax) {
    return make_error("cli.uses", "invalid --uses " + quoted(s) + ": must be 1..1000000");
  }
  return static_cast<std::uint32_t>(n);
}

Status check_ifname(std::string_view s) {
  const bool bad_char = std::any_of(s.begin(), s.end(), [](char c) {
    return c == '/' || c == ':' || c <= ' ' || c > '~';
  });
  if (s.empty() || s.size() > kIfnameMax || bad_char || s == "." || s == "..") {
    return make_error("cli.ifname", "invalid --ifname " + quoted(s) + ": 1..15 characters, no '/', ':' or spaces");
  }
  return ok_status();
}

Status check_netns(std::string_view s) {
  const bool bad_char = std::any_of(s.begin(), s.end(), [](char c) { return c == '/' || c <= ' ' || c > '~'; });
  if (s.empty() || s.size() > 255 || bad_char || s == "." || s == "..") {
    return make_error("cli.netns", "invalid --netns " + quoted(s) + ": a name under /run/netns");
  }
  return ok_status();
}

Status check_node_name(std::string_view s) {
  const bool bad_char = std::any_of(s.begin(), s.end(), [](char c) { return c < ' ' || c > '~'; });
  if (s.empty() || s.size() > crypto::kNameMax || bad_char) {
    return make_error("cli.name", "invalid --name " + quoted(s) + ": 1..64 printable characters");
  }
  return ok_status();
}

std::string format_utc(std::uint64_t unix_s) {
  const std::time_t t = static_cast<std::time_t>(unix_s);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

}  // namespace meshd::agent
