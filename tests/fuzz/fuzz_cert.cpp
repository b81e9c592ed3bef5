// libFuzzer: CertChain::decode on arbitrary bytes; accepted input must re-encode to
// exactly the same bytes (the encoding is canonical).
#include <cstdint>
#include <cstdlib>

#include "crypto/cert.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static bool ready = meshd::crypto::init().ok();
  if (!ready) std::abort();
  meshd::ByteSpan in(data, size);
  auto c = meshd::crypto::CertChain::decode(in);
  if (c.ok()) {
    meshd::Bytes again = c->encode();
    if (again.size() != size || !std::equal(again.begin(), again.end(), data)) std::abort();
    meshd::crypto::PublicKey root{};
    (void)meshd::crypto::verify_chain(root, *c, 1'800'000'000);
  }
  return 0;
}
