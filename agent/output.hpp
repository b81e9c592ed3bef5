// Human-readable forms of the agent's answers (aligned tables with a header row).
// The --json forms are the agent's answer itself minus "ok".
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace meshd::agent {

std::string format_table(const std::vector<std::vector<std::string>>& rows);
std::string format_status(const nlohmann::json& j);
std::string format_peers(const nlohmann::json& j);
std::string format_endpoints(const nlohmann::json& j);
std::string format_routes(const nlohmann::json& j);

}  // namespace meshd::agent
