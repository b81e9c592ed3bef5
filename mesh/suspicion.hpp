// Lifeguard suspicion timer (memberlist style). A suspect is declared failed when its
// timer runs out. The timer starts at `max` and shrinks towards `min` as distinct
// members independently confirm the suspicion (each sends a suspect message about the
// same node), following
//     timeout(c) = max - (max - min) * log(c + 1) / log(k + 1)
// where k is the number of confirmations we expect. One accuser with a bad network
// therefore needs the full `max` to get a healthy node failed, which leaves that node
// time to refute; a really dead node is confirmed by several and goes quickly.
//
// Pure arithmetic on `now_ms` passed in: no clock, no I/O, usable alone.
// Bound: at most k confirmers are remembered (later ones cannot shorten the timer).
#pragma once

#include <cstddef>
#include <array>
#include <cstdint>
#include <memory>

#include "mesh/types.hpp"

namespace meshd::mesh {

// Tuning bounds (MeshConfig values outside are clamped to these).
inline constexpr std::uint64_t kSuspicionMultMax = 32;
inline constexpr std::uint64_t kSuspicionMaxTimeoutMultMax = 16;
inline constexpr std::size_t kSuspicionConfirmationsMax = 16;

// memberlist's minimum: mult * max(1, log10(n)) * probe_interval, n = mesh size
// including this node. 0 if mult is 0.
std::uint64_t suspicion_min_timeout_ms(std::uint64_t mult, std::size_t n,
                                       std::uint64_t probe_interval_ms);

// Confirmations to expect before the timer reaches `min`: as many as there are
// other members who could probe the node (n - 2: not us, not the suspect), at most
// `wanted` and kSuspicionConfirmationsMax.
std::size_t suspicion_expected_confirmations(std::size_t wanted, std::size_t n);

class Suspicion {
 public:
  Suspicion() = default;
  // `accuser` started the suspicion (may be this node); it does not count as a
  // confirmation. min_ms <= max_ms required (asserted); k == 0 means "expect none":
  // the timeout is min_ms from the start.
  Suspicion(std::uint64_t start_ms, std::uint64_t min_ms, std::uint64_t max_ms,
            std::size_t k, const NodeId& accuser);

  // A suspect message from `from`. True if `from` is a new confirmer and the timer
  // shrank (the caller re-gossips the message); false for a repeat, the original
  // accuser, or once k confirmations are in.
  bool confirm(const NodeId& from);

  std::uint64_t deadline_ms() const { return start_ms_ + timeout_ms(); }
  std::uint64_t timeout_ms() const { return timeout_ms(min_ms_, max_ms_, k_, confirmations()); }
  std::size_t confirmations() const { return n_ == 0 ? 0 : n_ - 1u; }
  std::size_t expected() const { return k_; }

  // The formula above; never below min_ms, never above max_ms.
  static std::uint64_t timeout_ms(std::uint64_t min_ms, std::uint64_t max_ms, std::size_t k,
                                  std::size_t c);

 private:
  // Confirmers are told apart by the first 8 bytes of their id (public keys): two
  // members that share them would need 2^64 work to make, and would only count once.
  // A 10,000-node mesh cut in half holds 50 million suspicions at once (simulator), so
  // the accuser and the default 2 confirmations sit inline; a larger k allocates.
  static constexpr std::size_t kInline = 3;
  static std::uint64_t prefix(const NodeId& id);
  const std::uint64_t* slots() const { return more_ ? more_.get() : inline_.data(); }
  std::uint64_t* slots() { return more_ ? more_.get() : inline_.data(); }

  std::uint64_t start_ms_ = 0;
  std::uint32_t min_ms_ = 0;  // clamped to ~49 days
  std::uint32_t max_ms_ = 0;
  std::uint8_t k_ = 0;
  std::uint8_t n_ = 0;  // confirmers held, accuser included; bound: k_ + 1
  std::array<std::uint64_t, kInline> inline_{};
  std::unique_ptr<std::uint64_t[]> more_;  // k_ + 1 > kInline
};

}  // namespace meshd::mesh
