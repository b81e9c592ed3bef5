#include "agent/mesh_settings.hpp"

#include <charconv>
#include <cstdint>
#include <type_traits>
#include <variant>

#include "mesh/local_health.hpp"
#include "mesh/suspicion.hpp"

namespace meshd::agent {

namespace {

// MeshConfig's std::size_t fields are 64-bit here (one alternative serves both).
static_assert(std::is_same_v<std::size_t, std::uint64_t>);
using U64 = std::uint64_t mesh::MeshConfig::*;
using U32 = std::uint32_t mesh::MeshConfig::*;
using Flag = bool mesh::MeshConfig::*;

struct Setting {
  const char* name;
  std::variant<U64, U32, Flag> field;
  std::uint64_t min, max;
  bool has_auto;  // "auto" = kIndirectProbesAuto
  const char* what;
};

// Bounds are MeshConfig's documented ones (mesh/mesh_core.hpp), narrowed where a
// value would make no sense for an agent (a 0 ms probe interval).
const Setting kSettings[] = {
    {"probe_interval_ms", &mesh::MeshConfig::probe_interval_ms, 50, 60'000, false,
     "one probe per interval"},
    {"probe_timeout_ms", &mesh::MeshConfig::probe_timeout_ms, 10, 60'000, false,
     "no ack by then: indirect probes and a direct retry (below probe_interval_ms)"},
    {"indirect_probes", &mesh::MeshConfig::indirect_probes, 0, 16, true,
     "helpers per failed probe, 3 at the timeout and the rest later; auto = 3 + 2 x ceil(log10(N + 1))"},
    {"direct_retry", &mesh::MeshConfig::direct_retry, 0, 1, false,
     "resend the ping once at the probe timeout"},
    {"suspicion_mult", &mesh::MeshConfig::suspicion_mult, 0, mesh::kSuspicionMultMax, false,
     "suspicion min = max(floor, mult x log10(N) x probe interval)"},
    {"suspicion_max_mult", &mesh::MeshConfig::suspicion_max_timeout_mult, 1,
     mesh::kSuspicionMaxTimeoutMultMax, false, "suspicion max = this x min"},
    {"suspicion_floor_ms", &mesh::MeshConfig::suspicion_floor_ms, 0, 600'000, false,
     "lower bound of the suspicion min"},
    {"suspicion_confirmations", &mesh::MeshConfig::suspicion_confirmations, 0,
     mesh::kSuspicionConfirmationsMax, false, "independent suspicions that shrink max to min"},
    {"lhm_max", &mesh::MeshConfig::lhm_max, 0, mesh::kLocalHealthMaxBound, false,
     "local health: probe up to (lhm_max + 1)x slower; 0 = off"},
    {"gossip_interval_ms", &mesh::MeshConfig::gossip_interval_ms, 10, 60'000, false,
     "one gossip round per interval"},
    {"gossip_fanout", &mesh::MeshConfig::gossip_fanout, 1, 16, false, "members per gossip round"},
    {"gossip_burst_max", &mesh::MeshConfig::gossip_burst_max, 1, 16, false,
     "with a backlog, up to this x fanout per round"},
    {"retransmit_mult", &mesh::MeshConfig::retransmit_mult, 1, 16, false,
     "sends per update = mult x ceil(log10(N + 1))"},
    {"gossip_to_dead_ms", &mesh::MeshConfig::gossip_to_dead_ms, 0, 3'600'000, false,
     "recently failed members still get gossip and push-pull"},
    {"push_pull_interval_ms", &mesh::MeshConfig::anti_entropy_interval_ms, 500, 3'600'000, false,
     "anti-entropy with one random member"},
};

const Setting* find(std::string_view name) {
  for (const Setting& s : kSettings) {
    if (name == s.name) return &s;
  }
  return nullptr;
}

std::string names() {
  std::string out;
  for (const Setting& s : kSettings) {
    if (!out.empty()) out += ", ";
    out += s.name;
  }
  return out;
}

// The number a value stands for; nullopt-like error for anything else.
Result<std::uint64_t> value_of(const Setting& s, std::string_view v) {
  if (s.has_auto && v == "auto") return mesh::kIndirectProbesAuto;
  if (std::holds_alternative<Flag>(s.field)) {
    if (v == "true" || v == "on") return std::uint64_t{1};
    if (v == "false" || v == "off") return std::uint64_t{0};
  }
  std::uint64_t n = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  const std::string shown = std::string(s.name) + "=" + std::string(v);
  if (v.empty() || ec != std::errc() || end != v.data() + v.size()) {
    return make_error("cli.set", "--set " + shown + ": not a number" +
                                     (s.has_auto ? std::string(" (or auto)") : std::string()));
  }
  if (n < s.min || n > s.max) {
    return make_error("cli.set", "--set " + shown + ": out of range " + std::to_string(s.min) +
                                     ".." + std::to_string(s.max));
  }
  return n;
}

void store(const Setting& s, std::uint64_t n, mesh::MeshConfig& cfg) {
  std::visit(
      [&](auto field) {
        using T = std::remove_reference_t<decltype(cfg.*field)>;
        cfg.*field = static_cast<T>(n);
      },
      s.field);
}

nlohmann::json load(const Setting& s, const mesh::MeshConfig& cfg) {
  return std::visit(
      [&](auto field) -> nlohmann::json {
        const auto v = cfg.*field;
        if (s.has_auto && static_cast<std::uint64_t>(v) == mesh::kIndirectProbesAuto) return "auto";
        return v;
      },
      s.field);
}

}  // namespace

std::string mesh_settings_help() {
  std::string out;
  for (const Setting& s : kSettings) {
    out += "  " + std::string(s.name) + " (" + std::to_string(s.min) + ".." + std::to_string(s.max) +
           (s.has_auto ? ", auto" : "") + "): " + s.what + "\n";
  }
  return out;
}

Status parse_mesh_setting(std::string_view arg, MeshSettings& into) {
  const auto eq = arg.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return make_error("cli.set", "--set " + std::string(arg) + ": expected NAME=VALUE (names: " +
                                     names() + ")");
  }
  const std::string_view name = arg.substr(0, eq), v = arg.substr(eq + 1);
  const Setting* s = find(name);
  if (s == nullptr) {
    return make_error("cli.set", "--set: unknown setting '" + std::string(name) + "' (names: " +
                                     names() + ")");
  }
  if (v == "default") {
    into.erase(std::string(name));
    return ok_status();
  }
  if (auto n = value_of(*s, v); !n) return n.error();
  into[std::string(name)] = std::string(v);
  return ok_status();
}

