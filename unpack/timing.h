// LayerTiming: the one timing record every unpacked layer produces. Plain value; JSON for
// tools (`zsnap unpack --json`, reports) and a key=value line for logs.
#pragma once

#include <cstdint>
#include <string>

#include "nlohmann/json.hpp"

namespace zsnap::unpack {

// Time one stage spent working vs. blocked on its neighbours' queues.
struct StageTime {
  double busy_s = 0;
  double wait_s = 0;
};

struct LayerTiming {
  std::string layer;        // name or digest
  std::string codec;        // "gzip", "zstd", "plain"
  std::string digest;       // computed sha256 of the compressed stream
  std::string diff_id;      // computed sha256 of the tar stream
  uint64_t bytes_in = 0;    // compressed bytes read
  uint64_t bytes_out = 0;   // tar bytes decoded
  uint64_t entries = 0;     // tar entries applied
  uint64_t file_bytes = 0;  // regular-file payload written
  int threads = 0;          // threads used in total
  StageTime read, decode, extract, write, verify;
  double total_s = 0;  // wall time from first read to last write

  double ThroughputMBps() const { return total_s > 0 ? bytes_out / total_s / 1e6 : 0; }
};

nlohmann::json ToJson(const LayerTiming& t);
std::string ToLogLine(const LayerTiming& t);  // "layer=... codec=... total_s=..."

}  // namespace zsnap::unpack
