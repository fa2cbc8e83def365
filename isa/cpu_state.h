// Architectural state of one x86-64 logical processor (Intel SDM vol. 3, ch. 2-3).
// Plain data: the semantics live elsewhere. No SystemC here.
#pragma once
#include <array>
#include <cstdint>

namespace pgsim::isa {

// General-purpose registers in the encoding order of the ModRM reg field.
enum Gpr : unsigned { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

// Segment registers in the encoding order of MOV Sreg (SDM vol. 2, table 3-7).
enum SegReg : unsigned { ES, CS, SS, DS, FS, GS, kNumSegRegs };

// RFLAGS bits (SDM vol. 1, 3.4.3).
enum Rflags : uint64_t {
  CF = 1u << 0,    // carry
  RF1 = 1u << 1,   // reserved, always 1
  PF = 1u << 2,    // parity of the low byte
  AF = 1u << 4,    // auxiliary carry (BCD)
  ZF = 1u << 6,    // zero
  SF = 1u << 7,    // sign
  TF = 1u << 8,    // trap (single step)
  IF = 1u << 9,    // interrupt enable
  DF = 1u << 10,   // direction for string instructions
  OF = 1u << 11,   // overflow
  IOPL = 3u << 12, // I/O privilege level (two bits)
  NT = 1u << 14,   // nested task
  RF = 1u << 16,   // resume
  VM = 1u << 17,   // virtual-8086 mode
  AC = 1u << 18,   // alignment check / SMAP override
  VIF = 1u << 19,  // virtual interrupt flag
  VIP = 1u << 20,  // virtual interrupt pending
  ID = 1u << 21,   // CPUID available
};
constexpr unsigned kIoplShift = 12;

// CR0 bits (SDM vol. 3, 2.5).
enum Cr0 : uint64_t {
  CR0_PE = 1u << 0, CR0_MP = 1u << 1, CR0_EM = 1u << 2, CR0_TS = 1u << 3, CR0_ET = 1u << 4,
  CR0_NE = 1u << 5, CR0_WP = 1u << 16, CR0_AM = 1u << 18, CR0_NW = 1u << 29, CR0_CD = 1u << 30,
  CR0_PG = 1u << 31,
};

// CR4 bits (SDM vol. 3, 2.5).
enum Cr4 : uint64_t {
  CR4_VME = 1u << 0, CR4_PVI = 1u << 1, CR4_TSD = 1u << 2, CR4_DE = 1u << 3, CR4_PSE = 1u << 4,
  CR4_PAE = 1u << 5, CR4_MCE = 1u << 6, CR4_PGE = 1u << 7, CR4_PCE = 1u << 8,
  CR4_OSFXSR = 1u << 9, CR4_OSXMMEXCPT = 1u << 10, CR4_UMIP = 1u << 11, CR4_LA57 = 1u << 12,
  CR4_VMXE = 1u << 13, CR4_FSGSBASE = 1u << 16, CR4_PCIDE = 1u << 17, CR4_OSXSAVE = 1u << 18,
  CR4_SMEP = 1u << 20, CR4_SMAP = 1u << 21,
};

// The CR0 and CR4 bits the core implements (what MOV to CR0 keeps and MOV to CR4 accepts; the
// VMX capability MSRs IA32_VMX_CR0/CR4_FIXED1 advertise the same).
constexpr uint64_t kCr0Implemented = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM |
                                     CR0_NW | CR0_CD | CR0_PG;
constexpr uint64_t kCr4Implemented = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE |
                                     CR4_PGE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_UMIP | CR4_LA57 |
                                     CR4_PCIDE | CR4_SMEP | CR4_SMAP;

// IA32_EFER bits. LMSLE (AMD's long-mode segment limit enable, APM vol. 2 4.12.2) is a feature of
// the real CPU a VMM sets (binary translation keeps its own page above the guest's data segment
// limits with it); WRMSR does not offer it to guests (it raises #GP, as on CPUs without it).
enum Efer : uint64_t { EFER_SCE = 1u << 0, EFER_LME = 1u << 8, EFER_LMA = 1u << 10, EFER_NXE = 1u << 11, EFER_LMSLE = 1u << 13 };
// With EFER.LMSLE, at CPL > 0 in 64-bit mode, DS, ES and SS bound effective addresses in the top
// 4 GiB: an access there must lie at or below this base plus the segment's 32-bit limit (FS and GS,
// which keep 64-bit bases, and CS are not checked).
constexpr uint64_t kLmsleLimitBase = 0xFFFFFFFF00000000ull;

// Architectural MSR numbers the core implements.
enum Msr : uint32_t {
  MSR_TSC = 0x10,
  MSR_APIC_BASE = 0x1B,
  MSR_SYSENTER_CS = 0x174,
  MSR_SYSENTER_ESP = 0x175,
  MSR_SYSENTER_EIP = 0x176,
  MSR_PAT = 0x277,
  MSR_TSC_DEADLINE = 0x6E0,
  MSR_EFER = 0xC0000080,
  MSR_STAR = 0xC0000081,
  MSR_LSTAR = 0xC0000082,
  MSR_CSTAR = 0xC0000083,
  MSR_FMASK = 0xC0000084,
  MSR_FS_BASE = 0xC0000100,
  MSR_GS_BASE = 0xC0000101,
  MSR_KERNEL_GS_BASE = 0xC0000102,
  MSR_TSC_AUX = 0xC0000103,
};

// IA32_APIC_BASE.EXTD: x2APIC mode (with x2APIC only).
constexpr uint64_t kApicBaseExtd = 1u << 10;

// A segment register: the visible selector and the hidden descriptor cache (SDM vol. 3, 3.4.3).
struct Segment {
  uint16_t selector = 0;
  uint64_t base = 0;
  uint32_t limit = 0xFFFF;  // byte-granular, already scaled by G
  // Access rights in the layout of descriptor bits 40..55 (type, S, DPL, P, AVL, L, D/B, G),
  // i.e. (descriptor_high >> 8) & 0xF0FF, as LAR reports them shifted right by 8.
  uint16_t attr = 0;

