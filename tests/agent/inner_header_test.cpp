#include <doctest/doctest.h>

#include "agent/inner_header.hpp"
#include "crypto/bytes.hpp"
#include "crypto/cert.hpp"

using namespace meshd;
using namespace meshd::agent;

TEST_CASE("inner header: little-endian u24 vni then flags, like ByteWriter") {
  std::array<std::uint8_t, 4> buf{};
  encode_inner_header(buf, InnerHeader{0xABCDEF, wire::kFlagControl});
  ByteWriter w;
  w.u24(0xABCDEF);
  w.u8(wire::kFlagControl);
  CHECK(std::equal(buf.begin(), buf.end(), w.bytes().begin()));
  auto h = decode_inner_header(buf);
  REQUIRE(h);
  CHECK(h->vni == 0xABCDEF);
  CHECK(h->flags == wire::kFlagControl);
  CHECK(!decode_inner_header(std::span<const std::uint8_t>(buf.data(), 3)));
  encode_inner_header(buf, InnerHeader{crypto::kVniMax, 0});
  CHECK(decode_inner_header(buf)->vni == crypto::kVniMax);
}
