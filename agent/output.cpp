#include "agent/output.hpp"

#include <algorithm>

namespace meshd::agent {

namespace {

using json = nlohmann::json;

// Tolerant accessors: the text view never throws on an unexpected answer.
std::string s(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "-";
  if (it->is_string()) return it->get<std::string>();
  return it->dump();
}

std::string joined(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_array() || it->empty()) return "-";
  std::string out;
  for (const auto& v : *it) out += (out.empty() ? "" : ",") + (v.is_string() ? v.get<std::string>() : v.dump());
  return out;
}

const json& arr(const json& j, const char* key) {
  static const json empty = json::array();
  auto it = j.find(key);
  return it != j.end() && it->is_array() ? *it : empty;
}

}  // namespace

std::string format_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& r : rows) {
    if (width.size() < r.size()) width.resize(r.size(), 0);
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  }
  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string format_status(const json& j) {
  std::vector<std::vector<std::string>> rows{{"FIELD", "VALUE"}};
  rows.push_back({"node_id", s(j, "node_id")});
  rows.push_back({"name", s(j, "name")});
  rows.push_back({"mesh_id", s(j, "mesh_id")});
  rows.push_back({"listen", s(j, "listen")});
  rows.push_back({"locators", joined(j, "locators")});
  if (auto m = j.find("members"); m != j.end() && m->is_object()) {
    rows.push_back({"members", "alive " + s(*m, "alive") + ", suspect " + s(*m, "suspect") + ", failed " +
                                   s(*m, "failed") + ", left " + s(*m, "left")});
  }
  rows.push_back({"vnis", joined(j, "vnis")});
  rows.push_back({"endpoints_local", s(j, "endpoints_local")});
  rows.push_back({"routes_local", s(j, "routes_local")});
  rows.push_back({"uptime_s", s(j, "uptime_s")});
  return format_table(rows);
}

std::string format_peers(const json& j) {
  std::vector<std::vector<std::string>> rows{
      {"NAME", "NODE", "STATE", "SESSION", "ENDPOINT", "LOCATORS", "VNIS", "RX_BYTES", "TX_BYTES"}};
  for (const auto& p : arr(j, "peers")) {
    std::string id = s(p, "node_id");
    rows.push_back({s(p, "name"), id.substr(0, 12), s(p, "state"), s(p, "session"), s(p, "endpoint"),
                    joined(p, "locators"), joined(p, "vnis"), s(p, "rx_bytes"), s(p, "tx_bytes")});
  }
  return format_table(rows);
}

std::string format_endpoints(const json& j) {
  std::vector<std::vector<std::string>> rows{
      {"VNI", "MAC", "IPS", "NODE", "LOCAL", "SEQ", "STATE", "NETNS", "IFNAME"}};
  for (const auto& e : arr(j, "endpoints")) {
    const bool local = e.value("local", false);
    const std::string state = e.value("duplicate", false) ? "DUPLICATE"
                              : local                     ? "attached"
                                                          : "cached " + s(e, "cache_ttl_s") + "s";
    rows.push_back({s(e, "vni"), s(e, "mac"), joined(e, "ips"), s(e, "node"), local ? "yes" : "no", s(e, "seq"),
                    state, local ? s(e, "netns") : "-", local ? s(e, "ifname") : "-"});
  }
  return format_table(rows);
}

std::string format_routes(const json& j) {
  std::vector<std::vector<std::string>> rows{{"VNI", "PREFIX", "NODE", "NEXT-HOP", "LOCAL"}};
  for (const auto& r : arr(j, "routes")) {
    rows.push_back({s(r, "vni"), s(r, "prefix"), s(r, "node"), s(r, "next_hop_mac"), r.value("local", false) ? "yes" : "no"});
  }
  return format_table(rows);
}

}  // namespace meshd::agent
