// TarBuilder: builds tar streams in memory for tests (containerd pkg/archive/tartest idea).
// ustar headers, with a PAX extended header ('x') emitted automatically when a name or link
// name does not fit ustar, or when PAX records (xattrs, long values) are given explicitly.
//
// Header-only so any *_test.cc in tests/unpack can use it without a CMake change.
// Not thread-safe; one builder per stream. Test code only: invariants abort via assert.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <string_view>

namespace zsnap::unpack::testing {

inline constexpr size_t kTarBlock = 512;

// One entry's header. Fields map one to one onto ustar; `pax` adds PAX records
// ("SCHILY.xattr.trusted.overlay.opaque" -> "y", "path" -> ..., etc.).
struct TarHeader {
  std::string name;
  char typeflag = '0';  // '0' file, '1' hardlink, '2' symlink, '3' char, '4' block, '5' dir,
                        // '6' fifo
  uint32_t mode = 0644;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;  // set from the data for files; can be overridden via AddRaw
  int64_t mtime = 1700000000;
  std::string linkname;
  std::string uname;
  std::string gname;
  uint32_t devmajor = 0;
  uint32_t devminor = 0;
  std::map<std::string, std::string> pax;
};

class TarBuilder {
 public:
  TarBuilder& File(std::string name, std::string_view data, uint32_t mode = 0644) {
    TarHeader h;
    h.name = std::move(name);
    h.mode = mode;
    return Add(std::move(h), data);
  }
  TarBuilder& Dir(std::string name, uint32_t mode = 0755) {
    TarHeader h;
    h.name = std::move(name);
    h.typeflag = '5';
    h.mode = mode;
    return Add(std::move(h));
  }
  TarBuilder& Symlink(std::string name, std::string target) {
    TarHeader h;
    h.name = std::move(name);
    h.typeflag = '2';
    h.mode = 0777;
    h.linkname = std::move(target);
    return Add(std::move(h));
  }
  TarBuilder& Hardlink(std::string name, std::string target) {
    TarHeader h;
    h.name = std::move(name);
    h.typeflag = '1';
    h.linkname = std::move(target);
    return Add(std::move(h));
  }
  TarBuilder& CharDevice(std::string name, uint32_t major, uint32_t minor) {
    TarHeader h;
    h.name = std::move(name);
    h.typeflag = '3';
    h.devmajor = major;
    h.devminor = minor;
    return Add(std::move(h));
  }
  TarBuilder& Fifo(std::string name) {
    TarHeader h;
    h.name = std::move(name);
    h.typeflag = '6';
    return Add(std::move(h));
  }
  // OCI whiteout for `dir/name`: an empty regular file `dir/.wh.name`.
  TarBuilder& Whiteout(std::string_view dir, std::string_view name) {
    std::string path = dir.empty() ? std::string() : std::string(dir) + "/";
    return File(path + ".wh." + std::string(name), "");
  }
  // OCI opaque-directory marker for `dir`.
  TarBuilder& Opaque(std::string_view dir) {
    std::string path = dir.empty() ? std::string() : std::string(dir) + "/";
    return File(path + ".wh..wh..opq", "");
  }

  // Adds an entry; for regular files the size is taken from `data`.
  TarBuilder& Add(TarHeader h, std::string_view data = {}) {
    if (h.typeflag == '0' || h.typeflag == '7') h.size = data.size();
    return AddRaw(h, data);
  }

  // Adds an entry exactly as described: `h.size` is written as is and `data` is padded to a
  // block, so tests can build inconsistent streams (size larger than the data, etc.).
  TarBuilder& AddRaw(const TarHeader& h, std::string_view data) {
    std::map<std::string, std::string> pax = h.pax;
    if (h.name.size() > 100) pax.emplace("path", h.name);
    if (h.linkname.size() > 100) pax.emplace("linkpath", h.linkname);
    if (!pax.empty()) {
      std::string records;
      for (const auto& [k, v] : pax) records += PaxRecord(k, v);
      TarHeader x;
      x.name = "PaxHeaders/" + h.name.substr(0, 80);
      x.typeflag = 'x';
      x.size = records.size();
      AppendHeader(x);
      AppendData(records);
    }
    AppendHeader(h);
    AppendData(data);
    return *this;
  }

  // Appends raw bytes (e.g. a hand-corrupted header block).
  TarBuilder& AppendBytes(std::string_view bytes) {
    out_.append(bytes);
    return *this;
  }

  // The stream with the two zero end-of-archive blocks.
  std::string Finish() const { return out_ + std::string(2 * kTarBlock, '\0'); }
  // The stream so far, without an end-of-archive marker (truncated-archive tests).
  const std::string& Unterminated() const { return out_; }

  // Computes the header checksum of a 512-byte block in place (after editing fields).
  static void FixChecksum(char* block) {
    std::memset(block + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < kTarBlock; ++i) sum += static_cast<unsigned char>(block[i]);
    std::snprintf(block + 148, 8, "%06o", sum);
    block[155] = ' ';
  }

 private:
  static std::string PaxRecord(const std::string& key, const std::string& value) {
    // "<len> key=value\n" where len counts itself.
    size_t body = 1 + key.size() + 1 + value.size() + 1;
    size_t len = body + 1;
    while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
    return std::to_string(len) + " " + key + "=" + value + "\n";
  }

  static void Octal(char* field, size_t width, uint64_t value) {
    // width-1 octal digits and a NUL, as GNU tar and Go's archive/tar write them.
    std::string digits(width - 1, '0');
    for (size_t i = width - 1; i-- > 0 && value != 0; value >>= 3) {
      digits[i] = static_cast<char>('0' + (value & 7));
    }
    assert(value == 0 && "value does not fit the ustar field");
    std::memcpy(field, digits.data(), width - 1);
    field[width - 1] = '\0';
  }

  static void Str(char* field, size_t width, std::string_view s) {
    std::memcpy(field, s.data(), std::min(width, s.size()));
  }

  void AppendHeader(const TarHeader& h) {
    char b[kTarBlock] = {};
    Str(b + 0, 100, h.name);
    Octal(b + 100, 8, h.mode);
    Octal(b + 108, 8, h.uid);
    Octal(b + 116, 8, h.gid);
    Octal(b + 124, 12, h.size);
    Octal(b + 136, 12, static_cast<uint64_t>(h.mtime));
    b[156] = h.typeflag;
    Str(b + 157, 100, h.linkname);
    std::memcpy(b + 257,
                "ustar\0"
                "00",
                8);
    Str(b + 265, 32, h.uname);
    Str(b + 297, 32, h.gname);
    Octal(b + 329, 8, h.devmajor);
    Octal(b + 337, 8, h.devminor);
    FixChecksum(b);
    out_.append(b, kTarBlock);
  }

  void AppendData(std::string_view data) {
    out_.append(data);
    size_t pad = (kTarBlock - data.size() % kTarBlock) % kTarBlock;
    out_.append(pad, '\0');
  }

  std::string out_;
};

}  // namespace zsnap::unpack::testing
