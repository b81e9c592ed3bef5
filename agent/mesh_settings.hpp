// Membership tunables an operator may set: `meshd join|run --set NAME=VALUE`. Each
// name maps to one mesh::MeshConfig field with its documented bounds; a value outside
// them is refused (exit 2), never clamped in silence. Settings given once are stored
// in the state directory and apply to every later `meshd run` until set again;
// `NAME=default` drops the override.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/result.hpp"
#include "mesh/mesh_core.hpp"

namespace meshd::agent {

// NAME -> VALUE as the user wrote it ("auto" / "default" included), ordered by name.
using MeshSettings = std::map<std::string, std::string>;

// Every settable name with its bounds, one per line, for --help and error messages.
std::string mesh_settings_help();

// "NAME=VALUE" -> adds to (or with VALUE "default", removes from) `into`. Errors
// ("cli.set"): unknown name, not NAME=VALUE, value not a number, out of bounds.
Status parse_mesh_setting(std::string_view arg, MeshSettings& into);

// Applies validated settings to `cfg`. Errors only for a setting that no longer
// validates (a store written by another version): the caller reports it.
Status apply_mesh_settings(const MeshSettings& s, mesh::MeshConfig& cfg);

// The effective values of every settable name.
nlohmann::json mesh_settings_json(const mesh::MeshConfig& cfg);

// Stored form: "NAME=VALUE\n" lines.
std::string encode_mesh_settings(const MeshSettings& s);
Result<MeshSettings> decode_mesh_settings(std::string_view text);

}  // namespace meshd::agent
