// Replay of one segment file: hands each intact record to a visitor, in
// order, and says where the good records end. SegmentedLog::Open calls it for
// each segment and decides what to do with the rest (record_format.h has the
// bytes).
//
// Damage is treated by where it is:
//   - in the tail (the segment being written when the broker stopped) it can
//     only be a torn write: replay stops at the first bad record, and the log
//     is cut there;
//   - in a sealed format-2 segment it is damage to the disk: replay reports it
//     and carries on from the next record that verifies *at its position*, so
//     a record image inside a payload never passes for a record;
//   - in a sealed format-1 segment (no positions in its CRCs, so the next
//     record found could be a payload's) replay reports the rest of the
//     segment as damage.
// Reading is through a window of the file, never the whole file at once, and
// every candidate record costs constant work until its header verifies: the
// work is linear in the segment's size whatever its bytes are.
#pragma once

#include <cstdint>
#include <string>

#include "broker/storage/record_format.h"
#include "broker/storage/segmented_log.h"

namespace basin::storage {

struct SegmentReplay {
  SegmentStart start = SegmentStart::kTorn;
  uint64_t size = 0;      // of the file
  uint64_t salt = 0;      // format 2
  uint64_t good_end = 0;  // offset just past the last good record (or the header)
};

// Replays the segment file `name` in `dir`, whose first byte is at log
// position `base`. Damage goes into `report`; false (with `error`) only if
// the file cannot be read.
bool ReplaySegment(const std::string& dir, const std::string& name, uint64_t base, bool tail,
                   const SegmentedLog::Visitor& visit, ReplayReport* report, SegmentReplay* out,
                   IoError* error);

}  // namespace basin::storage
