// Invariants checked while a simulation runs (fed every MeshEvent) and at its end.
// A violation is recorded with the simulated time; the driver reports it with the seed.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "mesh/mesh_core.hpp"
#include "sim/lib/sim_cluster.hpp"

namespace meshd::sim {

struct InvariantConfig {
  // Deaths of healthy nodes tolerated over the run (SWIM under loss has a small rate).
  std::uint64_t false_death_budget = 0;
  // A node counts as healthy once up this long with no fault injected meanwhile.
  std::uint64_t healthy_after_ms = 10'000;
  std::size_t violations_max = 32;  // beyond this only the count grows
};

class InvariantChecker {
 public:
  InvariantChecker(const SimCluster& cluster, InvariantConfig cfg) : cluster_(cluster), cfg_(cfg) {}

  // Every event the cluster emits. Checks: the subject is a simulated node and not the
  // observer itself; no revocation or refusal happens in these scenarios; a member_failed
  // about a healthy, reachable node is a false death.
  void on_event(std::uint64_t now_ms, NodeIndex observer, std::optional<NodeIndex> subject,
                const mesh::MeshEvent& ev);
  // The driver injected a fault (partition, heal, crash storm): deaths until
  // healthy_after_ms later are expected, not false.
  void note_fault(std::uint64_t now_ms) { last_fault_ms_ = now_ms; }
  // End-of-run checks.
  void expect_converged(const std::string& what);
  void expect(bool ok, const std::string& what);
  void finish();  // applies the false-death budget

  bool ok() const { return violation_count_ == 0; }
  const std::vector<std::string>& violations() const { return violations_; }
  std::uint64_t false_deaths() const { return false_deaths_; }
  std::uint64_t expected_deaths() const { return expected_deaths_; }
  std::uint64_t false_dead_nodes() const { return false_dead_.size(); }

 private:
  void fail(const std::string& what);

  const SimCluster& cluster_;
  InvariantConfig cfg_;
  std::optional<std::uint64_t> last_fault_ms_;
  std::uint64_t false_deaths_ = 0, expected_deaths_ = 0, violation_count_ = 0;
  std::vector<std::string> violations_;
  std::set<NodeIndex> false_dead_;
};

}  // namespace meshd::sim
