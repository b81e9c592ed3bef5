// build/mesh-sim: runs one deterministic simulator scenario and prints its figures.
//   mesh-sim --nodes N --seed S [--loss P] [--scenario join|crash|partition|churn] [--json]
// Exit status 1 if an invariant failed; the seed and a replay command go to stderr.
// Wall time and memory are measured here (the library itself never reads the clock).
#include <sys/resource.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "sim/lib/scenarios.hpp"

namespace {

using meshd::sim::Figures;
using meshd::sim::ScenarioConfig;

// kB from /proc/self/status ("VmHWM" peak resident set, "VmRSS" current); 0 if absent.
std::uint64_t proc_status_kb(std::string_view field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(field, 0) == 0 && line.size() > field.size() && line[field.size()] == ':') {
      return std::stoull(line.substr(field.size() + 1));
    }
  }
  return 0;
}

template <typename T>
bool parse_num(std::string_view s, T& out) {
  if constexpr (std::is_floating_point_v<T>) {
    try {
      std::size_t used = 0;
      out = static_cast<T>(std::stod(std::string(s), &used));
      return used == s.size();
    } catch (...) {  // std::stod reports bad input by throwing; CLI parsing only
      return false;
    }
  } else {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && p == s.data() + s.size();
  }
}

void usage() {
  std::cerr << "usage: mesh-sim --nodes N --seed S [--loss P] [--duplicate P] [--reorder P]\n"
               "                [--delay-min MS] [--delay-max MS] [--scenario "
               "join|crash|partition|churn]\n"
               "                [--asymmetric] [--no-storage] [--lose-unsynced] "
               "[--false-death-budget K] [--json]\n";
}

// User + system CPU seconds of this process: wall time misleads on a shared machine.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
  };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

nlohmann::json opt(const std::optional<std::uint64_t>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json(nullptr);
}

}  // namespace

int main(int argc, char** argv) {
  ScenarioConfig cfg;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const bool has_value = i + 1 < argc;
    const std::string_view v = has_value ? std::string_view(argv[i + 1]) : std::string_view();
    bool ok = true;
    if (a == "--json") {
      json = true;
      continue;
    } else if (a == "--asymmetric") {
      cfg.asymmetric = true;
      continue;
    } else if (a == "--no-storage") {
      cfg.use_storage = false;
      continue;
    } else if (a == "--lose-unsynced") {
      cfg.lose_unsynced = true;
      continue;
    } else if (a == "--help" || a == "-h") {
      usage();
      return 0;
    } else if (!has_value) {
      ok = false;
    } else if (a == "--nodes") {
      ok = parse_num(v, cfg.nodes) && cfg.nodes >= 2 && cfg.nodes <= 1'000'000;
    } else if (a == "--seed") {
      ok = parse_num(v, cfg.seed);
    } else if (a == "--loss") {
      ok = parse_num(v, cfg.link.loss) && cfg.link.loss >= 0 && cfg.link.loss < 1;
    } else if (a == "--duplicate") {
      ok = parse_num(v, cfg.link.duplicate) && cfg.link.duplicate >= 0 && cfg.link.duplicate <= 1;
    } else if (a == "--reorder") {
      ok = parse_num(v, cfg.link.reorder) && cfg.link.reorder >= 0 && cfg.link.reorder <= 1;
    } else if (a == "--delay-min") {
      ok = parse_num(v, cfg.link.delay_min_ms);
    } else if (a == "--delay-max") {
      ok = parse_num(v, cfg.link.delay_max_ms);
    } else if (a == "--false-death-budget") {
      std::uint64_t b = 0;
      ok = parse_num(v, b);
      cfg.false_death_budget = b;
    } else if (a == "--scenario") {
      auto s = meshd::sim::parse_scenario(v);
      ok = s.has_value();
      if (s) cfg.scenario = *s;
    } else {
      ok = false;
    }
    if (!ok) {
      std::cerr << "mesh-sim: bad argument " << a
                << (has_value ? std::string(" ") + std::string(v) : "") << "\n";
      usage();
      return 2;
    }
    ++i;
  }

  const std::uint64_t rss_before_kb = proc_status_kb("VmRSS");
  const auto t0 = std::chrono::steady_clock::now();
  const Figures f = meshd::sim::run_scenario(cfg);
  const double wall_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::uint64_t peak_kb = proc_status_kb("VmHWM");
  const double mem_per_node_kb =
      static_cast<double>(peak_kb > rss_before_kb ? peak_kb - rss_before_kb : 0) /
      static_cast<double>(cfg.nodes);

  nlohmann::json j;
  j["scenario"] = meshd::sim::scenario_name(cfg.scenario);
  j["nodes"] = cfg.nodes;
  j["seed"] = cfg.seed;
  j["loss"] = cfg.link.loss;
  j["ok"] = f.ok;
  j["violations"] = f.violations;
  j["form_ms"] = opt(f.form_ms);
  j["join_known_ms"] = {{"p50", opt(f.join_p50_ms)},
                        {"p99", opt(f.join_p99_ms)},
                        {"p99_9", opt(f.join_p999_ms)},
                        {"p100", opt(f.join_p100_ms)}};
  j["crash_known_ms"] = {{"p50", opt(f.crash_p50_ms)}, {"all", opt(f.crash_all_ms)}};
  j["heal_converge_ms"] = opt(f.heal_converge_ms);
  j["churn"] = {{"crashes", f.churn_crashes},
                {"restarts", f.churn_restarts},
                {"converge_ms", opt(f.churn_converge_ms)}};
  j["suspicions"] = f.suspicions;
  j["false_suspicions_refuted"] = f.refutations;
  j["false_deaths"] = f.false_deaths;
  j["expected_deaths"] = f.expected_deaths;
  j["drops"] = {{"bad_signature", f.bad_signature_drops},
                {"queue_full", f.queue_full_drops},
                {"table_full", f.table_full_drops}};
  j["formation_per_node_s"] = {{"bytes", f.form_bytes_per_node_s},
                               {"packets", f.form_packets_per_node_s}};
  j["steady_per_node_s"] = {{"bytes", f.bytes_per_node_s}, {"packets", f.packets_per_node_s}};
  j["peak_memory_per_node_kb"] = mem_per_node_kb;
  j["sim_ms"] = f.sim_ms;
  j["events"] = f.events;
  j["digest"] = f.digest;
  j["wall_s"] = wall_s;
  j["cpu_s"] = cpu_seconds();
  std::cout << (json ? j.dump(2) : j.dump()) << "\n";
  if (!f.ok) {
    std::cerr << "mesh-sim: invariant violated; seed " << cfg.seed << " (replay: mesh-sim --nodes "
              << cfg.nodes << " --seed " << cfg.seed << " --loss " << cfg.link.loss
              << " --scenario " << meshd::sim::scenario_name(cfg.scenario) << ")\n";
    for (const auto& v : f.violations) std::cerr << "  " << v << "\n";
    return 1;
  }
  return 0;
}
