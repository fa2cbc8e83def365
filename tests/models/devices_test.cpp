// Device registers as a guest driver uses them (no simulation run: times are passed explicitly).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "models/devices/exit_device.h"
#include "models/devices/fw_cfg.h"
#include "models/devices/ioapic.h"
#include "models/devices/lapic.h"
#include "models/devices/pic8259.h"
#include "models/devices/pit8254.h"
#include "models/devices/uart16550.h"
#include "tests/models/tlm_access.h"

namespace pgsim::models {
namespace {

using sc_core::SC_NS;
using sc_core::sc_time;

TEST(Uart16550Test, TransmitsAndInterruptsOnEmptyHoldingRegister) {
  Uart16550 uart("uart_tx");
  std::string out;
  uart.output = [&](char c) { out += c; };
  uart.write(Uart16550::RBR_THR_DLL, 'h');
  uart.write(Uart16550::RBR_THR_DLL, 'i');
  EXPECT_EQ(out, "hi");
  EXPECT_EQ(uart.read(Uart16550::LSR) & (Uart16550::LSR_THRE | Uart16550::LSR_TEMT), 0x60);
  EXPECT_FALSE(uart.irq.level());
  uart.write(Uart16550::IER_DLM, Uart16550::IER_THRI);
  EXPECT_TRUE(uart.irq.level());
  EXPECT_EQ(uart.read(Uart16550::IIR_FCR) & 0x0F, Uart16550::IIR_THRI);  // reading IIR acknowledges
  EXPECT_FALSE(uart.irq.level());
  EXPECT_EQ(uart.read(Uart16550::IIR_FCR) & 0x0F, Uart16550::IIR_NO_INT);
  // The divisor latch hides THR while DLAB is set.
  uart.write(Uart16550::LCR, Uart16550::LCR_DLAB);
  uart.write(Uart16550::RBR_THR_DLL, 3);
  EXPECT_EQ(uart.read(Uart16550::RBR_THR_DLL), 3);
  EXPECT_EQ(out, "hi");
}

TEST(Uart16550Test, ReceivesInputBytes) {
  Uart16550 uart("uart_rx");
  EXPECT_EQ(uart.read(Uart16550::LSR) & Uart16550::LSR_DR, 0);
  uart.write(Uart16550::IER_DLM, Uart16550::IER_RDI);
  uart.push_input("ok");
  EXPECT_TRUE(uart.irq.level());
  EXPECT_EQ(uart.read(Uart16550::IIR_FCR) & 0x0F, Uart16550::IIR_RDI);
  EXPECT_EQ(uart.read(Uart16550::RBR_THR_DLL), 'o');
  EXPECT_EQ(uart.read(Uart16550::RBR_THR_DLL), 'k');
  EXPECT_EQ(uart.read(Uart16550::LSR) & Uart16550::LSR_DR, 0);
  EXPECT_FALSE(uart.irq.level());
}

TEST(ExitDeviceTest, StatusIsValueTimesTwoPlusOne) {
  ExitDevice exit_device("exit_test");
  int status = -1;
  exit_device.on_exit = [&](int s) { status = s; };
  uint32_t value = 0x10;
  EXPECT_EQ(tlm_access(exit_device.in.socket, tlm::TLM_WRITE_COMMAND, 0, &value, 1), tlm::TLM_OK_RESPONSE);
  EXPECT_EQ(status, 0x21);
}

TEST(FwCfgTest, SignatureRamSizeAndFileDirectory) {
  FwCfg fw("fw_cfg_test");
  fw.add_u64(FwCfg::RAM_SIZE, 0x12345678ull << 8);
  fw.add_file("etc/e820", FwCfg::e820_file({{0, 0x9FC00, 1}}));
  fw.select(FwCfg::SIGNATURE);
  std::string sig;
  for (int i = 0; i < 4; ++i) sig += static_cast<char>(fw.next_byte());
  EXPECT_EQ(sig, "QEMU");
  fw.select(FwCfg::RAM_SIZE);
  uint64_t ram = 0;
  for (int i = 0; i < 8; ++i) ram |= uint64_t{fw.next_byte()} << (8 * i);
  EXPECT_EQ(ram, 0x12345678ull << 8);
  fw.select(FwCfg::FILE_DIR);
  std::vector<uint8_t> dir;
  for (int i = 0; i < 4 + 64; ++i) dir.push_back(fw.next_byte());
  EXPECT_EQ(dir[3], 1);                   // one file, big-endian count
  EXPECT_EQ(dir[4 + 3], 20);              // its size: one e820 entry
  EXPECT_EQ(dir[4 + 4] << 8 | dir[4 + 5], FwCfg::FILE_FIRST);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(&dir[4 + 8])), "etc/e820");
  fw.select(0x1234);  // no such item: zeros
  EXPECT_EQ(fw.next_byte(), 0);
}

