// vmm_guest_run: boots the guest kernel on the PC board under the VMM strategy the config names,
// prints the guest's serial output, then one line of figures:
//   vmm-run: end=<how the run ended> status=<exit device> insts=<real CPU> traps=<VMM traps>
//            vmm_cycles=<VMM buckets> leaks=<leaks> violations=<resource-control violations>
//            io_cycles=<sim.cycles.io: physical device latency>
//            modelled=<device accesses served by the VMM's software devices>
//            mmio_traps=<device-memory accesses trapped> serial_bytes=<bytes the guest wrote to its UART>
//            exits=<VM exits> [exits.<reason>=<VM exits> ...] walks=<page walks>
//            walk_guest_refs=<guest-dimension references> walk_nested_refs=<EPT references>
//            [interpreted=<trap_emulate: guest instructions not run directly>]
//            [emulated.<mnemonic>=<instructions emulated> ...]
//            [binary_translation: kernel_leaks=<leaks of kernel code> leaks.sgdt=<SGDT leaks>
//             units=<translation units> callouts=<callouts executed>]
// One process per run (SystemC elaborates one design per process); vmm_guest_test drives it.
// Usage: vmm_guest_run CONFIG [key=value ...]
#include <iostream>
#include <memory>
#include <sstream>

#include "models/vmm/binary_translation.h"
#include "models/vmm/trap_emulate.h"
#include "models/vmm/trap_router.h"
#include "platforms/config/config.h"
#include "platforms/pc/pc_board.h"

int main(int argc, char** argv) {
  using namespace pgsim;
  if (argc < 2) {
    std::cerr << "usage: vmm_guest_run CONFIG [key=value ...]\n";
    return 2;
  }
  try {
    const config::Config c = config::load(argv[1], std::vector<std::string>(argv + 2, argv + argc));
    std::ostringstream serial;
    auto board = std::make_unique<pc::PcBoard>("pc", c, serial);
    sc_core::sc_start();
    const vmm::TrapRouter* router = &board->vmm();  // attached by the board at the start of simulation
    models::Cpu& cpu = board->cpu();
    std::cout << serial.str() << "vmm-run: end=" << models::to_string(cpu.end()) << " status=" << cpu.exit_status()
              << " insts=" << board->cpu().core().counters().retired << " traps=" << router->total_traps()
              << " vmm_cycles=" << router->vmm().cycles().total() << " leaks=" << router->vmm().leaks().total()
              << " violations=" << router->vmm().resource_control_violations()
              << " io_cycles=" << cpu.cycles().bucket(models::Bucket::Io)
              << " modelled=" << router->vmm().device_accesses_modelled()
              << " mmio_traps=" << router->traps(vmm::TrapCause::Mmio) << " serial_bytes=" << serial.str().size();
    std::cout << " exits=" << router->vmm().exits().total();
    for (const auto& [reason, count] : router->vmm().exits().by_name()) std::cout << " exits." << reason << "=" << count;
    const models::MmuCounters& mmu = cpu.mmu().counters();
    std::cout << " walks=" << mmu.walks << " walk_guest_refs=" << mmu.walk_guest_refs
              << " walk_nested_refs=" << mmu.walk_nested_refs;
    if (const auto* te = dynamic_cast<const vmm::TrapEmulateVmm*>(&router->vmm())) {
      std::cout << " interpreted=" << te->interpreted();
      for (const auto& [mnemonic, count] : te->emulated_by_mnemonic().by_mnemonic())
        std::cout << " emulated." << mnemonic << "=" << count;
    }
    if (const auto* bt = dynamic_cast<const vmm::BinaryTranslationVmm*>(&router->vmm()))
      std::cout << " kernel_leaks=" << bt->counters().kernel_leaks
                << " leaks.sgdt=" << bt->leaks().of(isa::SensitiveInsn::Sgdt).count
                << " units=" << bt->translator().counters().units << " callouts=" << bt->callouts().total();
    std::cout << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "vmm_guest_run: " << e.what() << "\n";
    return 3;
  }
}