  unsigned type() const { return attr & 0xF; }
  bool s() const { return attr & 0x10; }          // code/data (1) or system (0)
  unsigned dpl() const { return (attr >> 5) & 3; }
  bool present() const { return attr & 0x80; }
  bool l() const { return attr & 0x2000; }        // 64-bit code segment
  bool db() const { return attr & 0x4000; }       // default operand size 32 / big stack
  bool g() const { return attr & 0x8000; }
  unsigned rpl() const { return selector & 3; }
};

// GDTR / IDTR.
struct DescriptorTableReg {
  uint64_t base = 0;
  uint16_t limit = 0xFFFF;
};

// The execution mode, derived from CR0.PE, EFER.LMA, CS.L, CS.D and RFLAGS.VM.
enum class Mode : uint8_t { Real, Virtual8086, Protected16, Protected32, Compat16, Compat32, Long64 };

struct CpuState {
  std::array<uint64_t, 16> gpr{};
  uint64_t rip = 0;
  uint64_t rflags = RF1;

  std::array<Segment, kNumSegRegs> seg{};
  DescriptorTableReg gdtr, idtr;
  Segment ldtr, tr;

  uint64_t cr0 = CR0_ET | CR0_NW | CR0_CD;
  uint64_t cr2 = 0, cr3 = 0, cr4 = 0;
  uint64_t cr8 = 0;  // task priority (mirrors the local APIC TPR bits 7:4)
  std::array<uint64_t, 8> dr{0, 0, 0, 0, 0, 0, 0xFFFF0FF0, 0x400};

  uint64_t efer = 0;
  uint64_t star = 0, lstar = 0, cstar = 0, fmask = 0;
  uint64_t kernel_gs_base = 0;
  uint64_t sysenter_cs = 0, sysenter_esp = 0, sysenter_eip = 0;
  uint64_t pat = 0x0007040600070406ull;
  uint64_t tsc_aux = 0;
  uint64_t apic_base = 0xFEE00900;  // BSP, xAPIC enabled

  uint64_t tsc = 0;      // time-stamp counter; the platform advances it with simulated cycles
  bool halted = false;   // HLT executed, waiting for an interrupt
  bool interrupt_shadow = false;  // STI / MOV SS: interrupts inhibited for one instruction

  // CPL is the DPL of the hidden CS descriptor (SS.DPL equals it); in real mode it is 0.
  unsigned cpl() const { return (cr0 & CR0_PE) ? ((rflags & VM) ? 3 : seg[CS].dpl()) : 0; }
  unsigned iopl() const { return (rflags >> kIoplShift) & 3; }
  bool long_mode_active() const { return efer & EFER_LMA; }
  bool paging() const { return cr0 & CR0_PG; }

  Mode mode() const {
    if (!(cr0 & CR0_PE)) return Mode::Real;
    if (rflags & VM) return Mode::Virtual8086;
    if (long_mode_active()) {
      if (seg[CS].l()) return Mode::Long64;
      return seg[CS].db() ? Mode::Compat32 : Mode::Compat16;
    }
    return seg[CS].db() ? Mode::Protected32 : Mode::Protected16;
  }
};

}  // namespace pgsim::isa
