#include "mesh/types.hpp"

namespace meshd::mesh {

const char* member_state_name(MemberState s) {
  switch (s) {
    case MemberState::alive: return "alive";
    case MemberState::suspect: return "suspect";
    case MemberState::failed: return "failed";
    case MemberState::left: return "left";
  }
  return "unknown";
}

}  // namespace meshd::mesh
