// The classification as a report: a table (default), Markdown, or JSON (keys:
// profile, mode, instructions[], theorem1, theorem3).
#pragma once
#include <iosfwd>
#include <string>

#include "isa/classify/classifier.h"

namespace pgsim::isa::classify {

enum class ReportFormat { Table, Markdown, Json };

void write_report(const Classification& c, ReportFormat format, std::ostream& out);

}  // namespace pgsim::isa::classify
