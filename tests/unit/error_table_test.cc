// docs/api.md's error table and broker/service/error_mapping.cc must agree:
// every core error appears in the table with its code and reason, and the table
// lists nothing the broker does not send.
#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "broker/service/error_mapping.h"

namespace basin::service {
namespace {

std::string CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    default:
      return "code " + std::to_string(static_cast<int>(code));
  }
}

using Row = std::pair<std::string, std::string>;  // (code, reason)

// Rows look like "| RESOURCE_EXHAUSTED | `QUEUE_FULL` | when ... |".
std::optional<Row> ParseRow(const std::string& line) {
  std::vector<std::string> cells;
  std::stringstream in(line);
  for (std::string cell; std::getline(in, cell, '|');) {
    const auto b = cell.find_first_not_of(' ');
    const auto e = cell.find_last_not_of(' ');
    cells.push_back(b == std::string::npos ? "" : cell.substr(b, e - b + 1));
  }
  if (cells.size() < 3 || !cells[0].empty()) return std::nullopt;
  const std::string& reason = cells[2];
  if (reason.size() < 3 || reason.front() != '`' || reason.back() != '`') return std::nullopt;
  return Row{cells[1], reason.substr(1, reason.size() - 2)};
}

std::set<Row> DocumentedRows() {
  std::ifstream in(BASIN_API_DOC);
  EXPECT_TRUE(in.good()) << BASIN_API_DOC;
  std::set<Row> rows;
  bool in_errors = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("## ", 0) == 0) in_errors = line == "## Errors";
    if (!in_errors) continue;
    if (auto row = ParseRow(line)) rows.insert(*row);
  }
  return rows;
}

TEST(ErrorTableTest, DocsAndCodeAgree) {
  std::set<Row> from_code;
  for (core::Errc e : core::kAllErrcs) {
    const WireError w = ToWire(e);
    from_code.emplace(CodeName(w.code), std::string(w.reason));
  }
  const std::set<Row> documented = DocumentedRows();
  EXPECT_FALSE(documented.empty());
  for (const Row& r : from_code) {
    EXPECT_EQ(documented.count(r), 1u) << "not in docs/api.md: " << r.first << " " << r.second;
  }
  for (const Row& r : documented) {
    EXPECT_EQ(from_code.count(r), 1u) << "documented but not sent: " << r.first << " " << r.second;
  }
}

TEST(ErrorTableTest, EveryReasonIsUniqueExceptQueueClosed) {
  std::set<std::string> reasons;
  int closed = 0;
  for (core::Errc e : core::kAllErrcs) {
    const std::string reason(ToWire(e).reason);
    if (reason == "QUEUE_CLOSED") {
      ++closed;
      continue;
    }
    EXPECT_TRUE(reasons.insert(reason).second) << reason;
  }
  // Put on a closed queue (FAILED_PRECONDITION) and Get on a drained one (OUT_OF_RANGE).
  EXPECT_EQ(closed, 2);
}

}  // namespace
}  // namespace basin::service
