// Device memory under trap_emulate, and every emulated instruction counted by mnemonic. The
// shadow page tables never map a frame that is not RAM: each guest access to a device register
// faults, and the VMM carries it out on the virtual CPU, whose access reaches the device through
// the bus. A hand-built guest reads and writes a device register N times; the device must see
// exactly what it sees natively, and the VMM must count exactly N MMIO traps per access kind.
#include <gtest/gtest.h>

#include "models/stats/stats.h"
#include "tests/vmm/deprivileged_machine.h"

namespace pgsim {
namespace {

using test::DeprivilegedMachine;
using test::kCode;
using vmm::TrapCause;

using test::cat;
using test::imm32;

// A device of registers at the local APIC's usual place, outside the machine's RAM, mapped by the
// guest's tables (a 2 MiB page through a PD of its own for the fourth GiB).
constexpr uint64_t kDevice = 0xFEE00000, kDevicePd = 0x103000;
constexpr uint64_t kReadOffset = 0x20, kWriteOffset = 0xB0;

struct DeviceLog {
  struct Access {
    bool write;
    uint64_t offset;
    unsigned size;
    uint64_t value;
    bool operator==(const Access&) const = default;
  };
  std::vector<Access> accesses;
  uint64_t reads = 0, writes = 0;
};

void add_device(DeprivilegedMachine& m, DeviceLog& log) {
  m.ram.add_device(kDevice, 4096,
                   {[&log](uint64_t offset, unsigned size) {
                      const uint64_t value = 0x1000 + log.reads++;  // each read sees a new value
                      log.accesses.push_back({false, offset, size, value});
                      return value;
                    },
                    [&log](uint64_t offset, unsigned size, uint64_t value) {
                      ++log.writes;
                      log.accesses.push_back({true, offset, size, value});
                    }});
  m.ram.put<uint64_t>(test::kPdpt + 3 * 8, kDevicePd | test::kPteP | test::kPteRw);
  m.ram.put<uint64_t>(kDevicePd + ((kDevice >> 21) & 511) * 8,
                      kDevice | test::kPteP | test::kPteRw | test::kPtePs);
}

// mov ebx, kDevice ; mov ecx, n ; L: mov eax, [rbx+0x20] ; add edi, eax ; mov [rbx+0xB0], ecx ;
// dec ecx ; jnz L ; jmp $
std::vector<uint8_t> device_loop(uint32_t n) {
  return cat({{0xBB}, imm32(static_cast<uint32_t>(kDevice)), {0xB9}, imm32(n),
              {0x8B, 0x43, uint8_t(kReadOffset), 0x01, 0xC7, 0x89, 0x8B}, imm32(kWriteOffset),
              {0xFF, 0xC9, 0x75, 0xF1, 0xEB, 0xFE}});
}
constexpr uint64_t kDeviceLoopEnd = 10 + 15;  // offset of the final jmp $
// Instructions the real CPU retires natively: the two MOVs, then per iteration the two device
// accesses, ADD, DEC and JNZ. Deprivileged, the device accesses retire on the virtual CPU instead.
constexpr uint64_t native_steps(uint64_t n) { return 2 + 5 * n; }
constexpr uint64_t direct_steps(uint64_t n) { return 2 + 3 * n; }

TEST(TrapEmulateMmio, EachDeviceAccessTrapsOnceAndReachesTheDeviceAsItDoesNatively) {
  for (uint32_t n : {1u, 10u, 300u}) {
    SCOPED_TRACE(n);
    DeviceLog native_log, te_log;
    DeprivilegedMachine native("x86-pg");  // no VMM: the kernel at CPL 0 on its own tables
    add_device(native, native_log);
    native.load_code(kCode, device_loop(n));
    EXPECT_EQ(native.core.run(native_steps(n)), native_steps(n));
    EXPECT_EQ(native.state().rip, kCode + kDeviceLoopEnd);

    DeprivilegedMachine m("x86-pg");
    add_device(m, te_log);
    vmm::TrapEmulateVmm& vmm = m.start(device_loop(n));
    EXPECT_EQ(m.core.run(direct_steps(n)), direct_steps(n));
    EXPECT_EQ(m.state().rip, kCode + kDeviceLoopEnd);
    // The device saw the same accesses, in the same order, with the same values.
    EXPECT_EQ(te_log.accesses, native_log.accesses);
    EXPECT_EQ(te_log.reads, n);
    EXPECT_EQ(te_log.writes, n);
    EXPECT_EQ(m.state().gpr[isa::RDI], native.state().gpr[isa::RDI]);  // the sum of what was read
    // One MMIO trap per device access. The only other trap is the hidden fault of the code page at
    // the first fetch (the first device access's walk meets the guest's page directory of the
    // fourth GiB, a new guest page table, which is write-protected where a shadow maps it: nowhere
    // yet). The device page is never filled into the shadow.
    EXPECT_EQ(m.traps(TrapCause::Mmio), 2u * n);
    EXPECT_EQ(m.traps(TrapCause::PageFault), 1u);
    EXPECT_EQ(m.router->total_traps(), 2u * n + 1);
    EXPECT_EQ(vmm.emulated_mmio(), 2u * n);
    EXPECT_EQ(vmm.emulated(), 2u * n);
    EXPECT_EQ(vmm.emulated_by_mnemonic().of("mov"), 2u * n);
    EXPECT_EQ(vmm.shadow().hidden_faults, 1u);
    EXPECT_EQ(vmm.shadow().fills, 1u);
    EXPECT_EQ(m.router->vmm().resource_control_violations(), 0u);
  }
}

TEST(TrapEmulateMmio, EveryCycleOfAnMmioAccessIsChargedToItsOwnBucket) {
  DeviceLog log;
  DeprivilegedMachine m("x86-pg");
  add_device(m, log);
  vmm::VmmCosts costs;
  costs.trap = 100;
  costs.resume = 10;
  costs.emulate = 7;  // not charged: MMIO has its own handler cost
  costs.emulate_mmio = 1000;
  costs.shadow_fill = 10000;
  costs.device_model = 3;
  vmm::TrapEmulateVmm& vmm = m.start(device_loop(5), costs);
  m.core.run(direct_steps(5));
  // 11 traps (10 device accesses, the hidden fault of the code page as above), each with a return;
  // 10 MMIO emulations, each one access to the software device; 1 fill.
  EXPECT_EQ(vmm.device_accesses_modelled(), 10u);
  EXPECT_EQ(vmm.cycles().total(), 11 * (100 + 10) + 10 * (1000 + 3) + 10000u);
  uint64_t mmio_bucket = 0;
  for (const vmm::VmmCycles::Bucket& b : vmm.cycles().buckets())
    if (b.name == "vmm_emulate_mmio") mmio_bucket = b.value();
  EXPECT_EQ(mmio_bucket, 10 * 1000u);
}

// The shadow itself refuses a frame that is not RAM, whoever asks.
TEST(TrapEmulateMmio, TheShadowRefusesToMapDeviceMemory) {
  DeviceLog log;
  DeprivilegedMachine m("x86-pg");
  add_device(m, log);
  vmm::ShadowPager shadow(m.ram, test::kGuestRam + 64 * 4096, 64, 2, test::kGuestRam, 1);
  EXPECT_TRUE(shadow.is_ram(0x200000));
  EXPECT_FALSE(shadow.is_ram(kDevice + 0xB0));
  EXPECT_FALSE(shadow.is_ram(test::kGuestRam + test::kVmmMemory + (64ull << 20)));  // nothing there
  isa::WalkResult device;
  device.ok = true;
  device.paddr = kDevice;
  EXPECT_THROW(shadow.fill(shadow.root(test::kPml4, false), kDevice, device, true, {}), std::logic_error);
}

// Every instruction the VMM emulates is counted by mnemonic, whatever brought it to the VMM: a
// privileged instruction that trapped (CLI, STI, MOV from and to CR3, OUT, and a far JMP, which
// x86-pg makes trap outside ring 0), a write to the guest's page tables (traced), an access to
// device memory.
TEST(TrapEmulateMmio, EmulatedInstructionsAreCountedByMnemonic) {
  DeviceLog log;
  DeprivilegedMachine m("x86-pg");
  add_device(m, log);
  m.state().gpr[isa::RBX] = kDevice;
  m.state().gpr[isa::RSI] = test::kPd + 8 * 9;  // a PDE of the guest's, rewritten with its own value
  constexpr uint64_t kFarPointer = kCode + 0x100, kEnd = kCode + 23;  // kEnd: the final jmp $
  m.state().gpr[isa::RDI] = kFarPointer;
  m.ram.put<uint32_t>(kFarPointer, static_cast<uint32_t>(kEnd));  // m16:32 -> 0x08:kEnd
  m.ram.put<uint16_t>(kFarPointer + 4, test::kKernelCode);
  const std::vector<uint8_t> code = cat({
      {0xFA, 0xFB},                          // cli ; sti
      {0x0F, 0x20, 0xD8, 0x0F, 0x22, 0xD8},  // mov rax, cr3 ; mov cr3, rax
      {0xE6, 0x80, 0xE6, 0x80},              // out 0x80, al (twice)
      {0x48, 0x8B, 0x16, 0x48, 0x89, 0x16},  // mov rdx, [rsi] ; mov [rsi], rdx (traced)
      {0x8B, 0x4B, uint8_t(kReadOffset)},    // mov ecx, [rbx+0x20] (MMIO)
      {0xFF, 0x2F},                          // jmp far [rdi]
      {0xEB, 0xFE}});                        // jmp $
  ASSERT_EQ(code.size(), kEnd - kCode + 2);
  vmm::TrapEmulateVmm& vmm = m.start(code);
  m.core.run(2);  // the load of the PDE, jmp $ (all else is emulated)
  EXPECT_EQ(m.state().rip, kEnd);
  EXPECT_EQ(m.state().seg[isa::CS].selector, test::kKernelCode | 3);
  EXPECT_EQ(m.state().gpr[isa::RCX], 0x1000u);
  EXPECT_EQ(vmm.shadow().traced_writes, 1u);
  EXPECT_EQ(vmm.emulated(), 9u);
  const std::map<std::string, uint64_t> expected{{"cli", 1}, {"sti", 1}, {"mov_cr", 2}, {"out", 2},
                                                 {"mov", 2}, {"jmp_far", 1}};
  EXPECT_EQ(vmm.emulated_by_mnemonic().by_mnemonic(), expected);

  stats::Registry r;
  m.router->bind_statistics(r);
  const auto samples = r.snapshot();
  std::map<std::string, uint64_t> published;
  for (const stats::Sample& s : samples) {
    if (s.name.rfind("vmm.emulated.", 0) != 0) continue;
    published[s.name.substr(13)] = std::get<uint64_t>(s.value);
    EXPECT_EQ(s.unit, stats::Unit::Instructions);
    EXPECT_FALSE(s.description.empty());
  }
  EXPECT_EQ(published, expected);
  uint64_t mmio_traps = ~0ull;
  for (const stats::Sample& s : samples)
    if (s.name == "vmm.traps.mmio") mmio_traps = std::get<uint64_t>(s.value);
  EXPECT_EQ(mmio_traps, 1u);
}

}  // namespace
}  // namespace pgsim
