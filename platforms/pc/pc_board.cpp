#include "platforms/pc/pc_board.h"

#include <fstream>
#include <iterator>
#include <sstream>

#include "isa/system/profile.h"
#include "platforms/config/cpu_model.h"
#include "platforms/config/vmm_settings.h"

namespace pgsim::pc {


models::TimingParams timing_params(const config::Config& c) {
  using C = isa::InsnClass;
  models::TimingParams t;
  t.clock_hz = c.f64("cpu.frequency_mhz") * 1e6;
  t.set_cpi(C::Alu, c.f64("timing.cpi.alu"));
  t.set_cpi(C::Nop, c.f64("timing.cpi.alu"));
  t.set_cpi(C::Fence, c.f64("timing.cpi.alu"));
  t.set_cpi(C::Unimplemented, c.f64("timing.cpi.alu"));
  t.set_cpi(C::Mul, c.f64("timing.cpi.mul"));
  t.set_cpi(C::Div, c.f64("timing.cpi.div"));
  t.set_cpi(C::Branch, c.f64("timing.cpi.branch"));
  t.set_cpi(C::Load, c.f64("timing.cpi.load"));
  t.set_cpi(C::Store, c.f64("timing.cpi.store"));
  t.set_cpi(C::Rmw, c.f64("timing.cpi.load") + c.f64("timing.cpi.store"));  // a load and a store
  t.set_cpi(C::String, c.f64("timing.cpi.string"));
  t.set_cpi(C::System, c.f64("timing.cpi.system"));
  t.set_cpi(C::Iret, static_cast<double>(c.u64("timing.iret_cycles")));
  t.set_syscall_round_trip(static_cast<double>(c.u64("timing.syscall_cycles")));
  t.string_iteration_millicycles =
      static_cast<uint64_t>(c.f64("timing.cpi.string") * models::TimingParams::kMilli + 0.5);
  t.exception_cycles = c.u64("timing.exception_cycles");
  t.interrupt_cycles = c.u64("timing.interrupt_cycles");
  t.io_cycles = static_cast<uint64_t>(c.f64("timing.cpi.io") + 0.5);
  return t;
}

models::MmuParams mmu_params(const config::Config& c) {
  models::MmuParams m;
  auto tlb = [&](const std::string& level, models::TlbGeometry& g) {
    g.entries = c.flag("mmu.tlb.enabled") ? static_cast<unsigned>(c.u64("mmu.tlb." + level + ".entries")) : 0;
    g.ways = static_cast<unsigned>(c.u64("mmu.tlb." + level + ".ways"));
    g.page_sizes.clear();
    for (const std::string& size : c.list("mmu.tlb." + level + ".page_sizes"))
      g.page_sizes.push_back(models::page_size_from_name(size));
  };
  tlb("l1i", m.l1i);
  tlb("l1d", m.l1d);
  tlb("l2", m.l2);
  m.l2_hit_cycles = c.u64("mmu.tlb.l2.hit_cycles");
  m.honour_pcid = c.flag("mmu.tlb.pcid");
  const bool pwc = c.flag("mmu.pwc.enabled");
  auto entries = [&](const char* key) { return pwc ? static_cast<unsigned>(c.u64(key)) : 0u; };
  // Levels 2 (PDE), 3 (PDPTE), 4 (PML4E) and 5 (PML5E, sharing the PML4E setting).
  m.walk_cache_entries = {entries("mmu.pwc.pde_entries"), entries("mmu.pwc.pdpte_entries"),
                          entries("mmu.pwc.pml4e_entries"), entries("mmu.pwc.pml4e_entries")};
  m.nested_tlb.entries = c.flag("mmu.tlb.enabled") ? static_cast<unsigned>(c.u64("mmu.nested.tlb.entries")) : 0;
  m.nested_tlb.ways = static_cast<unsigned>(c.u64("mmu.nested.tlb.ways"));
  const bool nested_pwc = c.flag("mmu.nested.pwc.enabled");
  auto nested_entries = [&](const char* key) { return nested_pwc ? static_cast<unsigned>(c.u64(key)) : 0u; };
  m.nested_walk_cache_entries = {nested_entries("mmu.nested.pwc.pde_entries"),
                                 nested_entries("mmu.nested.pwc.pdpte_entries"),
                                 nested_entries("mmu.nested.pwc.pml4e_entries"),
                                 nested_entries("mmu.nested.pwc.pml4e_entries")};
  m.memory_latency = c.u64("memory.latency_cycles");
  return m;
}

models::Cpu::Params cpu_params(const config::Config& c) {
  models::Cpu::Params p;
  p.quantum = sc_core::sc_time(static_cast<double>(c.u64("run.quantum_ns")), sc_core::SC_NS);
  p.max_instructions = c.u64("run.max_instructions");
  p.max_seconds = c.f64("run.max_seconds");
  p.max_host_seconds = c.f64("run.max_host_seconds");
  p.max_steps = c.u64("run.max_steps");
  p.no_progress_faults = c.u64("run.no_progress_faults");
  p.profile = isa::load_profile(c.str("cpu.profile"));
  p.cpu_model = config::cpu_model(c, &p.profile);
  p.compiled_blocks = c.flag("cpu.compiled_blocks");
  return p;
}

namespace {
std::unique_ptr<models::CacheHierarchy> cache_hierarchy(const config::Config& c) {
  if (!c.flag("cache.enabled")) return nullptr;
  std::vector<models::CacheGeometry> levels;
  for (const char* level : {"l1d", "l2", "llc"}) {
    const std::string k = std::string("cache.") + level;
    levels.push_back({level, c.u64(k + ".size"), static_cast<unsigned>(c.u64(k + ".ways")),
                      static_cast<unsigned>(c.u64("cache.line_bytes")), c.u64(k + ".hit_cycles")});
  }
  return std::make_unique<models::CacheHierarchy>(levels, c.u64("memory.latency_cycles"));
}

std::string read_whole_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw std::runtime_error(p.string() + ": cannot open the serial input file");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

PcBoard::PcBoard(sc_core::sc_module_name name, const config::Config& c, std::ostream& serial)
    : sc_module(name), config_(c) {
  memory_map_.ram_size = c.u64("memory.size");
  const models::TimingParams timing = timing_params(c);

  // Memory, buses, CPU.
  caches_ = cache_hierarchy(c);
  ram_ = std::make_unique<models::Ram>("ram", models::Ram::Params{memory_map_.ram_size});
  memory_bus_ = std::make_unique<models::Router>("memory_bus");
  io_bus_ = std::make_unique<models::Router>("io_bus");
  cpu_ = std::make_unique<models::Cpu>("cpu", cpu_params(c), timing, mmu_params(c), caches_.get());
  cpu_->mem.bind(memory_bus_->in);
  cpu_->io.bind(io_bus_->in);
  memory_bus_->map(0, memory_map_.low_size(), ram_->in, 0, "RAM below 4 GiB");
  if (memory_map_.high_size() > 0)
    memory_bus_->map(models::PcMemoryMap::kHighRamBase, memory_map_.high_size(), ram_->in,
                     memory_map_.low_size(), "RAM above 4 GiB");

  // Interrupt controllers.
  models::Lapic::Params lapic_params;
  lapic_params.timer_hz = c.f64("devices.apic.timer_mhz") * 1e6;
  lapic_params.tsc_hz = timing.clock_hz;
  lapic_ = std::make_unique<models::Lapic>("lapic", lapic_params);
  ioapic_ = std::make_unique<models::Ioapic>("ioapic");
  // The 8259s as the firmware leaves them: vectors 0x08 and 0x70, timer, keyboard and cascade
  // unmasked on the master, the slave masked.
  pic_master_ = std::make_unique<models::Pic8259>("pic_master", models::Pic8259::InitialState{0x08, 0xF8});
  pic_slave_ = std::make_unique<models::Pic8259>("pic_slave", models::Pic8259::InitialState{0x70, 0xFF});
  pic_master_->cascade(*pic_slave_);
  memory_bus_->map(kLapicBase, kMmioPage, lapic_->in.socket, 0, "local APIC");
  memory_bus_->map(kIoapicBase, kMmioPage, ioapic_->in.socket, 0, "I/O APIC");
  io_bus_->map(kPicMaster, 2, pic_master_->in.socket, 0, "8259 master");
  io_bus_->map(kPicSlave, 2, pic_slave_->in.socket, 0, "8259 slave");

  lapic_->set_apic_base(cpu_->core().state().apic_base);
  lapic_->pic_pending = [this] { return pic_master_->irq.level(); };
  lapic_->pic_acknowledge = [this] { return pic_master_->acknowledge(); };
  lapic_->on_level_eoi = [this](uint8_t vector) { ioapic_->end_of_interrupt(vector); };
  // The core polls its interrupt source at every boundary after a notification, for as long as an
  // interrupt stays pending; a notification with nothing pending would only cost it time.
  lapic_->on_interrupt = [this] {
    if (lapic_->has_pending() || lapic_->nmi_pending()) cpu_->core().notify_interrupt();
  };
  pic_master_->irq.connect([this](bool) { lapic_->notify_interrupt(); });
  ioapic_->deliver = [this](uint8_t vector, bool level) { lapic_->deliver(vector, level); };
  cpu_->attach_interrupt_controller(*lapic_);

  // Timer, serial port, firmware configuration, exit device.
  models::Pit8254::InitialState pit_init;
  pit_init.input_hz = c.f64("devices.pit.frequency_hz");
  pit_ = std::make_unique<models::Pit8254>("pit", pit_init);
  io_bus_->map(kPit, 4, pit_->in.socket, 0, "8254 PIT");
  io_bus_->map(kPortB, 1, pit_->port_b.socket, 0, "system control port B");
  pit_->irq.connect([this](bool level) {
    pic_master_->set_irq(kIrqPit, level);
    ioapic_->set_irq(kIoapicPinPit, level);
  });

  com1_ = std::make_unique<models::Uart16550>("com1");
  io_bus_->map(kCom1, 8, com1_->in.socket, 0, "COM1");
  com1_->irq.connect([this](bool level) {
    pic_master_->set_irq(kIrqCom1, level);
    ioapic_->set_irq(kIrqCom1, level);
  });
  com1_->output = [this, &serial](char ch) {
    serial.put(ch);
    ++serial_bytes_;
  };
  if (const auto input = c.path("guest.serial_input"); !input.empty()) com1_->push_input(read_whole_file(input));

  fw_cfg_ = std::make_unique<models::FwCfg>("fw_cfg");
  io_bus_->map(kFwCfg, 2, fw_cfg_->in.socket, 0, "fw_cfg");
  fw_cfg_->add_u64(models::FwCfg::RAM_SIZE, memory_map_.ram_size);
  fw_cfg_->add_u16(models::FwCfg::NB_CPUS, 1);
  fw_cfg_->add_u16(models::FwCfg::MAX_CPUS, 1);
  std::vector<models::FwCfg::E820Entry> e820;
  for (const models::MemoryRange& r : memory_map_.e820()) e820.push_back({r.base, r.length, r.type});
  fw_cfg_->add_file("etc/e820", models::FwCfg::e820_file(e820));

  exit_ = std::make_unique<models::ExitDevice>("exit");
  io_bus_->map(static_cast<uint16_t>(c.u64("devices.exit_port")), 4, exit_->in.socket, 0, "exit device");
  exit_->on_exit = [this](int status) { cpu_->request_exit(status); };

  // The guest.
  models::multiboot::BootRequest boot;
  boot.kernel = c.existing_file("guest.kernel");
  boot.cmdline = c.str("guest.cmdline");
  for (const std::string& m : c.list("guest.modules")) boot.modules.push_back({m, m});
  boot.memory = memory_map_;
  boot_ = models::multiboot::load(boot, {ram_->data(), memory_map_.low_size()});
  models::multiboot::set_entry_state(boot_, cpu_->core().state());
  cpu_->core().sync_mode();

  // The VMM's structures live in RAM of its own above guest RAM, which the guest's memory map,
  // fw_cfg and the Multiboot information never mention. It is attached at the start of simulation.
  config::check_vmm_config(c);
  const std::string strategy = c.str("vmm.strategy");
  if (const uint64_t size = vmm::vmm_memory_needed(strategy); size > 0) {
    vmm_memory_base_ = models::PcMemoryMap::kHighRamBase + memory_map_.high_size();
    vmm_memory_size_ = size;
    vmm_ram_ = std::make_unique<models::Ram>("vmm_ram", models::Ram::Params{size});
    memory_bus_->map(vmm_memory_base_, size, vmm_ram_->in, 0, "VMM memory");
  }
}

void PcBoard::start_of_simulation() {
  vmm::Machine machine{cpu_->core(), cpu_.get(), vmm_memory_base_, vmm_memory_size_, &cpu_->cycles().io_accesses,
                       &cpu_->mmu(), {{0, memory_map_.low_size()}}};
  if (memory_map_.high_size() > 0) machine.guest_ram.push_back({models::PcMemoryMap::kHighRamBase, memory_map_.high_size()});
  // Guest RAM is one Ram: the low part at its start, the part above 4 GiB after it.
  machine.ram_untouched = [this](uint64_t paddr, uint64_t size) {
    const uint64_t low = memory_map_.low_size(), high = models::PcMemoryMap::kHighRamBase;
    if (paddr < low && size <= low - paddr) return ram_->untouched(paddr, size);
    if (paddr >= high && paddr - high < memory_map_.high_size()) return ram_->untouched(low + (paddr - high), size);
    return false;
  };
  vmm_ = config::attach_vmm(config_, machine);
  vmm::TrapRouter* router = vmm_.get();
  cpu_->cycles().set_external_charges({[router] { return router->vmm().cycles().total(); },
                                       [router] { return router->exceptions_taken(); },
                                       [router] { return router->interrupts_taken(); },
                                       [router] { return router->vmm().device_accesses_modelled(); }});
  if (!trace_path_.empty()) trace_ = std::make_unique<MachineTrace>(trace_path_, *cpu_, *router);
}

void PcBoard::close_trace() {
  if (trace_) trace_->close();
}

}  // namespace pgsim::pc
