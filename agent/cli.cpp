#include "agent/cli.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>

#include "agent/mesh_settings.hpp"
#include "agent/parse.hpp"
#include "agent/version.hpp"
#include "crypto/token.hpp"

namespace meshd::agent {

namespace {

constexpr const char* kStateHelp = "state directory of this node";

ParseOutcome bad_input(const std::string& msg) {
  ParseOutcome o;
  o.exit_code = 2;
  o.err = "meshd: " + msg;
  return o;
}

std::string one_line(std::string s) {
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

std::string trim(std::string s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

// Options every subcommand's parsed values land in; validated after CLI11 is done so
// the messages are ours.
struct Raw {
  std::string state, name, listen, ttl = "24h", vni, uses = "1", token, token_file, netns, mac, ifname, node;
  std::string prefix, via;
  std::vector<std::string> ips, sets;
  bool all_vnis = false, json = false;
};

}  // namespace

ParseOutcome parse_command_line(const std::vector<std::string>& args, const EnvLookup& env,
                                const FileReader& read_file) {
  CLI::App app{"meshd: peer-to-peer encrypted overlay network (VXLAN-style L2 segments over WireGuard-style tunnels)", "meshd"};
  app.require_subcommand(1);
  app.set_version_flag("--version", version());
  Raw r;

  auto* init = app.add_subcommand("init", "create a new mesh; prints the mesh id");
  init->add_option("--state", r.state, kStateHelp)->required();
  init->add_option("--name", r.name, "node name (default: host name)");
  init->add_option("--listen", r.listen, "UDP listen address IP:PORT (default 0.0.0.0:51900)");

  auto* token = app.add_subcommand("token", "join tokens");
  token->require_subcommand(1);
  auto* tcreate = token->add_subcommand("create", "print a join token (needs the mesh root key)");
  tcreate->add_option("--state", r.state, kStateHelp)->required();
  tcreate->add_option("--ttl", r.ttl, "validity: 90s, 30m, 24h, 7d (default 24h)");
  auto* vni_opt = tcreate->add_option("--vni", r.vni, "VNIs the new node may use: 100,200");
  auto* all_opt = tcreate->add_flag("--all-vnis", r.all_vnis, "the new node may use every VNI (default)");
  vni_opt->excludes(all_opt);
  tcreate->add_option("--uses", r.uses, "how many nodes may join with it (default 1)");

  auto* join = app.add_subcommand("join", "enroll with a token, then run");
  join->add_option("token", r.token, "join token (or --token-file, or MESHD_TOKEN)");
  join->add_option("--token-file", r.token_file, "read the token from a file");
  join->add_option("--state", r.state, kStateHelp)->required();
  join->add_option("--listen", r.listen, "UDP listen address IP:PORT (default 0.0.0.0:51900)");
  join->add_option("--name", r.name, "node name (default: host name)");
  constexpr const char* kSetHelp =
      "membership tunable NAME=VALUE (repeatable; kept for later runs; NAME=default drops it)";
  const std::string set_footer = "Membership tunables for --set (defaults in the README):\n" + mesh_settings_help();
  join->add_option("--set", r.sets, kSetHelp);
  join->footer(set_footer);

  auto* run = app.add_subcommand("run", "run an enrolled node in the foreground");
  run->add_option("--state", r.state, kStateHelp)->required();
  run->add_option("--set", r.sets, kSetHelp);
  run->footer(set_footer);

  auto* attach = app.add_subcommand("attach", "connect a tenant interface to a VNI");
  attach->add_option("--state", r.state, kStateHelp)->required();
  attach->add_option("--vni", r.vni, "VNI 1..16777215")->required();
  attach->add_option("--netns", r.netns, "tenant network namespace (default: the agent's own)");
  attach->add_option("--ip", r.ips, "address with prefix, e.g. 10.0.0.1/24 (repeatable)")->required();
  attach->add_option("--mac", r.mac, "MAC address (default: generated)");
  attach->add_option("--ifname", r.ifname, "tenant interface name");

  auto* detach = app.add_subcommand("detach", "disconnect a tenant interface");
  detach->add_option("--state", r.state, kStateHelp)->required();
  detach->add_option("--vni", r.vni, "VNI 1..16777215")->required();
  detach->add_option("--netns", r.netns, "tenant network namespace");
  detach->add_option("--ifname", r.ifname, "tenant interface name");

  auto* route = app.add_subcommand("route", "routed prefixes behind a local endpoint (a gateway)");
  route->require_subcommand(1);
  constexpr const char* kPrefixHelp =
      "network, e.g. 192.168.77.0/24 or fd00:77::/64; host bits are cleared (192.168.77.9/24 "
      "means 192.168.77.0/24); a bare address is a host route";
  auto* radd = route->add_subcommand(
      "add", "announce PREFIX in a VNI: tenants' ARP/ND for addresses in it is answered with the "
             "gateway endpoint's MAC");
  radd->add_option("prefix", r.prefix, kPrefixHelp)->required();
  radd->add_option("--state", r.state, kStateHelp)->required();
  radd->add_option("--vni", r.vni, "VNI 1..16777215")->required();
  auto* via_opt = radd->add_option("--via", r.via,
                   "IP address of the local endpoint that forwards (default: the only endpoint "
                   "attached in the VNI)");
  radd->footer(
      "The next hop is an endpoint attached on this node (meshd attach) whose kernel forwards\n"
      "PREFIX. The prefix must not overlap a subnet of this node's endpoints in the VNI.\n"
      "Adding a route that exists is a no-op. Routes are kept across restarts; detaching the\n"
      "next hop endpoint removes them.");
  auto* rdel = route->add_subcommand("del", "withdraw a route this node announces");
  rdel->add_option("prefix", r.prefix, kPrefixHelp)->required();
  rdel->add_option("--state", r.state, kStateHelp)->required();
  rdel->add_option("--vni", r.vni, "VNI 1..16777215")->required();

  std::vector<std::pair<CLI::App*, CommandKind>> views;
  for (auto [name, kind, what] : {std::tuple{"status", CommandKind::status, "this node"},
                                  std::tuple{"peers", CommandKind::peers, "other members and sessions"},
                                  std::tuple{"endpoints", CommandKind::endpoints, "local and remote endpoints"},
                                  std::tuple{"routes", CommandKind::routes, "routed prefixes in this node's VNIs (its own and other members')"}}) {
    auto* s = app.add_subcommand(name, std::string("show ") + what);
    s->add_option("--state", r.state, kStateHelp)->required();
    s->add_flag("--json", r.json, "machine-readable output");
    views.emplace_back(s, kind);
  }
  auto* leave = app.add_subcommand("leave", "leave the mesh and remove this node's devices");
  leave->add_option("--state", r.state, kStateHelp)->required();
  auto* revoke = app.add_subcommand("revoke", "revoke a node (root key holder)");
  revoke->add_option("node", r.node, "node id")->required();
  revoke->add_option("--state", r.state, kStateHelp)->required();

  // CLI11 reports a mistyped subcommand as "a subcommand is required": say what it is.
  if (!args.empty() && !args[0].empty() && args[0][0] != '-') {
    bool known = false;
    for (const auto* sub : app.get_subcommands({})) known = known || sub->get_name() == args[0];
    if (!known) return bad_input("unknown subcommand '" + args[0] + "' (see meshd --help)");
  }
  std::vector<const char*> argv{"meshd"};
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::Success& e) {  // --help, --version
    ParseOutcome o;
    std::ostringstream out, err;
    o.exit_code = app.exit(e, out, err);
    o.out = out.str();
    return o;
  } catch (const CLI::ParseError& e) {
    return bad_input(one_line(e.what()) + " (see meshd --help)");
  }

  Command cmd;
  cmd.state_dir = r.state;
  cmd.json = r.json;
  if (r.state.empty()) return bad_input("--state must not be empty");

  const auto take_listen = [&]() -> std::optional<Error> {
    if (r.listen.empty()) return std::nullopt;
    auto l = parse_listen(r.listen);
    if (!l) return l.error();
    cmd.listen = *l;
    return std::nullopt;
  };
  const auto take_name = [&]() -> std::optional<Error> {
    if (r.name.empty()) return std::nullopt;
    if (auto s = check_node_name(r.name); !s) return s.error();
    cmd.name = r.name;
    return std::nullopt;
  };
  const auto take_place = [&]() -> std::optional<Error> {
    auto v = parse_vni(r.vni);
    if (!v) return v.error();
    cmd.vni = *v;
    if (!r.netns.empty()) {
      if (auto s = check_netns(r.netns); !s) return s.error();
      cmd.netns = r.netns;
    }
    if (!r.ifname.empty()) {
      if (auto s = check_ifname(r.ifname); !s) return s.error();
      cmd.ifname = r.ifname;
    }
    return std::nullopt;
  };

  std::optional<Error> err;
  if (init->parsed()) {
    cmd.kind = CommandKind::init;
    if (!(err = take_listen())) err = take_name();
  } else if (tcreate->parsed()) {
    cmd.kind = CommandKind::token_create;
    auto ttl = parse_ttl_s(r.ttl);
    auto uses = parse_uses(r.uses);
    if (!ttl) {
      err = ttl.error();
    } else if (!uses) {
      err = uses.error();
    } else {
      cmd.ttl_s = *ttl;
      cmd.uses = *uses;
      if (!r.vni.empty()) {
        auto list = parse_vni_list(r.vni);
        if (!list) {
          err = list.error();
        } else {
          cmd.scope.vnis = std::move(*list);
        }
      } else {
        cmd.scope.all_vnis = true;
      }
    }
  } else if (join->parsed()) {
    cmd.kind = CommandKind::join;
    if (!r.token.empty() && !r.token_file.empty()) return bad_input("give the token either as an argument or with --token-file, not both");
    if (!r.token_file.empty()) {
      std::string why;
      auto text = read_file(r.token_file, why);
      if (!text) return bad_input("cannot read token file " + r.token_file + ": " + why);
      cmd.token = trim(*text);
    } else if (!r.token.empty()) {
      cmd.token = trim(r.token);
    } else if (auto e = env("MESHD_TOKEN")) {
      cmd.token = trim(*e);
    }
    if (cmd.token.empty()) return bad_input("no join token given (argument, --token-file or MESHD_TOKEN)");
    if (!(err = take_listen())) err = take_name();
  } else if (run->parsed()) {
    cmd.kind = CommandKind::run;
  } else if (attach->parsed()) {
    cmd.kind = CommandKind::attach;
    err = take_place();
    for (const auto& ip : r.ips) {
      if (err) break;
      auto p = parse_cidr(ip);
      if (!p) {
        err = p.error();
      } else {
        cmd.ips.push_back(*p);
      }
    }
    if (!err && cmd.ips.size() > 16) err = make_error("cli.ip", "too many --ip (at most 16)");
    if (!err && !r.mac.empty()) {
      auto m = parse_unicast_mac(r.mac);
      if (!m) {
        err = m.error();
      } else {
        cmd.mac = *m;
      }
    }
  } else if (detach->parsed()) {
    cmd.kind = CommandKind::detach;
    err = take_place();
  } else if (radd->parsed() || rdel->parsed()) {
    cmd.kind = radd->parsed() ? CommandKind::route_add : CommandKind::route_del;
    auto v = parse_vni(r.vni);
    auto p = parse_route_prefix(r.prefix);
    if (!v) {
      err = v.error();
    } else if (!p) {
      err = p.error();
    } else {
      cmd.vni = *v;
      cmd.prefix = *p;
    }
    if (!err && via_opt->count() > 0) {
      auto via = parse_via(r.via);
      if (!via) {
        err = via.error();
      } else {
        cmd.via = *via;
      }
    }
  } else if (leave->parsed()) {
    cmd.kind = CommandKind::leave;
  } else if (revoke->parsed()) {
    cmd.kind = CommandKind::revoke;
    cmd.node = r.node;
  } else {
    bool found = false;
    for (auto& [s, kind] : views) {
      if (s->parsed()) {
        cmd.kind = kind;
        found = true;
      }
    }
    if (!found) return bad_input("a subcommand is required (see meshd --help)");
  }
  if (err) return bad_input(err->message);
  MeshSettings check;  // validated here so a typo exits 2 before anything starts
  for (const auto& a : r.sets) {
    if (auto st = parse_mesh_setting(a, check); !st) return bad_input(st.error().message);
  }
  cmd.mesh_settings = r.sets;
  ParseOutcome o;
  o.cmd = std::move(cmd);
  return o;
}

int cli_main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const EnvLookup env = [](const std::string& k) -> std::optional<std::string> {
    const char* v = std::getenv(k.c_str());
    return v ? std::optional<std::string>(v) : std::nullopt;
  };
  const FileReader reader = [](const std::string& path, std::string& why) -> std::optional<std::string> {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
      why = "no such file or not readable";
      return std::nullopt;
    }
    std::string s;
    s.resize(crypto::kTokenTextMax + 1);
    f.read(s.data(), static_cast<std::streamsize>(s.size()));
    s.resize(static_cast<std::size_t>(f.gcount()));
    if (s.size() > crypto::kTokenTextMax) {
      why = "file too large for a token";
      return std::nullopt;
    }
    return s;
  };
  ParseOutcome o = parse_command_line(args, env, reader);
  if (!o.out.empty()) std::fputs(o.out.c_str(), stdout);
  if (!o.err.empty()) std::fprintf(stderr, "%s\n", o.err.c_str());
  if (!o.cmd) return o.exit_code;
  return execute(*o.cmd);
}

}  // namespace meshd::agent