// The ICW sequence a kernel uses to move the PICs to vectors 0x20 and 0x28.
void remap(Pic8259& master, Pic8259& slave) {
  for (Pic8259* p : {&master, &slave}) p->write(Pic8259::COMMAND, 0x11);
  master.write(Pic8259::DATA, 0x20); slave.write(Pic8259::DATA, 0x28);
  master.write(Pic8259::DATA, 0x04); slave.write(Pic8259::DATA, 0x02);
  master.write(Pic8259::DATA, 0x01); slave.write(Pic8259::DATA, 0x01);
  master.write(Pic8259::DATA, 0x00); slave.write(Pic8259::DATA, 0x00);
}

TEST(Pic8259Test, EdgeRequestAcknowledgeEoiAndCascade) {
  Pic8259 master("pic_m"), slave("pic_s");
  master.cascade(slave);
  remap(master, slave);
  master.set_irq(0, true);
  EXPECT_TRUE(master.irq.level());
  EXPECT_EQ(master.acknowledge(), 0x20);
  EXPECT_FALSE(master.irq.level());
  EXPECT_EQ(master.isr(), 0x01);
  master.set_irq(0, false);
  master.set_irq(0, true);               // a second edge waits behind the one in service
  EXPECT_FALSE(master.irq.level());
  master.write(Pic8259::COMMAND, Pic8259::OCW2_EOI);
  EXPECT_TRUE(master.irq.level());
  EXPECT_EQ(master.acknowledge(), 0x20);
  master.write(Pic8259::COMMAND, Pic8259::OCW2_EOI);

  slave.set_irq(4, true);                // IRQ 12 through the cascade
  EXPECT_TRUE(master.irq.level());
  EXPECT_EQ(master.acknowledge(), 0x2C);
  EXPECT_EQ(slave.isr(), 0x10);
  slave.write(Pic8259::COMMAND, Pic8259::OCW2_EOI);
  master.write(Pic8259::COMMAND, Pic8259::OCW2_EOI);

  master.write(Pic8259::DATA, 0xFF);     // masked: no INT
  master.set_irq(1, true);
  EXPECT_FALSE(master.irq.level());
  master.write(Pic8259::COMMAND, Pic8259::OCW3_SELECT | Pic8259::OCW3_READ_IRR);
  EXPECT_EQ(master.read(Pic8259::COMMAND), 0x02);  // IR1 latched although masked
}

TEST(Pit8254Test, CounterValuesFollowSimulatedTime) {
  Pit8254 pit("pit_test");
  const sc_time t0(1000, SC_NS);
  pit.write(Pit8254::CONTROL, 0x34, t0);                // channel 0, LSB then MSB, mode 2
  pit.write(Pit8254::COUNTER0, 1000 & 0xFF, t0);
  pit.write(Pit8254::COUNTER0, 1000 >> 8, t0);
  // 100 input clocks later (1.193182 MHz).
  const sc_time t1 = t0 + sc_time(100.5 / 1193182.0, sc_core::SC_SEC);
  pit.write(Pit8254::CONTROL, 0x00, t1);                // latch channel 0
  const unsigned lo = pit.read(Pit8254::COUNTER0, t1 + sc_time(1, sc_core::SC_MS));
  const unsigned hi = pit.read(Pit8254::COUNTER0, t1 + sc_time(1, sc_core::SC_MS));
  EXPECT_EQ(lo | hi << 8, 900u);  // the latched value, not the later one
}

TEST(LapicTest, PriorityTprEoiAndTimer) {
  Lapic lapic("lapic_test", Lapic::Params{1e9, 3e9});
  const sc_time t0(0, SC_NS);
  lapic.write_register(Lapic::SVR, 0x1FF, t0);
  lapic.deliver(0x40, false);
  lapic.set_tpr(0x50);
  EXPECT_FALSE(lapic.has_pending());  // class 4 is not above TPR class 5
  lapic.set_tpr(0x00);
  EXPECT_TRUE(lapic.has_pending());
  lapic.deliver(0x61, false);
  EXPECT_EQ(lapic.acknowledge(), 0x61);  // highest first
  EXPECT_FALSE(lapic.has_pending());     // 0x40 is below the one in service
  EXPECT_EQ(lapic.read_register(Lapic::PPR, t0), 0x60u);
  lapic.write_register(Lapic::EOI, 0, t0);
  EXPECT_EQ(lapic.acknowledge(), 0x40);
  lapic.write_register(Lapic::EOI, 0, t0);
  EXPECT_FALSE(lapic.has_pending());

  // One-shot timer, divide by 1 (0xB), 1 GHz: 1000 ticks take 1 us.
  lapic.write_register(Lapic::TIMER_DIVIDE, 0xB, t0);
  lapic.write_register(Lapic::LVT_TIMER, 0x30, t0);
  lapic.write_register(Lapic::TIMER_INITIAL, 1000, t0);
  EXPECT_EQ(lapic.read_register(Lapic::TIMER_CURRENT, sc_time(250, SC_NS)), 750u);
  EXPECT_EQ(lapic.read_register(Lapic::TIMER_CURRENT, sc_time(2000, SC_NS)), 0u);
  // Divide by 16 (0x3).
  lapic.write_register(Lapic::TIMER_DIVIDE, 0x3, t0);
  lapic.write_register(Lapic::TIMER_INITIAL, 1000, t0);
  EXPECT_EQ(lapic.read_register(Lapic::TIMER_CURRENT, sc_time(1600, SC_NS)), 900u);
}

