// The PC: every module of models/ wired as QEMU's `-machine pc` wires a Multiboot guest's machine.
//
//   CPU --mem--> memory router: RAM (below 3 GiB, rest from 4 GiB), I/O APIC 0xFEC00000,
//                               local APIC 0xFEE00000
//       --io---> I/O router:    PIC 0x20/0xA0, PIT 0x40-0x43 and 0x61, COM1 0x3F8, fw_cfg 0x510,
//                               exit device 0xF4
//   IRQs: PIT -> PIC IR0 and I/O APIC pin 2; COM1 -> PIC IR4 and I/O APIC pin 4; slave PIC -> IR2;
//         master PIC -> local APIC LINT0 (ExtINT); I/O APIC -> local APIC -> CPU.
//   VMM (vmm.strategy): the core's trap hook; its own RAM above guest RAM, outside the memory map
//         the guest is told of.
#pragma once
#include <filesystem>
#include <memory>
#include <ostream>

#include <systemc>

#include "models/bus/router.h"
#include "models/cpu/cpu.h"
#include "models/devices/exit_device.h"
#include "models/devices/fw_cfg.h"
#include "models/devices/ioapic.h"
#include "models/devices/lapic.h"
#include "models/devices/pic8259.h"
#include "models/devices/pit8254.h"
#include "models/devices/uart16550.h"
#include "models/loader/multiboot.h"
#include "models/memory/cache_hierarchy.h"
#include "models/memory/pc_memory_map.h"
#include "models/memory/ram.h"
#include "models/vmm/trap_router.h"
#include "platforms/config/config.h"
#include "platforms/pc/machine_trace.h"

namespace pgsim::pc {

// Fixed addresses of the PC.
constexpr uint64_t kLapicBase = 0xFEE00000, kIoapicBase = 0xFEC00000, kMmioPage = 0x1000;
constexpr uint16_t kCom1 = 0x3F8, kPicMaster = 0x20, kPicSlave = 0xA0, kPit = 0x40, kPortB = 0x61,
                   kFwCfg = 0x510;
constexpr unsigned kIrqPit = 0, kIrqCom1 = 4, kIoapicPinPit = 2;

class PcBoard : public sc_core::sc_module {
 public:
  // Builds the machine from `config`, loads the guest, and sends its serial output to `serial`.
  PcBoard(sc_core::sc_module_name name, const config::Config& config, std::ostream& serial);

  models::Cpu& cpu() { return *cpu_; }
  models::Ram& ram() { return *ram_; }
  // The VMM the config's vmm.strategy names (its trap router is the core's trap hook); it is
  // attached at the start of simulation, when its memory can be reached through the bus.
  vmm::TrapRouter& vmm() { return *vmm_; }
  models::CacheHierarchy* caches() { return caches_.get(); }
  const models::multiboot::BootInfo& boot() const { return boot_; }
  uint64_t serial_bytes() const { return serial_bytes_; }
  // Before simulation: write the run's trace (platforms/pc/machine_trace.h) to `path`, from the
  // start of simulation, when the VMM exists. After it: close the trace (if any).
  void trace_to(const std::filesystem::path& path) { trace_path_ = path; }
  void close_trace();

 private:
  models::PcMemoryMap memory_map_;
  std::unique_ptr<models::CacheHierarchy> caches_;
  std::unique_ptr<models::Ram> ram_;
  std::unique_ptr<models::Ram> vmm_ram_;  // the VMM's own memory, above guest RAM
  std::unique_ptr<models::Router> memory_bus_, io_bus_;
  std::unique_ptr<models::Cpu> cpu_;
  std::unique_ptr<models::Lapic> lapic_;
  std::unique_ptr<models::Ioapic> ioapic_;
  std::unique_ptr<models::Pic8259> pic_master_, pic_slave_;
  std::unique_ptr<models::Pit8254> pit_;
  std::unique_ptr<models::Uart16550> com1_;
  std::unique_ptr<models::FwCfg> fw_cfg_;
  std::unique_ptr<models::ExitDevice> exit_;
  std::unique_ptr<vmm::TrapRouter> vmm_;
  models::multiboot::BootInfo boot_;
  uint64_t serial_bytes_ = 0;
  const config::Config& config_;
  uint64_t vmm_memory_base_ = 0, vmm_memory_size_ = 0;
  std::filesystem::path trace_path_;
  std::unique_ptr<MachineTrace> trace_;

  void start_of_simulation() override;
};

// The parameter structs of the modules, from the config.
models::TimingParams timing_params(const config::Config& c);
models::MmuParams mmu_params(const config::Config& c);
models::Cpu::Params cpu_params(const config::Config& c);

}  // namespace pgsim::pc
