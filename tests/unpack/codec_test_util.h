// Test helpers for the unpack decoders: compress with zlib/libzstd in memory (single and
// multi-member gzip, multi-frame and skippable-frame zstd), drive a Decoder with chosen
// chunk sizes, and make deterministic pseudo-random payloads. Header-only (test code).
#pragma once

#include <zlib.h>
#include <zstd.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "unpack/decoder.h"

namespace zsnap::unpack::testing {

inline std::span<const std::byte> AsBytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Compressible but not trivial: words from a small vocabulary plus some random bytes.
inline std::string MakePayload(size_t n, uint32_t seed = 1) {
  static const char* kWords[] = {"alpha ", "beta ", "gamma ", "layer ", "tar ", "zsnap\n"};
  std::mt19937 rng(seed);
  std::string out;
  out.reserve(n + 16);
  while (out.size() < n) {
    uint32_t r = rng();
    if (r % 8 == 0) {
      out.push_back(static_cast<char>(r >> 8));
    } else {
      out += kWords[r % 6];
    }
  }
  out.resize(n);
  return out;
}

// One gzip member (zlib, windowBits 31). `name` sets FNAME in the header when non-empty.
inline std::string GzipMember(std::string_view data, int level = 6, const char* name = nullptr) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
  gz_header hdr{};
  if (name != nullptr) {
    hdr.name = reinterpret_cast<Bytef*>(const_cast<char*>(name));
    hdr.comment = reinterpret_cast<Bytef*>(const_cast<char*>("comment"));
    hdr.hcrc = 1;
    deflateSetHeader(&zs, &hdr);
  }
  std::string out(deflateBound(&zs, data.size()) + 64, '\0');
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  zs.avail_in = static_cast<uInt>(data.size());
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  if (deflate(&zs, Z_FINISH) != Z_STREAM_END) abort();
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

// Concatenated members of `part_size` input bytes each, as pigz --independent or
// `cat a.gz b.gz` produce.
inline std::string GzipMultiMember(std::string_view data, size_t part_size, int level = 6) {
  std::string out;
  for (size_t off = 0; off < data.size(); off += part_size) {
    out += GzipMember(data.substr(off, part_size), level);
  }
  if (data.empty()) out = GzipMember("", level);
  return out;
}

// One frame with a content checksum, as the zstd CLI writes by default.
inline std::string ZstdFrame(std::string_view data, int level = 3) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress2(cctx, out.data(), out.size(), data.data(), data.size());
  ZSTD_freeCCtx(cctx);
  if (ZSTD_isError(n)) abort();
  out.resize(n);
  return out;
}

// A frame whose header declares a window of 2^window_log whatever the data size (zstd
// --long=N on a pipe): the input goes in with ZSTD_e_continue first, so the compressor never
// learns the size and cannot shrink the window to it, and no content size is written, so the
// decoder cannot either.
inline std::string ZstdFrameWithWindow(std::string_view data, int window_log) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
  std::string out(ZSTD_compressBound(data.size()) + 64, '\0');
  ZSTD_outBuffer o{out.data(), out.size(), 0};
  ZSTD_inBuffer i{data.data(), data.size(), 0};
  if (ZSTD_isError(ZSTD_compressStream2(cctx, &o, &i, ZSTD_e_continue))) abort();
  ZSTD_inBuffer none{nullptr, 0, 0};
  if (ZSTD_compressStream2(cctx, &o, &none, ZSTD_e_end) != 0) abort();
  ZSTD_freeCCtx(cctx);
  out.resize(o.pos);
  return out;
}

// The window a frame header declares (RFC 8878 3.1.1.1.2), 0 for a single-segment frame.
inline uint64_t ZstdDeclaredWindow(std::string_view frame) {
  const auto fhd = static_cast<unsigned char>(frame[4]);
  if ((fhd & 0x20) != 0) return 0;
  const auto wd = static_cast<unsigned char>(frame[5]);
  const uint64_t base = uint64_t{1} << (10 + (wd >> 3));
  return base + base / 8 * (wd & 7);
}

// `frame` with its window descriptor rewritten to exponent `exponent` (window 2^(10+e)) and
// mantissa `mantissa` (+ m/8 of that): a header asking for more than its blocks need.
inline std::string ZstdWithWindowDescriptor(std::string frame, int exponent, int mantissa) {
  if ((static_cast<unsigned char>(frame[4]) & 0x20) != 0) abort();  // single segment: none
  frame[5] = static_cast<char>((exponent << 3) | mantissa);
  return frame;
}

// Skippable frame (RFC 8878 3.1.2): magic 0x184D2A50 + variant, LE32 size, payload.
inline std::string ZstdSkippableFrame(std::string_view payload, uint32_t variant = 0) {
  std::string out;
  auto le32 = [&](uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  le32(0x184D2A50u + (variant & 0xf));
  le32(static_cast<uint32_t>(payload.size()));
  out.append(payload);
  return out;
}

// Drives `d` the way the pipeline does, feeding `in_chunk` bytes and offering `out_chunk`
// bytes of output per call; returns everything decoded, or the first error.
inline absl::StatusOr<std::string> DecodeAll(Decoder& d, std::string_view input,
                                             size_t in_chunk = 1 << 20,
                                             size_t out_chunk = 1 << 20) {
  std::string out;
  std::string buf(out_chunk, '\0');
  auto outspan = std::span<std::byte>(reinterpret_cast<std::byte*>(buf.data()), buf.size());
  for (size_t off = 0; off < input.size(); off += in_chunk) {
    auto in = AsBytes(input.substr(off, in_chunk));
    while (!in.empty()) {
      absl::StatusOr<Decoder::Progress> p = d.Decode(in, outspan);
      if (!p.ok()) return p.status();
      if (p->consumed == 0 && p->produced == 0) {
        return absl::InternalError("decoder made no progress");
      }
      in = in.subspan(p->consumed);
      out.append(buf.data(), p->produced);
    }
  }
  while (true) {
    absl::StatusOr<Decoder::Progress> p = d.Decode({}, outspan);
    if (!p.ok()) return p.status();
    if (p->produced == 0) break;
    out.append(buf.data(), p->produced);
  }
  if (absl::Status s = d.Finish(); !s.ok()) return s;
  return out;
}

}  // namespace zsnap::unpack::testing
