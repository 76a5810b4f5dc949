// Shared body of the decoder fuzz targets: drive a Decoder over the input the way the
// pipeline does, with input/output chunk sizes taken from the first two bytes so libFuzzer
// explores buffer boundaries too. Output is capped so a valid bomb cannot time out a run.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "unpack/decoder.h"

namespace zsnap::unpack {

inline void FuzzDecoder(Decoder& d, const uint8_t* data, size_t size) {
  if (size < 2) return;
  size_t in_chunk = 1 + (size_t{data[0]} << 4);
  size_t out_chunk = 1 + (size_t{data[1]} << 6);
  data += 2;
  size -= 2;
  std::vector<std::byte> out(out_chunk);
  constexpr size_t kMaxOut = 64 << 20;
  size_t total = 0;
  auto in_all = std::span(reinterpret_cast<const std::byte*>(data), size);
  for (size_t off = 0; off < size; off += in_chunk) {
    auto in = in_all.subspan(off, std::min(in_chunk, size - off));
    while (!in.empty()) {
      auto p = d.Decode(in, out);
      if (!p.ok()) return;
      if (p->consumed == 0 && p->produced == 0) std::abort();  // contract: progress
      if (p->consumed > in.size() || p->produced > out.size()) std::abort();
      in = in.subspan(p->consumed);
      total += p->produced;
      if (total > kMaxOut) return;
    }
  }
  while (true) {
    auto p = d.Decode({}, out);
    if (!p.ok() || p->produced == 0) break;
    total += p->produced;
    if (total > kMaxOut) return;
  }
  (void)d.Finish();
}

}  // namespace zsnap::unpack
