#include "plugin/bench_report.h"

#include <algorithm>
#include <functional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace zsnap::plugin {
namespace {

absl::Status LineError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("runs.jsonl line ", line, ": ", what));
}

double Num(const std::map<std::string, std::string>& kv, const std::string& key) {
  auto it = kv.find(key);
  double v = 0;
  if (it == kv.end() || !absl::SimpleAtod(it->second, &v)) return 0;
  return v;
}

std::string CsvField(absl::string_view s) {
  if (s.find_first_of(",\"\n\r") == absl::string_view::npos) return std::string(s);
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

nlohmann::json SpreadJson(const std::optional<Spread>& s) {
  if (!s) return nullptr;
  return {{"median", s->median}, {"min", s->min}, {"max", s->max}, {"n", s->n}};
}

std::string SpreadText(const std::optional<Spread>& s) {
  if (!s) return "-";
  return absl::StrFormat("%.1f (%.1f-%.1f)", s->median, s->min, s->max);
}

std::string RatioText(const std::optional<double>& r) {
  return r ? absl::StrFormat("%.2fx", *r) : "-";
}

}  // namespace

absl::StatusOr<std::vector<BenchRun>> ParseRuns(absl::string_view jsonl) {
  std::vector<BenchRun> runs;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(jsonl, '\n')) {
    ++line_no;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return LineError(line_no, "not a JSON object");
    BenchRun r;
    try {
      r.image = j.at("image").get<std::string>();
      r.codec = j.at("codec").get<std::string>();
      r.mode = j.at("mode").get<std::string>();
      r.rep = j.at("rep").get<int>();
      r.ok = j.at("ok").get<bool>();
      r.error = j.value("error", "");
      r.pull_s = j.value("pull_s", 0.0);
      r.ready_s = j.value("ready_s", 0.0);
      r.start_s = j.value("start_s", 0.0);
      r.cpu_s = j.value("cpu_s", 0.0);
      r.zsnap_log = j.value("zsnap_log", "");
    } catch (const nlohmann::json::exception& e) {
      return LineError(line_no, e.what());
    }
    runs.push_back(std::move(r));
  }
  return runs;
}

std::optional<Spread> Summarize(std::vector<double> values) {
  if (values.empty()) return std::nullopt;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  Spread s;
  s.n = static_cast<int>(n);
  s.min = values.front();
  s.max = values.back();
  s.median = n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
  return s;
}

std::map<std::string, std::string> ParseKeyValues(absl::string_view line) {
  std::map<std::string, std::string> kv;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') ++i;
    const size_t key_start = i;
    while (i < line.size() && line[i] != '=' && line[i] != ' ') ++i;
    if (i >= line.size() || line[i] != '=' || i == key_start) {  // a bare word: skip it
      while (i < line.size() && line[i] != ' ') ++i;
      continue;
    }
    std::string key(line.substr(key_start, i - key_start));
    ++i;  // '='
    std::string value;
    if (i < line.size() && line[i] == '"') {
      ++i;
      while (i < line.size() && line[i] != '"') {
        if (line[i] == '\\' && i + 1 < line.size()) {
          ++i;
          value.push_back(line[i] == 'n' ? '\n' : line[i]);
        } else {
          value.push_back(line[i]);
        }
        ++i;
      }
      ++i;  // closing quote (or past the end of a truncated line)
    } else {
      const size_t start = i;
      while (i < line.size() && line[i] != ' ') ++i;
      value = std::string(line.substr(start, i - start));
    }
    kv[std::move(key)] = std::move(value);
  }
  return kv;
}

std::optional<StageTimes> ParseStageTimes(absl::string_view log) {
  StageTimes t;
  bool any = false;
  // The daemon's pull recorder logs "pull_layer ..."/"pull_image ..."; without a recorder the
  // puller itself logs "remote layer ..."/"remote image ...". Same key=value fields.
  const auto find_event = [](absl::string_view line, absl::string_view a, absl::string_view b,
                              size_t* skip) {
    size_t at = line.find(a);
    *skip = a.size();
    if (at == absl::string_view::npos) {
      at = line.find(b);
      *skip = b.size();
    }
    return at;
  };
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    size_t skip = 0;
    size_t at = find_event(line, " remote layer ", " pull_layer ", &skip);
    if (at != absl::string_view::npos) {
      auto kv = ParseKeyValues(line.substr(at + skip));
      any = true;
      ++t.layers;
      if (kv["outcome"] != "ok") ++t.fallbacks;
      t.bytes_in += Num(kv, "bytes_in");
      t.bytes_out += Num(kv, "bytes_out");
      const double total = Num(kv, "total_s");
      if (t.slowest_layer.empty() || total > t.total_s) {
        t.slowest_layer = kv["layer"];
        t.ttfb_s = Num(kv, "ttfb_s");
        t.fetch_s = Num(kv, "fetch_s");
        t.decode_s = Num(kv, "decode_s");
        t.write_s = Num(kv, "write_s");
        t.verify_s = Num(kv, "verify_s");
        t.unpack_s = Num(kv, "unpack_s");
        t.commit_s = Num(kv, "commit_s");
        t.total_s = total;
        t.slowest_bytes_out = Num(kv, "bytes_out");
      }
      continue;
    }
    at = find_event(line, " remote image ", " pull_image ", &skip);
    if (at != absl::string_view::npos) {
      auto kv = ParseKeyValues(line.substr(at + skip));
      any = true;
      t.image_wall_s = Num(kv, "wall_s");
    }
  }
  if (!any) return std::nullopt;
  return t;
}

