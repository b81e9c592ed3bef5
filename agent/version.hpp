#pragma once

namespace meshd::agent {
const char* version();
}
