// The mapping scenario (issue 4): a formed mesh publishes E endpoints over V VNIs, its
// tenants resolve them with Zipf popularity, endpoints move, and owners are killed
// R-1 at a time. Figures: resolution time, cache hit ratio, map traffic, memory per
// node, move propagation, mappings lost and re-replication time (MappingFigures).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "mesh/mesh_core.hpp"
#include "sim/lib/invariants.hpp"
#include "sim/lib/scenarios.hpp"
#include "sim/lib/sim_cluster.hpp"

namespace meshd::sim {

// The VNIs each node serves, drawn from the seed: every VNI gets about N * K / V nodes.
// The cluster is built with them (ClusterConfig::node_vnis) and the run uses the same.
std::vector<std::vector<std::uint32_t>> mapping_node_vnis(const ScenarioConfig& cfg);

class MappingRun {
 public:
  MappingRun(SimCluster& cluster, InvariantChecker& checker, const ScenarioConfig& cfg);
  ~MappingRun();
  MappingRun(const MappingRun&) = delete;
  MappingRun& operator=(const MappingRun&) = delete;

  // Every event of the cluster, in order (the driver's listener forwards them).
  void on_event(std::uint64_t now_ms, NodeIndex observer, const mesh::MeshEvent& ev);
  // The phases, on a mesh that has formed: publish, traffic, moves, owner kills.
  MappingFigures run();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

}  // namespace meshd::sim
