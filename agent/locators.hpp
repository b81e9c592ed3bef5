// Which underlay addresses this node advertises to the mesh.
#pragma once

#include <vector>

#include "crypto/address.hpp"

namespace meshd::agent {

inline constexpr std::size_t kAdvertisedLocatorsMax = 8;  // mesh::kLocatorsMax

// The listen address if it is specific; for a wildcard (0.0.0.0 / ::), every
// non-loopback, non-link-local address of the matching family (both for ::) from
// getifaddrs, with the listen port. At most kAdvertisedLocatorsMax, IPv4 first.
std::vector<Locator> advertised_locators(const Locator& listen);

bool is_wildcard(const IpAddr& ip);

}  // namespace meshd::agent