std::vector<BenchComparison> Compare(const std::vector<BenchRun>& runs,
                                     const std::map<std::string, StageTimes>& stages) {
  std::vector<BenchComparison> out;
  auto find = [&out](const BenchRun& r) -> BenchComparison& {
    for (BenchComparison& c : out) {
      if (c.image == r.image && c.codec == r.codec) return c;
    }
    BenchComparison c;
    c.image = r.image;
    c.codec = r.codec;
    out.push_back(std::move(c));
    return out.back();
  };
  for (const BenchRun& r : runs) find(r);
  for (BenchComparison& c : out) {
    for (const char* mode : {"native", "zsnap"}) {
      BenchGroup g;
      g.image = c.image;
      g.codec = c.codec;
      g.mode = mode;
      std::vector<double> pull, ready, start, cpu;
      std::vector<StageTimes> st;
      for (const BenchRun& r : runs) {
        if (r.image != c.image || r.codec != c.codec || r.mode != mode) continue;
        ++g.runs;
        if (!r.ok) {
          ++g.failed;
          continue;
        }
        pull.push_back(r.pull_s);
        ready.push_back(r.ready_s);
        start.push_back(r.start_s);
        if (r.cpu_s > 0) cpu.push_back(r.cpu_s);
        if (auto it = stages.find(r.zsnap_log); !r.zsnap_log.empty() && it != stages.end()) {
          st.push_back(it->second);
        }
      }
      if (g.runs == 0) continue;
      g.pull = Summarize(pull);
      g.ready = Summarize(ready);
      g.start = Summarize(start);
      g.cpu = Summarize(cpu);
      if (g.mode == "native") {
        c.native = g;
      } else {
        c.zsnap = g;
        if (!st.empty()) {
          // Median of every field; the slowest layer's name from the median-wall run.
          auto med = [&st](std::function<double(const StageTimes&)> f) {
            std::vector<double> v;
            for (const StageTimes& s : st) v.push_back(f(s));
            return Summarize(v)->median;
          };
          StageTimes m;
          m.image_wall_s = med([](const StageTimes& s) { return s.image_wall_s; });
          m.layers = st.front().layers;
          m.fallbacks = static_cast<int>(med([](const StageTimes& s) { return s.fallbacks; }));
          m.bytes_in = med([](const StageTimes& s) { return s.bytes_in; });
          m.bytes_out = med([](const StageTimes& s) { return s.bytes_out; });
          m.slowest_layer = st.front().slowest_layer;
          m.ttfb_s = med([](const StageTimes& s) { return s.ttfb_s; });
          m.fetch_s = med([](const StageTimes& s) { return s.fetch_s; });
          m.decode_s = med([](const StageTimes& s) { return s.decode_s; });
          m.write_s = med([](const StageTimes& s) { return s.write_s; });
          m.verify_s = med([](const StageTimes& s) { return s.verify_s; });
          m.unpack_s = med([](const StageTimes& s) { return s.unpack_s; });
          m.commit_s = med([](const StageTimes& s) { return s.commit_s; });
          m.total_s = med([](const StageTimes& s) { return s.total_s; });
          m.slowest_bytes_out = med([](const StageTimes& s) { return s.slowest_bytes_out; });
          c.stages = m;
        }
      }
    }
    if (c.native && c.zsnap) {
      if (c.native->pull && c.zsnap->pull && c.native->pull->median > 0) {
        c.pull_ratio = c.zsnap->pull->median / c.native->pull->median;
      }
      if (c.native->ready && c.zsnap->ready && c.native->ready->median > 0) {
        c.ready_ratio = c.zsnap->ready->median / c.native->ready->median;
      }
    }
  }
  return out;
}

std::string ToCsv(const std::vector<BenchRun>& runs) {
  std::string out = "image,codec,mode,rep,ok,pull_s,ready_s,start_s,cpu_s,error\n";
  for (const BenchRun& r : runs) {
    absl::StrAppendFormat(&out, "%s,%s,%s,%d,%s,%.3f,%.3f,%.3f,%.2f,%s\n", CsvField(r.image),
                          CsvField(r.codec), CsvField(r.mode), r.rep, r.ok ? "true" : "false",
                          r.pull_s, r.ready_s, r.start_s, r.cpu_s, CsvField(r.error));
  }
  return out;
}

