// The command line (DESIGN.md, "Command line"). Parsing is separate from running so
// tests can check every exit code and message without starting an agent.
//
// Exit status: 0 ok, 2 bad input (one line on stderr starting "meshd: "), 1 runtime
// failure.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "crypto/address.hpp"
#include "crypto/cert.hpp"

namespace meshd::agent {

enum class CommandKind {
  init, token_create, join, run, attach, detach, route_add, route_del,
  status, peers, endpoints, routes, leave, revoke
};

struct Command {
  CommandKind kind = CommandKind::status;
  std::string state_dir;
  std::string name;                // init/join; empty = host name
  std::optional<Locator> listen;   // init/join; nullopt = default
  std::uint64_t ttl_s = 24 * 3600;
  crypto::Scope scope;             // token create; default all VNIs
  std::uint32_t uses = 1;
  std::string token;               // join
  std::uint32_t vni = 0;
  std::optional<std::string> netns;
  std::vector<IpPrefix> ips;
  std::optional<MacAddr> mac;
  std::optional<std::string> ifname;
  IpPrefix prefix;                 // route add/del: normalised (host bits cleared)
  std::optional<IpAddr> via;       // route add: the next hop endpoint's address
  bool json = false;
  std::string node;                // revoke
  std::vector<std::string> mesh_settings;  // join/run: --set NAME=VALUE, in order
};

struct ParseOutcome {
  // Set when the command should run; otherwise exit with exit_code after printing
  // `out` to stdout and `err` (one line, "meshd: ...") to stderr.
  std::optional<Command> cmd;
  int exit_code = 0;
  std::string out;
  std::string err;
};

using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
using FileReader = std::function<std::optional<std::string>(const std::string& path, std::string& error)>;

// `args` excludes the program name. `env` supplies MESHD_TOKEN; `read_file` the
// --token-file contents. Never exits the process.
ParseOutcome parse_command_line(const std::vector<std::string>& args, const EnvLookup& env,
                                const FileReader& read_file);

// Runs a parsed command; returns the exit code (messages already printed).
int execute(const Command& cmd);

// main(): parse, print, execute.
int cli_main(int argc, char** argv);

}  // namespace meshd::agent