TEST(LapicTest, X2apicMsrsOnlyInX2apicMode) {
  Lapic lapic("lapic_x2", Lapic::Params{});
  uint64_t value = 0;
  EXPECT_FALSE(lapic.read_msr(0x803, value, sc_core::SC_ZERO_TIME));  // x2APIC off: #GP
  lapic.set_apic_base(0xFEE00000 | Lapic::APIC_BASE_ENABLE | Lapic::APIC_BASE_EXTD);
  ASSERT_TRUE(lapic.read_msr(0x803, value, sc_core::SC_ZERO_TIME));
  EXPECT_EQ(value, Lapic::kVersion);
  ASSERT_TRUE(lapic.write_msr(0x80F, 0x1FF, sc_core::SC_ZERO_TIME));  // SVR
  ASSERT_TRUE(lapic.write_msr(0x83F, 0x55, sc_core::SC_ZERO_TIME));   // SELF IPI
  EXPECT_TRUE(lapic.has_pending());
  EXPECT_EQ(lapic.acknowledge(), 0x55);
}

TEST(LapicTest, ExtIntPassesThePic) {
  Lapic lapic("lapic_extint", Lapic::Params{});
  bool pic_int = true;
  lapic.pic_pending = [&] { return pic_int; };
  lapic.pic_acknowledge = [&] { pic_int = false; return uint8_t{0x20}; };
  EXPECT_TRUE(lapic.has_pending());  // LINT0 in ExtINT mode, as the firmware leaves it
  EXPECT_EQ(lapic.acknowledge(), 0x20);
  lapic.write_register(Lapic::LVT_LINT0, Lapic::LVT_MASKED, sc_core::SC_ZERO_TIME);
  pic_int = true;
  EXPECT_FALSE(lapic.has_pending());
}

TEST(IoapicTest, EdgeAndLevelDelivery) {
  Ioapic ioapic("ioapic_test");
  std::vector<std::pair<int, bool>> delivered;
  ioapic.deliver = [&](uint8_t v, bool level) { delivered.push_back({v, level}); };
  auto program = [&](unsigned pin, uint64_t entry) {
    auto reg = [&](uint64_t off, uint32_t v) {
      tlm_access(ioapic.in.socket, tlm::TLM_WRITE_COMMAND, off, &v, 4);
    };
    reg(Ioapic::IOREGSEL, Ioapic::REDTBL0 + 2 * pin);
    reg(Ioapic::IOWIN, static_cast<uint32_t>(entry));
    reg(Ioapic::IOREGSEL, Ioapic::REDTBL0 + 2 * pin + 1);
    reg(Ioapic::IOWIN, static_cast<uint32_t>(entry >> 32));
  };
  ioapic.set_irq(4, true);  // masked at reset
  EXPECT_TRUE(delivered.empty());
  ioapic.set_irq(4, false);
  program(4, 0x31);
  ioapic.set_irq(4, true);
  ioapic.set_irq(4, false);
  ioapic.set_irq(4, true);
  ASSERT_EQ(delivered.size(), 2u);
  EXPECT_EQ(delivered[0], std::make_pair(0x31, false));

  program(9, 0x39 | Ioapic::RTE_LEVEL);
  ioapic.set_irq(9, true);
  ioapic.set_irq(9, true);
  EXPECT_EQ(delivered.size(), 3u);  // Remote IRR holds the level until EOI
  EXPECT_TRUE(ioapic.redirection(9) & Ioapic::RTE_REMOTE_IRR);
  ioapic.end_of_interrupt(0x39);    // still asserted: delivered again
  EXPECT_EQ(delivered.size(), 4u);
  ioapic.set_irq(9, false);
  ioapic.end_of_interrupt(0x39);
  EXPECT_EQ(delivered.size(), 4u);
  EXPECT_FALSE(ioapic.redirection(9) & Ioapic::RTE_REMOTE_IRR);
}

}  // namespace
}  // namespace pgsim::models
