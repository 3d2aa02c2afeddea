// Replay of one segment file: hands each intact record to a visitor, in
// order, and says where the good records end. SegmentedLog::Open calls it for
// each segment and decides what to do with the rest (record_format.h has the
// bytes).
//
// Damage is treated by what follows it:
//   - in a format-2 segment, replay reports it and carries on from the next
//     record that verifies *at its position*, so a record image inside a
//     payload never passes for a record, and the records after the damage
//     are recovered — in the tail as in a sealed segment. Cutting at the
//     damage would drop those records, some answered long ago;
//   - damage in the tail that nothing verifiable follows is taken for a torn
//     write: reported as truncated, and the log is cut there;
//   - in a sealed format-1 segment (no positions in its CRCs, so the next
//     record found could be a payload's) replay reports the rest of the
//     segment as damage.
// What recovery promises: every record that was made durable and answered
// so comes back unless damage hit its own bytes, and nothing comes back that
// this log did not write at that position (salt and position are in each
// record's CRC). It does not promise that a record that verifies after
// damage was written after it, nor that it was ever answered: a failed
// fdatasync cuts the tail back and the log writes the next records at the
// same positions with the same salt, and a power cut can keep any of the
// pages either wrote, so a refused batch can come back — whole, or any
// subset of its records — alongside or behind damage, as can any unsynced
// write a crash happened to keep (at least once). So a group of records (a
// put batch) can come back in part, and a record that refers to others of
// its group (its put keys) is only as good as what of the group was
// replayed: QueueReplay checks.
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
// the file cannot be read. `faults` (tests only) may fail its reads
// (FileOp::kRead).
bool ReplaySegment(const std::string& dir, const std::string& name, uint64_t base, bool tail,
                   const FaultHook& faults, const SegmentedLog::Visitor& visit,
                   ReplayReport* report, SegmentReplay* out, IoError* error);

}  // namespace basin::storage
