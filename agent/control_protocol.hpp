// The control socket protocol: one JSON request per line, one JSON response line.
//   request:  {"cmd":"attach","vni":100,"netns":"t1","ips":["10.0.0.1/24"],"mac":"..","ifname":".."}
//             {"cmd":"route_add","vni":100,"prefix":"192.168.77.0/24","via":"10.30.0.254"}
//             {"cmd":"route_del","vni":100,"prefix":"192.168.77.0/24"}
//   response: {"ok":true, ...}  or  {"ok":false,"code":2,"error":"..."}
// `code` is the exit status the CLI returns (2 bad input, 1 runtime failure).
// Parsing never throws: nlohmann is used in its non-throwing mode with checked
// accessors, and every value is validated as strictly as on the command line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/address.hpp"
#include "crypto/result.hpp"
#include "mesh/types.hpp"

namespace meshd::agent {

inline constexpr std::size_t kControlRequestMaxBytes = 64 * 1024;

enum class ControlCmd { attach, detach, route_add, route_del, status, peers, endpoints, routes, leave, revoke };

struct ControlRequest {
  ControlCmd cmd = ControlCmd::status;
  std::uint32_t vni = 0;
  std::optional<std::string> netns;
  std::vector<IpPrefix> ips;
  std::optional<MacAddr> mac;
  std::optional<std::string> ifname;
  IpPrefix prefix;               // route_add/route_del: normalised (host bits cleared)
  std::optional<IpAddr> via;     // route_add
  std::optional<mesh::Revocation> revocation;  // revoke: signed by the CLI with root.key
};

// Error code "control.bad_request"; the message says what is wrong.
Result<ControlRequest> parse_control_request(std::string_view line);
nlohmann::json encode_control_request(const ControlRequest& r);

nlohmann::json ok_response();
nlohmann::json error_response(int code, const std::string& message);
// A successful response: `j` with "ok": true.
nlohmann::json with_ok(nlohmann::json j);
// One line, never throws (invalid UTF-8 is replaced).
std::string dump_line(const nlohmann::json& j);

}  // namespace meshd::agent
