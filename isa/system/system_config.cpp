// The association of a core with its SystemConfig.
#include "isa/system/system_config.h"

#include <stdexcept>

#include "isa/core.h"
#include "isa/decoder.h"

namespace pgsim::isa {

void Core::set_system_config(const SystemConfig* config) {
  system_config_ = config;
  decoder_->set_cpu_model(config ? &config->cpu : nullptr);
  uncached_decodes_.fill(UncachedDecode{});  // decoded for the CPU model before
  remark_decoded();
}

SystemConfigBinding::SystemConfigBinding(Core& core, SystemConfig& config) : core_(core) {
  if (core.system_config() != nullptr)
    throw std::logic_error("pgsim: a SystemConfig is already bound to this core");
  core.set_system_config(&config);
}

SystemConfigBinding::~SystemConfigBinding() { core_.set_system_config(nullptr); }

const SystemConfig& system_config(const Core& core) {
  static const SystemConfig classic;  // classic x86, no hypervisor, no MSR device
  const SystemConfig* bound = core.system_config();
  return bound ? *bound : classic;
}

}  // namespace pgsim::isa
