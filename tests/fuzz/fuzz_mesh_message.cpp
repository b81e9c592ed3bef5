// libFuzzer target: arbitrary bytes as a control message, to the codec alone and to
// a live MeshCore (which has members, mappings and a revoked node, so updates reach
// real code).
// Nothing may crash, leak, hang or throw.
#include <cstddef>
#include <cstdint>

#include "../mesh/harness.hpp"
#include "mesh/messages.hpp"

using namespace meshd;
using namespace meshd::mesh;

namespace {

struct World {
  test::SimNet net{1};
  World() {
    auto tok = net.make_token({100, 200});
    for (int i = 0; i < 4; ++i) net.add_node(tok);
    net.start(0, {});
    net.start(1, {0});
    net.start(2, {0});
    net.start(3, {0});
    net.step(3'000);
    (void)net.nodes[0]->core->publish_endpoint(net.now, 100, {2, 0, 0, 0, 0, 1}, {});
    (void)net.nodes[1]->core->publish_endpoint(net.now, 100, {2, 0, 0, 0, 0, 2}, {});
    (void)net.nodes[0]->core->revoke(net.now, net.revocation_for(3));
    net.step(1'000);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World w;
  ByteSpan in(data, size);
  (void)decode_message(in, codec::Limits{});
  (void)decode_member(in, codec::Limits{});
  (void)decode_mapping(in, codec::Limits{});
  (void)decode_revocation(in, codec::Limits{});
  // Node 1 (a member) or, for one input in eight, node 3 (revoked) sends the bytes to
  // node 0; node 0's replies and timers run a little.
  w.net.inject(size > 0 && (data[0] & 7) == 7 ? 3 : 1, 0, in);
  w.net.step(50);
  return 0;
}
