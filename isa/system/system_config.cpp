// The association of cores with their SystemConfig.
#include "isa/system/system_config.h"

#include <mutex>
#include <stdexcept>
#include <unordered_map>

namespace pgsim::isa {
namespace {

std::mutex& registry_mutex() {
  static std::mutex m;
  return m;
}
std::unordered_map<const Core*, SystemConfig*>& registry() {
  static std::unordered_map<const Core*, SystemConfig*> r;
  return r;
}

}  // namespace

SystemConfigBinding::SystemConfigBinding(const Core& core, SystemConfig& config) : core_(core) {
  std::lock_guard<std::mutex> lock(registry_mutex());
  if (!registry().emplace(&core, &config).second)
    throw std::logic_error("pgsim: a SystemConfig is already bound to this core");
}

SystemConfigBinding::~SystemConfigBinding() {
  std::lock_guard<std::mutex> lock(registry_mutex());
  registry().erase(&core_);
}

const SystemConfig& system_config(const Core& core) {
  static const SystemConfig classic;  // classic x86, no hypervisor, no MSR device
  std::lock_guard<std::mutex> lock(registry_mutex());
  auto it = registry().find(&core);
  return it == registry().end() ? classic : *it->second;
}

}  // namespace pgsim::isa