Status apply_mesh_settings(const MeshSettings& settings, mesh::MeshConfig& cfg) {
  mesh::MeshConfig out = cfg;
  for (const auto& [name, v] : settings) {
    const Setting* s = find(name);
    if (s == nullptr) return make_error("cli.set", "unknown setting '" + name + "'");
    auto n = value_of(*s, v);
    if (!n) return n.error();
    store(*s, *n, out);
  }
  if (out.probe_timeout_ms >= out.probe_interval_ms) {
    return make_error("cli.set", "probe_timeout_ms (" + std::to_string(out.probe_timeout_ms) +
                                     ") must be below probe_interval_ms (" +
                                     std::to_string(out.probe_interval_ms) + ")");
  }
  cfg = out;
  return ok_status();
}

nlohmann::json mesh_settings_json(const mesh::MeshConfig& cfg) {
  nlohmann::json j = nlohmann::json::object();
  for (const Setting& s : kSettings) j[s.name] = load(s, cfg);
  return j;
}

std::string encode_mesh_settings(const MeshSettings& s) {
  std::string out;
  for (const auto& [name, v] : s) out += name + "=" + v + "\n";
  return out;
}

Result<MeshSettings> decode_mesh_settings(std::string_view text) {
  MeshSettings s;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty()) continue;
    if (auto st = parse_mesh_setting(line, s); !st) return st.error();
  }
  return s;
}

}  // namespace meshd::agent
