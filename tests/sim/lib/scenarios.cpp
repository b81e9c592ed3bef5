#include "sim/lib/scenarios.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>

#include "sim/lib/invariants.hpp"
#include "sim/lib/mapping_scenario.hpp"
#include "sim/lib/sim_cluster.hpp"

namespace meshd::sim {

std::optional<Scenario> parse_scenario(std::string_view s) {
  if (s == "join") return Scenario::join;
  if (s == "crash") return Scenario::crash;
  if (s == "partition") return Scenario::partition;
  if (s == "churn") return Scenario::churn;
  if (s == "steady") return Scenario::steady;
  if (s == "mapping") return Scenario::mapping;
  return std::nullopt;
}

const char* scenario_name(Scenario s) {
  switch (s) {
    case Scenario::join:
      return "join";
    case Scenario::crash:
      return "crash";
    case Scenario::partition:
      return "partition";
    case Scenario::churn:
      return "churn";
    case Scenario::steady:
      return "steady";
    case Scenario::mapping:
      return "mapping";
  }
  return "?";
}

namespace {

constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

// Time by which fraction `p` of `times` (kNever = not yet) had happened.
std::optional<std::uint64_t> quantile(std::vector<std::uint64_t> times, double p) {
  if (times.empty()) return std::nullopt;
  std::sort(times.begin(), times.end());
  auto k = static_cast<std::size_t>(p * static_cast<double>(times.size()) + 0.999999);
  k = std::clamp<std::size_t>(k, 1, times.size());
  if (times[k - 1] == kNever) return std::nullopt;
  return times[k - 1];
}

std::uint64_t fnv(std::uint64_t h, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) {
    h ^= (v >> (8 * i)) & 0xff;
    h *= 0x100000001b3ull;
  }
  return h;
}

class Driver {
 public:
  explicit Driver(const ScenarioConfig& cfg)
      : cfg_(cfg),
        cluster_(cluster_config(cfg)),
        checker_(cluster_, InvariantConfig{budget(cfg), 10'000, 32}),
        rng_(mix_seed(cfg.seed, 0x7363656e)) {
    fig_.digest = 0xcbf29ce484222325ull;
    cluster_.set_listener([this](std::uint64_t now, NodeIndex obs, std::optional<NodeIndex> subj,
                                 const mesh::MeshEvent& ev) {
      fig_.digest = fnv(fnv(fnv(fnv(fig_.digest, now), obs), subj ? *subj : 0xffffffffu),
                        static_cast<std::uint64_t>(ev.kind));
      checker_.on_event(now, obs, subj, ev);
      if (mapping_) mapping_->on_event(now, obs, ev);
      if (watch_ && subj && *subj == watch_->subject && ev.kind == watch_->kind &&
          watch_->first_ms[obs] == kNever) {
        watch_->first_ms[obs] = now - watch_->since_ms;
      }
    });
  }

  Figures run() {
    switch (cfg_.scenario) {
      case Scenario::join:
        join();
        break;
      case Scenario::crash:
        crash();
        break;
      case Scenario::partition:
        partition();
        break;
      case Scenario::churn:
        churn();
        break;
      case Scenario::steady:
        steady();
        break;
      case Scenario::mapping:
        mapping();
        break;
    }
    checker_.finish();
    const mesh::MeshCounters c = cluster_.counters_total();
    fig_.suspicions = c.suspicions;
    fig_.refutations = c.refutations;
    fig_.bad_signature_drops = c.drop_bad_signature;
    fig_.queue_full_drops = c.drop_queue_full;
    fig_.table_full_drops = c.drop_table_full;
    fig_.false_deaths = checker_.false_deaths();
    fig_.expected_deaths = checker_.expected_deaths();
    fig_.false_dead_nodes = checker_.false_dead_nodes();
    fig_.violations = checker_.violations();
    fig_.ok = checker_.ok();
    fig_.sim_ms = cluster_.elapsed_ms();
    fig_.events = cluster_.events_processed();
    rate(form_end_, cluster_.elapsed_ms(), fig_.bytes_per_node_s, fig_.packets_per_node_s);
    return fig_;
  }

 private:
  struct Watch {
    NodeIndex subject;
    mesh::MeshEvent::Kind kind;
    std::uint64_t since_ms;
    std::vector<std::uint64_t> first_ms;  // per observer, kNever until seen
  };
  struct Mark {
    std::uint64_t at_ms = 0, packets = 0, bytes = 0;
  };

  static ClusterConfig cluster_config(const ScenarioConfig& c) {
    ClusterConfig cc;
    cc.nodes = c.nodes;
    cc.seed = c.seed;
    cc.mesh = c.mesh;
    cc.link = c.link;
    cc.use_storage = c.use_storage;
    cc.lose_unsynced = c.lose_unsynced;
    if (c.preformed) cc.preformed = c.scenario == Scenario::join ? c.nodes - 1 : c.nodes;
    if (c.scenario == Scenario::mapping) {
      cc.all_vnis = true;
      cc.node_vnis = mapping_node_vnis(c);
    }
    return cc;
  }
  static std::uint64_t budget(const ScenarioConfig& c) {
    if (c.false_death_budget) return *c.false_death_budget;
    if (c.scenario == Scenario::steady) return 0;  // the target: no false death at all
    return c.link.loss > 0 ? c.nodes : 0;
  }

  Mark mark() const {
    const auto& n = cluster_.network().counters();
    return Mark{cluster_.elapsed_ms(), n.sent, n.sent_bytes};
  }
  void rate(const Mark& from, std::uint64_t to_ms, double& bytes, double& packets) const {
    const Mark to = mark();
    const double s = static_cast<double>(std::max<std::uint64_t>(1, to_ms - from.at_ms)) / 1000.0;
    const double n = static_cast<double>(cluster_.size());
    bytes = static_cast<double>(to.bytes - from.bytes) / n / s;
    packets = static_cast<double>(to.packets - from.packets) / n / s;
  }

  // Starts nodes [0, count) spread over form_spread_ms and waits for convergence.
  bool form(std::size_t count) {
    const std::uint64_t t0 = cluster_.now_ms();
    for (NodeIndex i = 0; i < count; ++i) {
      // A preformed mesh was running already: everyone (re)starts at once.
      if (!cfg_.preformed) {
        cluster_.run_to(t0 + cfg_.form_spread_ms * i / std::max<std::size_t>(1, count));
      }
      cluster_.start(i);
    }
    fig_.form_ms =
        cluster_.run_until([&] { return cluster_.converged(); }, cfg_.form_limit_ms, 100);
    if (fig_.form_ms) fig_.form_ms = cluster_.now_ms() - t0;  // from the first start
    checker_.expect(fig_.form_ms.has_value(), "formation did not converge within form_limit_ms");
    rate(Mark{}, cluster_.elapsed_ms(), fig_.form_bytes_per_node_s, fig_.form_packets_per_node_s);
    cluster_.run_to(cluster_.now_ms() + cfg_.settle_ms);
    form_end_ = mark();
    return fig_.form_ms.has_value();
  }

  void watch(NodeIndex subject, mesh::MeshEvent::Kind kind) {
    watch_ = Watch{subject, kind, cluster_.now_ms(),
                   std::vector<std::uint64_t>(cluster_.size(), kNever)};
  }
  // Times of the watched event at live observers other than the subject.
  std::vector<std::uint64_t> watched() const {
    std::vector<std::uint64_t> t;
    for (NodeIndex i = 0; i < cluster_.size(); ++i) {
      if (i != watch_->subject && cluster_.up(i)) t.push_back(watch_->first_ms[i]);
    }
    return t;
  }

  NodeIndex victim() {
    const std::size_t seeds = std::min<std::size_t>(3, cluster_.size() - 1);
    return static_cast<NodeIndex>(rng_.between(seeds, cluster_.size() - 1));
  }

  void join() {
    const NodeIndex newcomer = static_cast<NodeIndex>(cfg_.nodes - 1);
    if (!form(cfg_.nodes - 1)) return;
    watch(newcomer, mesh::MeshEvent::Kind::member_up);
    cluster_.start(newcomer);
    cluster_.run_until([&] { return cluster_.all_see(newcomer, Seen::alive); },
                       cfg_.measure_limit_ms);
    auto t = watched();
    fig_.join_p50_ms = quantile(t, 0.5);
    fig_.join_p99_ms = quantile(t, 0.99);
    fig_.join_p999_ms = quantile(t, 0.999);
    fig_.join_p100_ms = quantile(t, 1.0);
    checker_.expect(fig_.join_p100_ms.has_value(),
                    "join not known by every node within measure_limit_ms");
    cluster_.run_until([&] { return cluster_.converged(); }, cfg_.measure_limit_ms, 100);
    checker_.expect_converged("after join");
  }

  void crash() {
    if (!form(cfg_.nodes)) return;
    const NodeIndex v = victim();
    watch(v, mesh::MeshEvent::Kind::member_failed);
    cluster_.crash(v);
    // More victims at the same moment (crashes > 1): "known by all" waits for all of them.
    std::vector<NodeIndex> victims{v};
    for (std::size_t tries = 0; victims.size() < cfg_.crashes && tries < 64 * cfg_.crashes; ++tries) {
      const NodeIndex w = victim();
      if (!cluster_.up(w)) continue;
      cluster_.crash(w);
      victims.push_back(w);
    }
    const auto all_known = cluster_.run_until(
        [&] {
          return std::all_of(victims.begin(), victims.end(),
                             [&](NodeIndex x) { return cluster_.all_see(x, Seen::dead); });
        },
        cfg_.measure_limit_ms, 10);
    auto t = watched();
    fig_.crash_p50_ms = quantile(t, 0.5);
    fig_.crash_all_ms = victims.size() == 1 ? quantile(t, 1.0) : all_known;
    checker_.expect(fig_.crash_all_ms.has_value(),
                    "crash not known by every node within measure_limit_ms");
    cluster_.run_to(cluster_.now_ms() + 5'000);  // time for false deaths to show
    checker_.expect_converged("after crash");
  }

  void partition() {
    if (!form(cfg_.nodes)) return;
    // Random halves; group 1 gets about half the nodes.
    for (NodeIndex i = 0; i < cluster_.size(); ++i) {
      cluster_.network().set_group(i, rng_.chance(0.5) ? 1 : 0);
    }
    cluster_.network().block(0, 1);
    if (!cfg_.asymmetric) cluster_.network().block(1, 0);
    checker_.note_fault(cluster_.now_ms());
    cluster_.run_to(cluster_.now_ms() + cfg_.partition_ms);
    cluster_.network().heal();
    checker_.note_fault(cluster_.now_ms());
    const bool trace = std::getenv("MESHD_SIM_TRACE") != nullptr;
    const std::uint64_t healed_at = cluster_.now_ms();
    fig_.heal_converge_ms = cluster_.run_until(
        [&] {
          if (trace) {
            std::fprintf(stderr, "heal +%llu ms: %llu pairs not alive, %llu refutations\n",
                         static_cast<unsigned long long>(cluster_.now_ms() - healed_at),
                         static_cast<unsigned long long>(cluster_.pairs_not_alive()),
                         static_cast<unsigned long long>(cluster_.counters_total().refutations));
            if (cluster_.pairs_not_alive() <= 4) {
              for (NodeIndex a = 0; a < cluster_.size(); ++a) {
                for (NodeIndex b = 0; b < cluster_.size(); ++b) {
                  if (a != b && cluster_.up(a) && cluster_.up(b) &&
                      cluster_.seen(a, b) != Seen::alive) {
                    std::fprintf(stderr, "  %u sees %u as %d", static_cast<unsigned>(a),
                                 static_cast<unsigned>(b), static_cast<int>(cluster_.seen(a, b)));
                    for (const auto& m : cluster_.core(a).members()) {
                      if (m.id() == cluster_.id(b)) {
                        std::fprintf(stderr, " (%s inc %llu since -%llu ms)",
                                     mesh::member_state_name(m.state),
                                     static_cast<unsigned long long>(m.incarnation),
                                     static_cast<unsigned long long>(cluster_.now_ms() -
                                                                     m.state_since_ms));
                      }
                    }
                    std::fprintf(stderr, "; it refuted %llu times\n",
                                 static_cast<unsigned long long>(
                                     cluster_.core(b).counters().refutations));
                  }
                }
              }
            }
          }
          return cluster_.converged();
        },
        cfg_.measure_limit_ms, 100);
    checker_.expect(fig_.heal_converge_ms.has_value(),
                    "no convergence within measure_limit_ms of heal");
  }

  void churn() {
    if (!form(cfg_.nodes)) return;
    const std::size_t down_max = std::max<std::size_t>(1, cfg_.nodes / 10);
    struct Down {
      NodeIndex node;
      std::uint64_t since_ms;
    };
    std::vector<Down> down;  // in crash order
    const std::uint64_t end = cluster_.now_ms() + cfg_.churn_ms;
    while (cluster_.now_ms() < end) {
      checker_.note_fault(cluster_.now_ms());
      // Restart the longest-down node once it has been down long enough for the mesh
      // to declare it failed, so restarts exercise "failed -> alive again".
      if (!down.empty() && cluster_.now_ms() >= down.front().since_ms + cfg_.churn_down_ms) {
        cluster_.start(down.front().node);
        down.erase(down.begin());
        ++fig_.churn_restarts;
      }
      if (down.size() < down_max && rng_.chance(0.5)) {
        const NodeIndex v = victim();
        if (cluster_.up(v)) {
          cluster_.crash(v);
          down.push_back(Down{v, cluster_.now_ms()});
          ++fig_.churn_crashes;
        }
      }
      cluster_.run_to(cluster_.now_ms() + cfg_.churn_interval_ms);
    }
    for (const Down& d : down) {
      cluster_.start(d.node);
      ++fig_.churn_restarts;
    }
    checker_.note_fault(cluster_.now_ms());
    fig_.churn_converge_ms =
        cluster_.run_until([&] { return cluster_.converged(); }, cfg_.measure_limit_ms, 100);
    checker_.expect(fig_.churn_converge_ms.has_value(),
                    "no convergence within measure_limit_ms of churn end");
  }

  // A formed mesh runs for steady_ms under the link model (e.g. 10 % loss): every
  // death is false; figures are suspicions, refutations, false deaths and traffic.
  void steady() {
    if (!form(cfg_.nodes)) return;
    cluster_.run_to(cluster_.now_ms() + cfg_.steady_ms);
    checker_.expect_converged("after steady run");
  }

  // Endpoints published over the formed mesh, resolved by tenant traffic, moved, and
  // their owners killed R-1 at a time (mapping_scenario.cpp).
  void mapping() {
    if (!form(cfg_.nodes)) return;
    mapping_ = std::make_unique<MappingRun>(cluster_, checker_, cfg_);
    fig_.mapping = mapping_->run();
    checker_.expect_converged("after the mapping scenario");
  }

  ScenarioConfig cfg_;
  SimCluster cluster_;
  InvariantChecker checker_;
  SimRandom rng_;
  Figures fig_;
  Mark form_end_;
  std::optional<Watch> watch_;
  std::unique_ptr<MappingRun> mapping_;
};

}  // namespace

Figures run_scenario(const ScenarioConfig& cfg) {
  Driver d(cfg);
  return d.run();
}

}  // namespace meshd::sim
