// The pure parts of `zsnap bench`: runs.jsonl parsing, statistics, zsnap's log lines, the
// comparison and its CSV / JSON / table renderings.
#include "plugin/bench_report.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;

BenchRun MakeRun(const std::string& codec, const std::string& mode, int rep, double pull, double ready,
             bool ok = true, const std::string& log = "") {
  BenchRun r;
  r.image = "python";
  r.codec = codec;
  r.mode = mode;
  r.rep = rep;
  r.ok = ok;
  r.pull_s = pull;
  r.ready_s = ready;
  r.start_s = ready - pull;
  r.zsnap_log = log;
  r.cpu_s = ok ? pull / 2 : 0;
  if (!ok) r.error = "pull failed: boom, \"quoted\"";
  return r;
}

TEST(SummarizeTest, OddEvenAndEmpty) {
  EXPECT_FALSE(Summarize({}).has_value());
  std::optional<Spread> s = Summarize({3, 1, 2});
  ASSERT_TRUE(s);
  EXPECT_DOUBLE_EQ(s->median, 2);
  EXPECT_DOUBLE_EQ(s->min, 1);
  EXPECT_DOUBLE_EQ(s->max, 3);
  EXPECT_EQ(s->n, 3);
  s = Summarize({4, 1, 2, 10});
  EXPECT_DOUBLE_EQ(s->median, 3);
  EXPECT_DOUBLE_EQ(Summarize({7})->median, 7);
}

TEST(ParseRunsTest, ReadsLinesAndSkipsBlanks) {
  const std::string jsonl =
      R"({"image":"python","codec":"gzip","mode":"native","rep":1,"ok":true,"error":"",)"
      R"("pull_s":39.5,"ready_s":41.25,"start_s":1.75,"cpu_s":20.5,"zsnap_log":""})"
      "\n\n"
      R"({"image":"python","codec":"zstd","mode":"zsnap","rep":2,"ok":false,"error":"x",)"
      R"("zsnap_log":"logs/a.log"})"
      "\n";
  absl::StatusOr<std::vector<BenchRun>> runs = ParseRuns(jsonl);
  ASSERT_TRUE(runs.ok()) << runs.status();
  ASSERT_EQ(runs->size(), 2u);
  EXPECT_EQ((*runs)[0].mode, "native");
  EXPECT_DOUBLE_EQ((*runs)[0].ready_s, 41.25);
  EXPECT_DOUBLE_EQ((*runs)[0].cpu_s, 20.5);
  EXPECT_FALSE((*runs)[1].ok);
  EXPECT_EQ((*runs)[1].error, "x");
  EXPECT_EQ((*runs)[1].zsnap_log, "logs/a.log");
  EXPECT_DOUBLE_EQ((*runs)[1].pull_s, 0);
}

TEST(ParseRunsTest, MalformedLineIsNamed) {
  absl::StatusOr<std::vector<BenchRun>> runs = ParseRuns(
      "{\"image\":\"a\",\"codec\":\"gzip\",\"mode\":\"zsnap\",\"rep\":1,\"ok\":true}\nnot json\n");
  ASSERT_FALSE(runs.ok());
  EXPECT_EQ(runs.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(runs.status().message(), HasSubstr("line 2"));
  runs = ParseRuns("{\"image\":\"a\"}\n");
  ASSERT_FALSE(runs.ok());
  EXPECT_THAT(runs.status().message(), HasSubstr("line 1"));
}

TEST(ParseKeyValuesTest, PlainQuotedAndBareWords) {
  auto kv = ParseKeyValues(R"(a=1 b="two words" c="esc \"q\" \\ x" bare d= e=5)");
  EXPECT_EQ(kv["a"], "1");
  EXPECT_EQ(kv["b"], "two words");
  EXPECT_EQ(kv["c"], R"(esc "q" \ x)");
  EXPECT_EQ(kv["d"], "");
  EXPECT_EQ(kv["e"], "5");
  EXPECT_FALSE(kv.contains("bare"));
}

constexpr char kLog[] =
    "2026-11-28T06:29:31Z info  remote enabled=true hosts_dir=/x\n"
    "2026-11-28T06:29:41Z info  remote layer image=r/p:gzip@sha256:1 layer=sha256:small "
    "outcome=ok index=0 codec=gzip bytes_in=100 bytes_out=300 ttfb_s=0.010 fetch_s=1.0 "
    "decode_s=0.5 write_s=0.7 verify_s=0.2 unpack_s=1.1 commit_s=0.05 total_s=1.2\n"
    "2026-11-28T06:29:42Z info  pull_layer image=r/p:gzip@sha256:1 layer=sha256:big "
    "outcome=ok index=2 codec=gzip bytes_in=1000 bytes_out=3000 ttfb_s=0.020 fetch_s=8.0 "
    "decode_s=4.5 write_s=6.0 verify_s=2.0 unpack_s=9.0 commit_s=0.25 total_s=9.5\n"
    "2026-11-28T06:29:42Z info  remote layer image=r/p:gzip@sha256:1 layer=sha256:fb "
    "outcome=fallback index=1 codec=gzip bytes_in=0 bytes_out=0 total_s=0.1 error=\"x y\"\n"
    "2026-11-28T06:29:43Z info  remote image image=r/p:gzip@sha256:1 manifest=sha256:1 "
    "outcome=ok layers=3 wall_s=9.75\n";

TEST(ParseStageTimesTest, SlowestLayerAndImageWall) {
  std::optional<StageTimes> t = ParseStageTimes(kLog);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->layers, 3);
  EXPECT_EQ(t->fallbacks, 1);
  EXPECT_DOUBLE_EQ(t->bytes_in, 1100);
  EXPECT_DOUBLE_EQ(t->bytes_out, 3300);
  EXPECT_EQ(t->slowest_layer, "sha256:big");
  EXPECT_DOUBLE_EQ(t->fetch_s, 8.0);
  EXPECT_DOUBLE_EQ(t->decode_s, 4.5);
  EXPECT_DOUBLE_EQ(t->write_s, 6.0);
  EXPECT_DOUBLE_EQ(t->commit_s, 0.25);
  EXPECT_DOUBLE_EQ(t->total_s, 9.5);
  EXPECT_DOUBLE_EQ(t->image_wall_s, 9.75);
  EXPECT_FALSE(ParseStageTimes("info serving address=/x\n").has_value());
}

