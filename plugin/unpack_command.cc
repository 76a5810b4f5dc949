#include "plugin/unpack_command.h"

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "unpack/file_source.h"
#include "unpack/unpack.h"

namespace zsnap::plugin {
namespace {

std::string HumanBytes(uint64_t n) {
  constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrCat(n, " B");
  return absl::StrFormat("%.1f %s (%d B)", v, kUnits[unit], n);
}

}  // namespace

absl::StatusOr<unpack::LayerTiming> RunUnpack(const UnpackArgs& args, std::stop_token stop) {
  unpack::UnpackOptions options;
  absl::StatusOr<unpack::Codec> codec = unpack::CodecForMediaType(args.media_type);
  if (!codec.ok()) return codec.status();
  options.codec = *codec;
  options.layer_name = args.digest.value_or(args.blob == "-" ? "<stdin>" : args.blob);
  options.expected_digest = args.digest;
  options.expected_diff_id = args.diff_id;
  options.limits = args.limits.Limits();
  options.writer_threads = args.threads.value_or(args.limits.writer_threads);
  options.userxattr = args.userxattr;
  options.stop = std::move(stop);

  absl::StatusOr<std::unique_ptr<unpack::FileSource>> source = unpack::FileSource::Open(args.blob);
  if (!source.ok()) return source.status();
  return unpack::UnpackLayer(**source, args.dest, options);
}

std::string FormatTimingTable(const unpack::LayerTiming& t) {
  std::string out;
  const auto row = [&out](absl::string_view key, absl::string_view value) {
    absl::StrAppendFormat(&out, "%-12s %s\n", key, value);
  };
  row("layer", t.layer);
  row("codec", t.codec);
  row("digest", t.digest);
  row("diff_id", t.diff_id);
  row("bytes in", HumanBytes(t.bytes_in));
  row("bytes out", HumanBytes(t.bytes_out));
  row("file bytes", HumanBytes(t.file_bytes));
  row("entries", absl::StrCat(t.entries));
  row("threads", absl::StrCat(t.threads));
  absl::StrAppendFormat(&out, "\n%-12s %10s %10s\n", "stage", "busy s", "wait s");
  const std::pair<absl::string_view, const unpack::StageTime*> stages[] = {
      {"read", &t.read},   {"decode", &t.decode}, {"extract", &t.extract},
      {"write", &t.write}, {"verify", &t.verify},
  };
  for (const auto& [name, stage] : stages) {
    absl::StrAppendFormat(&out, "%-12s %10.3f %10.3f\n", name, stage->busy_s, stage->wait_s);
  }
  absl::StrAppendFormat(&out, "%-12s %10.3f s  (%.1f MB/s of tar stream)\n", "total", t.total_s,
                        t.ThroughputMBps());
  return out;
}

}  // namespace zsnap::plugin
