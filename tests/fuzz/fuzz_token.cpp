// libFuzzer: parse_token on arbitrary text must never crash, and whatever it accepts
// must be self-consistent.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "crypto/token.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static bool ready = meshd::crypto::init().ok();
  if (!ready) std::abort();
  auto t = meshd::crypto::parse_token(std::string_view(reinterpret_cast<const char*>(data), size));
  if (t.ok() && t->enroll_key().public_key() != t->enrollment.enroll_pub) std::abort();
  return 0;
}