TEST(CompareTest, MediansRatiosFailuresAndStages) {
  std::vector<BenchRun> runs = {
      MakeRun("gzip", "native", 1, 40, 44),
      MakeRun("gzip", "zsnap", 1, 10, 12, true, "l1"),
      MakeRun("gzip", "zsnap", 2, 12, 14, true, "l2"),
      MakeRun("gzip", "native", 2, 38, 42),
      MakeRun("gzip", "native", 3, 0, 0, false),
      MakeRun("zstd", "zsnap", 1, 9, 11),
  };
  StageTimes a, b;
  a.image_wall_s = 9;
  a.fetch_s = 8;
  a.layers = 4;
  b.image_wall_s = 11;
  b.fetch_s = 10;
  b.layers = 4;
  std::vector<BenchComparison> c = Compare(runs, {{"l1", a}, {"l2", b}});
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(c[0].codec, "gzip");
  ASSERT_TRUE(c[0].native && c[0].zsnap);
  EXPECT_EQ(c[0].native->runs, 3);
  EXPECT_EQ(c[0].native->failed, 1);
  EXPECT_DOUBLE_EQ(c[0].native->pull->median, 39);
  EXPECT_DOUBLE_EQ(c[0].native->ready->median, 43);
  EXPECT_DOUBLE_EQ(c[0].zsnap->ready->median, 13);
  EXPECT_DOUBLE_EQ(c[0].native->cpu->median, 19.5);  // failed runs' 0 is not a sample
  EXPECT_EQ(c[0].native->cpu->n, 2);
  EXPECT_DOUBLE_EQ(*c[0].pull_ratio, 11.0 / 39.0);
  EXPECT_DOUBLE_EQ(*c[0].ready_ratio, 13.0 / 43.0);
  ASSERT_TRUE(c[0].stages);
  EXPECT_DOUBLE_EQ(c[0].stages->image_wall_s, 10);
  EXPECT_DOUBLE_EQ(c[0].stages->fetch_s, 9);
  EXPECT_EQ(c[0].stages->layers, 4);
  // zstd has no native runs: no ratio, no stages.
  EXPECT_FALSE(c[1].native);
  EXPECT_FALSE(c[1].ready_ratio);
  EXPECT_FALSE(c[1].stages);
}

TEST(RenderTest, CsvQuotesAndCountsRows) {
  std::vector<BenchRun> runs = {MakeRun("gzip", "native", 1, 40, 44),
                                MakeRun("gzip", "zsnap", 1, 0, 0, false)};
  const std::string csv = ToCsv(runs);
  EXPECT_THAT(csv, HasSubstr("image,codec,mode,rep,ok,pull_s,ready_s,start_s,cpu_s,error\n"));
  EXPECT_THAT(csv, HasSubstr("python,gzip,native,1,true,40.000,44.000,4.000,20.00,\n"));
  EXPECT_THAT(csv, HasSubstr(R"(,false,0.000,0.000,0.000,0.00,"pull failed: boom, ""quoted""")"));
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3);
}

TEST(RenderTest, JsonAndTable) {
  std::vector<BenchRun> runs = {MakeRun("gzip", "native", 1, 40, 44),
                                MakeRun("gzip", "zsnap", 1, 10, 11, true, "l1")};
  StageTimes st;
  st.layers = 4;
  st.image_wall_s = 9.5;
  std::vector<BenchComparison> c = Compare(runs, {{"l1", st}});
  nlohmann::json j = ToJson(runs, c);
  ASSERT_EQ(j["runs"].size(), 2u);
  EXPECT_EQ(j["runs"][1]["zsnap_log"], "l1");
  EXPECT_DOUBLE_EQ(j["summary"][0]["native"]["ready_s"]["median"].get<double>(), 44);
  EXPECT_DOUBLE_EQ(j["summary"][0]["ready_ratio"].get<double>(), 0.25);
  EXPECT_EQ(j["summary"][0]["zsnap_stages"]["layers"], 4);

  const std::string table = FormatTable(c);
  EXPECT_THAT(
      table,
      HasSubstr("| python | gzip | native | 1 | 40.0 (40.0-40.0) | 44.0 (44.0-44.0) | 20.0 |"));
  EXPECT_THAT(table, HasSubstr("| 5.0 | 0.25x | 0.25x |"));
  EXPECT_THAT(table, HasSubstr("| python | gzip | 4 | 0 |"));
}

}  // namespace
}  // namespace zsnap::plugin
