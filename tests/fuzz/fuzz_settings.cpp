// libFuzzer: the stored membership settings (and so every `--set NAME=VALUE`) on
// arbitrary text must never crash; whatever decodes must apply or be refused with an
// error, and must survive an encode/decode round trip unchanged.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "agent/mesh_settings.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace meshd::agent;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto s = decode_mesh_settings(text);
  if (!s.ok()) return 0;
  meshd::mesh::MeshConfig cfg;
  auto applied = apply_mesh_settings(*s, cfg);
  if (applied.ok()) {
    if (cfg.probe_timeout_ms >= cfg.probe_interval_ms) std::abort();
    (void)mesh_settings_json(cfg).dump();
  }
  auto back = decode_mesh_settings(encode_mesh_settings(*s));
  if (!back.ok() || *back != *s) std::abort();
  return 0;
}
