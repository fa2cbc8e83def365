#include "models/trace/vcd_writer.h"

#include <algorithm>
#include <stdexcept>

namespace pgsim::models {

namespace {

// VCD identifiers: printable ASCII from '!' to '~', as short as the count allows.
std::string identifier(size_t n) {
  std::string id;
  do {
    id += static_cast<char>('!' + n % 94);
    n /= 94;
  } while (n > 0);
  return id;
}

std::string binary(uint64_t value) {
  if (value == 0) return "0";
  std::string bits;
  for (; value; value >>= 1) bits.insert(bits.begin(), static_cast<char>('0' + (value & 1)));
  return bits;
}

}  // namespace

VcdWriter::VcdWriter(const std::filesystem::path& path) : out_(path), path_(path) {
  if (!out_) throw std::runtime_error("cannot write the trace " + path.string());
}

VcdWriter::~VcdWriter() {
  if (out_.is_open()) out_.close();  // close() reports a failed write; a destructor cannot
}

VcdWriter::Signal VcdWriter::wire(const std::string& scope, const std::string& name, unsigned width) {
  signals_.push_back({scope, name, identifier(signals_.size()), width});
  return static_cast<Signal>(signals_.size() - 1);
}

VcdWriter::Signal VcdWriter::text(const std::string& scope, const std::string& name) { return wire(scope, name, 0); }

void VcdWriter::begin(const std::string& date) {
  out_ << "$date " << date << " $end\n$version pgsim $end\n";
  for (const std::string& line : comments_) out_ << "$comment " << line << " $end\n";
  out_ << "$timescale 1 ps $end\n";
  // Scopes in the order of their first signal, each signal in its scope's nest.
  std::vector<std::string> open;
  for (const Var& var : signals_) {
    std::vector<std::string> path;
    for (size_t start = 0, dot; start <= var.scope.size(); start = dot + 1) {
      dot = var.scope.find('.', start);
      if (dot == std::string::npos) dot = var.scope.size();
      path.push_back(var.scope.substr(start, dot - start));
    }
    size_t common = 0;
    while (common < open.size() && common < path.size() && open[common] == path[common]) ++common;
    for (size_t i = open.size(); i > common; --i) out_ << "$upscope $end\n";
    for (size_t i = common; i < path.size(); ++i) out_ << "$scope module " << path[i] << " $end\n";
    open = path;
    if (var.width == 0) out_ << "$var string 1 " << var.id << " " << var.name << " $end\n";
    else out_ << "$var wire " << var.width << " " << var.id << " " << var.name << " $end\n";
  }
  for (size_t i = open.size(); i > 0; --i) out_ << "$upscope $end\n";
  out_ << "$enddefinitions $end\n#0\n$dumpvars\n";
  for (const Var& var : signals_) out_ << (var.width == 0 ? "s- " : "b0 ") << var.id << "\n";
  out_ << "$end\n";
}

void VcdWriter::advance(Var& var, uint64_t ps) {
  uint64_t at = std::max(ps, time_);
  if (var.changed && var.changed_at == at) at = time_ + 1;
  if (at != time_) out_ << "#" << at << "\n";
  time_ = at;
  var.changed_at = at;
  var.changed = true;
}

void VcdWriter::change(Signal signal, uint64_t ps, uint64_t value) {
  Var& var = signals_[signal];
  advance(var, ps);
  var.value = value;
  out_ << "b" << binary(value) << " " << var.id << "\n";
}

void VcdWriter::change(Signal signal, uint64_t ps, std::string_view value) {
  Var& var = signals_[signal];
  advance(var, ps);
  out_ << "s";
  for (char c : value) out_ << (c == ' ' || c < '!' || c > '~' ? '_' : c);  // one word
  out_ << " " << var.id << "\n";
}

void VcdWriter::close() {
  if (!out_.is_open()) return;
  out_.close();
  if (!out_) throw std::runtime_error("cannot write the trace " + path_.string());
}

}  // namespace pgsim::models
