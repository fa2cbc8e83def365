// The sections of the built-in schema, one file each (schema_<section>.cpp), and small helpers
// that keep a declaration to one readable line.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "platforms/config/config.h"

namespace pgsim::config {

void declare_run(Schema&);
void declare_guest(Schema&);
void declare_cpu(Schema&);
void declare_memory(Schema&);
void declare_mmu(Schema&);
void declare_cache(Schema&);
void declare_timing(Schema&);
void declare_devices(Schema&);
void declare_vmm(Schema&);
void declare_trace(Schema&);

// Every section of the built-in schema. A new section: a schema_<section>.cpp with a
// declare_<section>(Schema&) function, listed here and in schema_sections().
using SectionDeclaration = void (*)(Schema&);
inline std::vector<SectionDeclaration> schema_sections() {
  return {declare_run,    declare_guest,  declare_cpu,     declare_memory, declare_mmu,
          declare_cache,  declare_timing, declare_devices, declare_vmm,    declare_trace};
}

inline constexpr int64_t kNoUpperBound = std::numeric_limits<int64_t>::max();

inline KeySpec boolean(std::string key, bool fallback, std::string description) {
  return {std::move(key), Type::Bool, fallback, "", std::move(description), {}, {}, {}};
}
inline KeySpec integer(std::string key, int64_t fallback, std::string unit, int64_t min,
                       int64_t max, std::string description) {
  return {std::move(key), Type::Int,          fallback,
          std::move(unit), std::move(description), static_cast<double>(min),
          static_cast<double>(max), {}};
}
inline KeySpec real(std::string key, double fallback, std::string unit, double min, double max,
                    std::string description) {
  return {std::move(key), Type::Float, fallback, std::move(unit), std::move(description),
          min,            max,         {}};
}
inline KeySpec bytes(std::string key, int64_t fallback, int64_t min, int64_t max,
                     std::string description) {
  return {std::move(key), Type::Size,          fallback,
          "bytes",        std::move(description), static_cast<double>(min),
          static_cast<double>(max), {}};
}
inline KeySpec text(std::string key, std::string fallback, std::string description) {
  return {std::move(key), Type::String, std::move(fallback), "", std::move(description),
          {},             {},           {}};
}
inline KeySpec choice(std::string key, std::string fallback, std::vector<std::string> allowed,
                      std::string description) {
  return {std::move(key), Type::Enum, std::move(fallback), "", std::move(description),
          {},             {},         std::move(allowed)};
}
inline KeySpec choice_or_file(std::string key, std::string fallback,
                              std::vector<std::string> allowed, std::string description) {
  return {std::move(key), Type::EnumOrPath, std::move(fallback), "", std::move(description),
          {},             {},               std::move(allowed)};
}
inline KeySpec file(std::string key, std::string description) {
  return {std::move(key), Type::Path, std::string(), "", std::move(description), {}, {}, {}};
}
inline KeySpec files(std::string key, std::string description) {
  return {std::move(key), Type::PathList, std::vector<std::string>(), "", std::move(description),
          {},             {},             {}};
}
inline KeySpec strings(std::string key, std::string description) {
  return {std::move(key), Type::StringList, std::vector<std::string>(), "",
          std::move(description), {}, {}, {}};
}

}  // namespace pgsim::config
