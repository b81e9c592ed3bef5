// The OS random generator behind crypto::Random (STYLE habit 1: the cores take
// randomness through the interface; only the agent reaches the OS).
#pragma once

#include <sodium.h>

#include "crypto/random.hpp"

namespace meshd::agent {

class OsRandom final : public crypto::Random {
 public:
  void fill(std::span<std::uint8_t> out) override { randombytes_buf(out.data(), out.size()); }
};

}  // namespace meshd::agent
