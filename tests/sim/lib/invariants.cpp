#include "sim/lib/invariants.hpp"

namespace meshd::sim {

void InvariantChecker::fail(const std::string& what) {
  ++violation_count_;
  if (violations_.size() < cfg_.violations_max) {
    violations_.push_back("t=" + std::to_string(cluster_.elapsed_ms()) + "ms: " + what);
  }
}

void InvariantChecker::expect(bool ok, const std::string& what) {
  if (!ok) fail(what);
}

void InvariantChecker::expect_converged(const std::string& what) {
  if (!cluster_.converged()) fail(what + ": not every live node sees every other live node alive");
}

void InvariantChecker::on_event(std::uint64_t now_ms, NodeIndex observer,
                                std::optional<NodeIndex> subject, const mesh::MeshEvent& ev) {
  using K = mesh::MeshEvent::Kind;
  const std::string who = "node " + std::to_string(observer);
  if ((ev.member || ev.kind == K::node_revoked) && !subject) {
    fail(who + ": event about a node outside the simulation");
    return;
  }
  if (subject && *subject == observer && ev.kind != K::node_revoked) {
    fail(who + ": event about itself (kind " + std::to_string(static_cast<int>(ev.kind)) + ")");
  }
  if (ev.kind == K::node_revoked || ev.kind == K::join_refused || ev.kind == K::node_refused) {
    fail(who + ": unexpected revocation/refusal: " + ev.reason);
  }
  if (ev.kind != K::member_failed || !subject) return;
  const NodeIndex s = *subject;
  // While any partition stands, a death can be gossiped from the cut-off side even
  // between two nodes that reach each other (no healthy majority path): not false.
  const bool faults_settled =
      !cluster_.network().partitioned() &&
      (!last_fault_ms_ || now_ms >= *last_fault_ms_ + cfg_.healthy_after_ms);
  const bool healthy = cluster_.up(s) &&
                       now_ms >= cluster_.up_since_ms(s) + cfg_.healthy_after_ms &&
                       faults_settled && cluster_.network().reachable(observer, s) &&
                       cluster_.network().reachable(s, observer);
  if (healthy) {
    ++false_deaths_;
    false_dead_.insert(s);
  } else {
    ++expected_deaths_;
  }
}

void InvariantChecker::finish() {
  if (false_deaths_ > cfg_.false_death_budget) {
    fail(std::to_string(false_deaths_) + " healthy nodes declared dead (budget " +
         std::to_string(cfg_.false_death_budget) + ")");
  }
}

}  // namespace meshd::sim
