#include "agent/control_protocol.hpp"

#include "agent/parse.hpp"

#include <algorithm>

#include "crypto/keys.hpp"

namespace meshd::agent {

namespace {

using json = nlohmann::json;

constexpr std::size_t kIpsMax = 16;  // mesh::kEndpointIpsMax

struct CmdName {
  const char* name;
  ControlCmd cmd;
};
constexpr CmdName kCmds[] = {
    {"attach", ControlCmd::attach}, {"detach", ControlCmd::detach},
    {"route_add", ControlCmd::route_add}, {"route_del", ControlCmd::route_del}, {"status", ControlCmd::status},
    {"peers", ControlCmd::peers},   {"endpoints", ControlCmd::endpoints},
    {"routes", ControlCmd::routes}, {"leave", ControlCmd::leave},   {"revoke", ControlCmd::revoke},
};

Error bad(std::string msg) { return make_error("control.bad_request", std::move(msg)); }

// nullptr if absent; sets `err` if present with the wrong type.
const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::optional<std::string> opt_string(const json& obj, const char* key, std::optional<Error>& err) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) {
    err = bad(std::string("field '") + key + "' must be a string");
    return std::nullopt;
  }
  return v->get_ref<const std::string&>();
}

}  // namespace

Result<ControlRequest> parse_control_request(std::string_view line) {
  if (line.size() > kControlRequestMaxBytes) return bad("request too large");
  const json j = json::parse(line.begin(), line.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("request is not a JSON object");
  const json* cmd = field(j, "cmd");
  if (!cmd || !cmd->is_string()) return bad("missing 'cmd'");
  ControlRequest r;
  bool found = false;
  for (const auto& c : kCmds) {
    if (cmd->get_ref<const std::string&>() == c.name) {
      r.cmd = c.cmd;
      found = true;
    }
  }
  if (!found) return bad("unknown command '" + cmd->get_ref<const std::string&>() + "'");

  std::optional<Error> err;
  const bool is_route = r.cmd == ControlCmd::route_add || r.cmd == ControlCmd::route_del;
  if (r.cmd == ControlCmd::attach || r.cmd == ControlCmd::detach || is_route) {
    const json* vni = field(j, "vni");
    if (!vni || !vni->is_number_unsigned()) return bad("'vni' must be a number 1..16777215");
    const auto v = vni->get<std::uint64_t>();
    if (v < 1 || v > 0xFFFFFF) return bad("invalid VNI " + std::to_string(v) + ": must be 1..16777215");
    r.vni = static_cast<std::uint32_t>(v);
  }
  if (is_route) {
    auto prefix = opt_string(j, "prefix", err);
    auto via = opt_string(j, "via", err);
    if (err) return *err;
    if (!prefix) return bad("'prefix' must be a string like 192.168.77.0/24");
    auto p = parse_route_prefix(*prefix);
    if (!p) return bad(p.error().message);
    r.prefix = *p;
    if (via) {
      if (r.cmd != ControlCmd::route_add) return bad("'via' is only for route_add");
      auto a = parse_via(*via);
      if (!a) return bad(a.error().message);
      r.via = *a;
    }
  }
  if (r.cmd == ControlCmd::attach || r.cmd == ControlCmd::detach) {
    r.netns = opt_string(j, "netns", err);
    r.ifname = opt_string(j, "ifname", err);
    if (err) return *err;
    if (r.netns) {
      if (auto s = check_netns(*r.netns); !s) return bad(s.error().message);
    }
    if (r.ifname) {
      if (auto s = check_ifname(*r.ifname); !s) return bad(s.error().message);
    }
  }
  if (r.cmd == ControlCmd::attach) {
    const json* ips = field(j, "ips");
    if (!ips || !ips->is_array() || ips->empty()) return bad("'ips' must be a non-empty list");
    if (ips->size() > kIpsMax) return bad("too many addresses (at most 16)");
    for (const auto& ip : *ips) {
      if (!ip.is_string()) return bad("'ips' must hold strings");
      auto p = parse_cidr(ip.get_ref<const std::string&>());
      if (!p) return bad(p.error().message);
      r.ips.push_back(*p);
    }
    auto mac = opt_string(j, "mac", err);
    if (err) return *err;
    if (mac) {
      auto m = parse_unicast_mac(*mac);
      if (!m) return bad(m.error().message);
      r.mac = *m;
    }
  }
  if (r.cmd == ControlCmd::revoke) {
    auto node = opt_string(j, "node", err);
    auto reason = opt_string(j, "reason", err);
    auto sig = opt_string(j, "sig", err);
    auto token_id = opt_string(j, "token_id", err);
    if (err) return *err;
    const json* issued = field(j, "issued_s");
    if (!node || !sig || !issued || !issued->is_number_unsigned()) {
      return bad("revoke needs 'node', 'issued_s' and 'sig'");
    }
    auto id = crypto::parse_node_id(*node);
    Bytes sig_bytes;
    if (!id) return bad("'node' must be 64 hex characters");
    if (!from_hex(*sig, sig_bytes) || sig_bytes.size() != 64) return bad("'sig' must be 128 hex characters");
    if (reason && reason->size() > mesh::kRevocationReasonMax) return bad("'reason' too long");
    mesh::Revocation rev;
    if (token_id) {
      Bytes tid;
      if (!from_hex(*token_id, tid) || tid.size() != rev.token_id.size()) {
        return bad("'token_id' must be 32 hex characters");
      }
      std::copy(tid.begin(), tid.end(), rev.token_id.begin());
    }
    rev.node = *id;
    rev.issued_s = issued->get<std::uint64_t>();
    rev.reason = reason.value_or("");
    std::copy(sig_bytes.begin(), sig_bytes.end(), rev.sig.begin());
    r.revocation = std::move(rev);
  }
  return r;
}

nlohmann::json encode_control_request(const ControlRequest& r) {
  json j = json::object();
  for (const auto& c : kCmds) {
    if (c.cmd == r.cmd) j["cmd"] = c.name;
  }
  if (r.cmd == ControlCmd::attach || r.cmd == ControlCmd::detach) {
    j["vni"] = r.vni;
    if (r.netns) j["netns"] = *r.netns;
    if (r.ifname) j["ifname"] = *r.ifname;
  }
  if (r.cmd == ControlCmd::route_add || r.cmd == ControlCmd::route_del) {
    j["vni"] = r.vni;
    j["prefix"] = r.prefix.str();
    if (r.via) j["via"] = r.via->str();
  }
  if (r.cmd == ControlCmd::attach) {
    json ips = json::array();
    for (const auto& p : r.ips) ips.push_back(p.str());
    j["ips"] = std::move(ips);
    if (r.mac) j["mac"] = mac_str(*r.mac);
  }
  if (r.cmd == ControlCmd::revoke && r.revocation) {
    j["node"] = crypto::node_id_hex(r.revocation->node);
    j["token_id"] = to_hex(r.revocation->token_id);
    j["issued_s"] = r.revocation->issued_s;
    j["reason"] = r.revocation->reason;
    j["sig"] = to_hex(r.revocation->sig);
  }
  return j;
}

nlohmann::json ok_response() { return json{{"ok", true}}; }

nlohmann::json error_response(int code, const std::string& message) {
  return json{{"ok", false}, {"code", code}, {"error", message}};
}

nlohmann::json with_ok(nlohmann::json j) {
  j["ok"] = true;
  return j;
}

std::string dump_line(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

}  // namespace meshd::agent
