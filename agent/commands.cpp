// Running a parsed command: the offline ones (init, token create, join enrollment)
// work on the store directly; the rest talk to the running agent.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cstdio>

#include "agent/clock.hpp"
#include "agent/cli.hpp"
#include "agent/control.hpp"
#include "agent/daemon.hpp"
#include "agent/identity.hpp"
#include "agent/os_random.hpp"
#include "agent/output.hpp"
#include "agent/parse.hpp"
#include "crypto/token.hpp"

namespace meshd::agent {

namespace {

using json = nlohmann::json;

int fail(int code, const std::string& msg) {
  std::fprintf(stderr, "meshd: %s\n", msg.c_str());
  return code;
}

bool dir_has_db(const std::string& dir) {
  struct stat st{};
  return ::stat((dir + "/db/data.mdb").c_str(), &st) == 0;
}

void setup_logging() {
  auto logger = spdlog::stderr_color_mt("meshd");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  if (const char* lvl = std::getenv("MESHD_LOG")) spdlog::set_level(spdlog::level::from_str(lvl));
}

Locator listen_or_default(const Command& c) {
  return c.listen ? *c.listen : *Locator::parse(kDefaultListen);
}

int cmd_init(const Command& c) {
  auto store = Store::open(c.state_dir);
  if (!store) return fail(1, store.error().message);
  OsRandom rng;
  InitOptions opt{c.name.empty() ? default_node_name() : c.name, listen_or_default(c)};
  auto id = init_mesh(**store, opt, rng, Clock::unix_s());
  if (!id) return fail(id.error().code == "init.exists" ? 2 : 1, id.error().message);
  std::printf("%s\n", id->c_str());
  return 0;
}

int cmd_token_create(const Command& c) {
  if (!dir_has_db(c.state_dir)) {
    return fail(2, c.state_dir + " holds no meshd node (create one with: meshd init --state " + c.state_dir + ")");
  }
  auto store = Store::open(c.state_dir);
  if (!store) return fail(1, store.error().message);
  OsRandom rng;
  auto text = create_token_text(**store, c.scope, c.ttl_s, c.uses, rng, Clock::unix_s());
  if (!text) {
    const auto& code = text.error().code;
    return fail(code == "token.no_root" || code == "token.not_enrolled" ? 2 : 1, text.error().message);
  }
  std::printf("%s\n", text->c_str());
  return 0;
}

int cmd_join(const Command& c) {
  auto token = crypto::parse_token(c.token);
  if (!token) return fail(2, "invalid token: " + token.error().message);
  const std::uint64_t now_s = Clock::unix_s();
  if (now_s > token->enrollment.not_after_s) {
    return fail(2, "token expired at " + format_utc(token->enrollment.not_after_s));
  }
  if (token->bootstrap.empty()) return fail(2, "invalid token: it names no bootstrap peer");
  DaemonOptions opt;
  opt.state_dir = c.state_dir;
  {
    // Closed before the agent opens it: LMDB allows one environment per process.
    auto store = Store::open(c.state_dir);
    if (!store) return fail(1, store.error().message);
    if ((*store)->node_state() == NodeState::enrolled) {
      return fail(2, c.state_dir + " already holds an enrolled node; run it with: meshd run --state " + c.state_dir);
    }
    if (agent_running(c.state_dir)) return fail(1, "an agent is already running for " + c.state_dir);
    // A node that left (or a join that never completed) starts over with new keys.
    (*store)->clear_identity();
    (*store)->set_node_state(NodeState::none);
  }
  OsRandom rng;
  const std::string listen = listen_or_default(c).str();
  opt.joining_identity =
      enroll_with_token(*token, c.name.empty() ? default_node_name() : c.name, listen, rng, now_s);
  opt.token = std::move(token.value());
  opt.mesh_settings = c.mesh_settings;
  return Daemon::run(std::move(opt));
}

ControlRequest to_request(const Command& c) {
  ControlRequest r;
  switch (c.kind) {
    case CommandKind::attach: r.cmd = ControlCmd::attach; break;
    case CommandKind::detach: r.cmd = ControlCmd::detach; break;
    case CommandKind::route_add: r.cmd = ControlCmd::route_add; break;
    case CommandKind::route_del: r.cmd = ControlCmd::route_del; break;
    case CommandKind::status: r.cmd = ControlCmd::status; break;
    case CommandKind::peers: r.cmd = ControlCmd::peers; break;
    case CommandKind::endpoints: r.cmd = ControlCmd::endpoints; break;
    case CommandKind::routes: r.cmd = ControlCmd::routes; break;
    case CommandKind::leave: r.cmd = ControlCmd::leave; break;
    case CommandKind::revoke: r.cmd = ControlCmd::revoke; break;
    default: break;
  }
  r.vni = c.vni;
  r.netns = c.netns;
  r.ips = c.ips;
  r.mac = c.mac;
  r.ifname = c.ifname;
  r.prefix = c.prefix;
  r.via = c.via;
  return r;
}

std::string describe_attachment(const json& j) {
  std::string ips;
  if (auto it = j.find("ips"); it != j.end() && it->is_array()) {
    for (const auto& v : *it) ips += (ips.empty() ? "" : ",") + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  std::string where;
  if (auto it = j.find("ifname"); it != j.end() && it->is_string()) where = it->get<std::string>();
  if (auto it = j.find("netns"); it != j.end() && it->is_string()) where += " in netns " + it->get<std::string>();
  return j.value("mac", std::string("?")) + " " + ips + " VNI " + std::to_string(j.value("vni", 0u)) +
         (where.empty() ? "" : " (" + where + ")");
}

std::string describe_route(const json& j) {
  return "VNI " + std::to_string(j.value("vni", 0u)) + " " + j.value("prefix", std::string("?"));
}

// "10.30.0.254 (02:..; vni100 in netns gw)"
std::string describe_next_hop(const json& j) {
  std::string ips;
  if (auto it = j.find("next_hop_ips"); it != j.end() && it->is_array()) {
    for (const auto& v : *it) ips += (ips.empty() ? "" : ",") + (v.is_string() ? v.get<std::string>() : v.dump());
  }
  std::string where = j.value("ifname", std::string());
  if (auto it = j.find("netns"); it != j.end() && it->is_string()) where += " in netns " + it->get<std::string>();
  return (ips.empty() ? "" : ips + " ") + "(" + j.value("next_hop_mac", std::string("?")) +
         (where.empty() ? "" : "; " + where) + ")";
}

std::string describe_detach(const json& j) {
  std::string out = "detached " + describe_attachment(j) + "\n";
  if (auto it = j.find("routes_removed"); it != j.end() && it->is_array()) {
    for (const auto& p : *it) {
      out += "removed route VNI " + std::to_string(j.value("vni", 0u)) + " " +
             (p.is_string() ? p.get<std::string>() : p.dump()) + " (its next hop was this endpoint)\n";
    }
  }
  return out;
}

// Exit 1 with the one line every control command prints when no agent answers.
int fail_no_agent(const std::string& state_dir) {
  return fail(1, "no agent running for " + state_dir + " (start it with: meshd run --state " +
                     state_dir + ")");
}

int cmd_control(const Command& c) {
  const auto result = control_call(c.state_dir, encode_control_request(to_request(c)));
  if (result.no_agent) {
    return fail_no_agent(c.state_dir);
  }
  json resp = result.response;
  if (!resp.value("ok", false)) {
    int code = 1;
    if (auto it = resp.find("code"); it != resp.end() && it->is_number_integer()) code = it->get<int>();
    if (code != 2) code = 1;
    std::string msg = "the agent refused the request";
    if (auto it = resp.find("error"); it != resp.end() && it->is_string()) msg = it->get<std::string>();
    return fail(code, msg);
  }
  resp.erase("ok");
  std::string out;
  if (c.json) {
    out = resp.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  } else {
    switch (c.kind) {
      case CommandKind::status: out = format_status(resp); break;
      case CommandKind::peers: out = format_peers(resp); break;
      case CommandKind::endpoints: out = format_endpoints(resp); break;
      case CommandKind::routes: out = format_routes(resp); break;
      case CommandKind::attach: out = "attached " + describe_attachment(resp) + "\n"; break;
      case CommandKind::detach: out = describe_detach(resp); break;
      case CommandKind::route_add:
        out = (resp.value("added", false) ? "added route " + describe_route(resp) + " via "
                                          : "route " + describe_route(resp) + " is already there, via ") +
              describe_next_hop(resp) + "\n";
        break;
      case CommandKind::route_del: out = "deleted route " + describe_route(resp) + "\n"; break;
      case CommandKind::leave: out = "left the mesh\n"; break;
      default: break;
    }
  }
  std::fputs(out.c_str(), stdout);
  return 0;
}

struct RevokeTarget {
  crypto::NodeId id{};
  crypto::TokenId token_id{};  // zero if the node is not a known member
};

// NODE is a 64-hex node id, or a member's name or id prefix (resolved by the agent's
// member list, unambiguously). The member list also gives the node's token id, which
// the revocation carries so the node keeps counting against its token's uses.
Result<RevokeTarget> resolve_node(const Command& c) {
  const auto full_id = crypto::parse_node_id(c.node);
  const auto peers = control_call(c.state_dir, encode_control_request(ControlRequest{ControlCmd::peers}));
  if (peers.no_agent || !peers.response.value("ok", false)) {
    if (full_id) return RevokeTarget{*full_id, {}};
    return make_error("revoke.unknown", "'" + c.node + "' is not a node id (64 hex characters)");
  }
  std::vector<json> found;
  for (const auto& p : peers.response.value("peers", json::array())) {
    const std::string id = p.value("node_id", std::string());
    if (p.value("name", std::string()) == c.node || (c.node.size() >= 8 && id.rfind(c.node, 0) == 0)) {
      found.push_back(p);
    }
  }
  if (found.size() != 1) {
    if (full_id) return RevokeTarget{*full_id, {}};  // not a current member: revoke it anyway
    return make_error("revoke.unknown", found.empty() ? "no member named '" + c.node + "'"
                                                      : "'" + c.node + "' matches several members; give the node id");
  }
  auto id = crypto::parse_node_id(found.front().value("node_id", std::string()));
  if (!id) return id.error();
  RevokeTarget t{*id, {}};
  Bytes tid;
  if (from_hex(found.front().value("token_id", std::string()), tid) && tid.size() == t.token_id.size()) {
    std::copy(tid.begin(), tid.end(), t.token_id.begin());
  }
  return t;
}

int cmd_revoke(const Command& c) {
  auto root = load_root_key(c.state_dir);
  if (!root) return fail(root.error().code == "token.no_root" ? 2 : 1, root.error().message);
  if (!agent_running(c.state_dir)) {
    return fail_no_agent(c.state_dir);
  }
  auto node = resolve_node(c);
  if (!node) return fail(2, node.error().message);
  mesh::Revocation r;
  r.node = node->id;
  r.token_id = node->token_id;
  r.issued_s = Clock::unix_s();
  r.reason = "revoked by the operator";
  r.sign(*root);
  ControlRequest req{ControlCmd::revoke};
  req.revocation = r;
  const auto result = control_call(c.state_dir, encode_control_request(req));
  if (result.no_agent) return fail_no_agent(c.state_dir);
  if (!result.response.value("ok", false)) {
    const int code = result.response.value("code", 1) == 2 ? 2 : 1;
    return fail(code, result.response.value("error", std::string("the agent refused the request")));
  }
  std::printf("revoked %s\n", crypto::node_id_hex(r.node).c_str());
  return 0;
}

}  // namespace

int execute(const Command& c) {
  setup_logging();
  if (auto s = crypto::init(); !s) return fail(1, s.error().message);
  try {
    switch (c.kind) {
      case CommandKind::init: return cmd_init(c);
      case CommandKind::token_create: return cmd_token_create(c);
      case CommandKind::join: return cmd_join(c);
      case CommandKind::run: {
        if (!dir_has_db(c.state_dir)) {
          return fail(2, c.state_dir + " holds no enrolled node (create a mesh with 'meshd init' or join one with 'meshd join')");
        }
        DaemonOptions opt;
        opt.state_dir = c.state_dir;
        opt.mesh_settings = c.mesh_settings;
        return Daemon::run(std::move(opt));
      }
      case CommandKind::revoke: return cmd_revoke(c);
      default: return cmd_control(c);
    }
  } catch (const std::exception& e) {
    // Only the control-path JSON/format code can throw here; never a silent crash.
    return fail(1, std::string("internal error: ") + e.what());
  }
}

}  // namespace meshd::agent
