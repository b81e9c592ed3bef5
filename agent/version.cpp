#include "agent/version.hpp"

namespace meshd::agent {
const char* version() { return "0.1.0"; }
}  // namespace meshd::agent
