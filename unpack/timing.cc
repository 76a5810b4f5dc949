#include "unpack/timing.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace zsnap::unpack {
namespace {

nlohmann::json StageJson(const StageTime& s) {
  return {{"busy_s", s.busy_s}, {"wait_s", s.wait_s}};
}

// key=value, quoting values a log parser would otherwise split (spaces, '=', quotes).
void AppendKv(std::string& out, absl::string_view key, absl::string_view value) {
  if (!out.empty()) out.push_back(' ');
  absl::StrAppend(&out, key, "=");
  bool plain = !value.empty() && value.find_first_of(" \t\n\"=\\") == absl::string_view::npos;
  if (plain) {
    out.append(value.data(), value.size());
    return;
  }
  out.push_back('"');
  for (char c : value) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (c == '\n') {
      out.append("\\n");
      continue;
    }
    out.push_back(c);
  }
  out.push_back('"');
}

void AppendStage(std::string& out, absl::string_view name, const StageTime& s) {
  absl::StrAppendFormat(&out, " %s_busy_s=%.3f %s_wait_s=%.3f", name, s.busy_s, name, s.wait_s);
}

}  // namespace

nlohmann::json ToJson(const LayerTiming& t) {
  return {
      {"layer", t.layer},
      {"codec", t.codec},
      {"digest", t.digest},
      {"diff_id", t.diff_id},
      {"bytes_in", t.bytes_in},
      {"bytes_out", t.bytes_out},
      {"entries", t.entries},
      {"file_bytes", t.file_bytes},
      {"threads", t.threads},
      {"read", StageJson(t.read)},
      {"decode", StageJson(t.decode)},
      {"extract", StageJson(t.extract)},
      {"write", StageJson(t.write)},
      {"verify", StageJson(t.verify)},
      {"total_s", t.total_s},
      {"throughput_mbps", t.ThroughputMBps()},
  };
}

std::string ToLogLine(const LayerTiming& t) {
  std::string out;
  AppendKv(out, "layer", t.layer);
  AppendKv(out, "codec", t.codec);
  AppendKv(out, "digest", t.digest);
  AppendKv(out, "diff_id", t.diff_id);
  absl::StrAppend(&out, " bytes_in=", t.bytes_in, " bytes_out=", t.bytes_out,
                  " entries=", t.entries, " file_bytes=", t.file_bytes, " threads=", t.threads);
  absl::StrAppendFormat(&out, " total_s=%.3f mbps=%.1f", t.total_s, t.ThroughputMBps());
  AppendStage(out, "read", t.read);
  AppendStage(out, "decode", t.decode);
  AppendStage(out, "extract", t.extract);
  AppendStage(out, "write", t.write);
  AppendStage(out, "verify", t.verify);
  return out;
}

}  // namespace zsnap::unpack
