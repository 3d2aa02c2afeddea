// CRC-32C (Castagnoli), the checksum of every log record: the one iSCSI,
// ext4 and most log formats use, with a CPU instruction on x86-64 (SSE4.2)
// and a table fallback elsewhere.
#pragma once

#include <cstddef>
#include <cstdint>

namespace basin::storage {

// The CRC-32C of `n` bytes at `data`, continuing from `crc` (0 to start).
uint32_t Crc32c(const void* data, size_t n, uint32_t crc = 0);

}  // namespace basin::storage