nlohmann::json ToJson(const std::vector<BenchRun>& runs,
                      const std::vector<BenchComparison>& comparisons) {
  nlohmann::json j_runs = nlohmann::json::array();
  for (const BenchRun& r : runs) {
    j_runs.push_back({{"image", r.image},
                      {"codec", r.codec},
                      {"mode", r.mode},
                      {"rep", r.rep},
                      {"ok", r.ok},
                      {"error", r.error},
                      {"pull_s", r.pull_s},
                      {"ready_s", r.ready_s},
                      {"start_s", r.start_s},
                      {"cpu_s", r.cpu_s},
                      {"zsnap_log", r.zsnap_log}});
  }
  nlohmann::json j_summary = nlohmann::json::array();
  for (const BenchComparison& c : comparisons) {
    nlohmann::json s = {{"image", c.image}, {"codec", c.codec}};
    for (const auto* g : {&c.native, &c.zsnap}) {
      if (!*g) continue;
      s[(*g)->mode] = {{"runs", (*g)->runs},
                       {"failed", (*g)->failed},
                       {"pull_s", SpreadJson((*g)->pull)},
                       {"ready_s", SpreadJson((*g)->ready)},
                       {"start_s", SpreadJson((*g)->start)},
                       {"cpu_s", SpreadJson((*g)->cpu)}};
    }
    s["pull_ratio"] = c.pull_ratio ? nlohmann::json(*c.pull_ratio) : nlohmann::json(nullptr);
    s["ready_ratio"] = c.ready_ratio ? nlohmann::json(*c.ready_ratio) : nlohmann::json(nullptr);
    if (c.stages) {
      const StageTimes& t = *c.stages;
      s["zsnap_stages"] = {{"image_wall_s", t.image_wall_s},
                           {"layers", t.layers},
                           {"fallbacks", t.fallbacks},
                           {"bytes_in", t.bytes_in},
                           {"bytes_out", t.bytes_out},
                           {"slowest_layer", t.slowest_layer},
                           {"ttfb_s", t.ttfb_s},
                           {"fetch_s", t.fetch_s},
                           {"decode_s", t.decode_s},
                           {"write_s", t.write_s},
                           {"verify_s", t.verify_s},
                           {"unpack_s", t.unpack_s},
                           {"commit_s", t.commit_s},
                           {"total_s", t.total_s},
                           {"slowest_bytes_out", t.slowest_bytes_out}};
    }
    j_summary.push_back(std::move(s));
  }
  return {{"runs", std::move(j_runs)}, {"summary", std::move(j_summary)}};
}

std::string FormatTable(const std::vector<BenchComparison>& comparisons) {
  std::string out =
      "| image | codec | mode | runs | pull s, median (min-max) | ready s, median (min-max) |"
      " daemons' CPU s | zsnap/native pull | zsnap/native ready |\n"
      "|---|---|---|---|---|---|---|---|---|\n";
  for (const BenchComparison& c : comparisons) {
    for (const auto* g : {&c.native, &c.zsnap}) {
      if (!*g) continue;
      const bool z = (*g)->mode == "zsnap";
      std::string runs = absl::StrCat((*g)->runs - (*g)->failed);
      if ((*g)->failed > 0) absl::StrAppend(&runs, " (+", (*g)->failed, " failed)");
      absl::StrAppendFormat(&out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", c.image,
                            c.codec, (*g)->mode, runs, SpreadText((*g)->pull),
                            SpreadText((*g)->ready),
                            (*g)->cpu ? absl::StrFormat("%.1f", (*g)->cpu->median) : "-",
                            z ? RatioText(c.pull_ratio) : "", z ? RatioText(c.ready_ratio) : "");
    }
  }
  bool any_stages = false;
  for (const BenchComparison& c : comparisons) any_stages |= c.stages.has_value();
  if (!any_stages) return out;
  absl::StrAppend(
      &out,
      "\nzsnap, per pull (medians over reps): the image's wall time in zsnap, and the stages of "
      "its slowest layer (busy seconds; they overlap, the stages run as a pipeline)\n\n"
      "| image | codec | layers | fallbacks | MB in | MB out | image wall s | slowest layer MB"
      " out | ttfb | fetch | decode | write | verify | unpack | commit | total |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const BenchComparison& c : comparisons) {
    if (!c.stages) continue;
    const StageTimes& t = *c.stages;
    absl::StrAppendFormat(&out,
                          "| %s | %s | %d | %d | %.0f | %.0f | %.1f | %.0f | %.2f | %.1f | %.1f |"
                          " %.1f | %.1f | %.1f | %.2f | %.1f |\n",
                          c.image, c.codec, t.layers, t.fallbacks, t.bytes_in / 1e6,
                          t.bytes_out / 1e6, t.image_wall_s, t.slowest_bytes_out / 1e6, t.ttfb_s,
                          t.fetch_s, t.decode_s, t.write_s, t.verify_s, t.unpack_s, t.commit_s,
                          t.total_s);
  }
  return out;
}

}  // namespace zsnap::plugin
