// The SVG chart of `zsnap bench`: well-formed, escaped, bars scaled to the data.
#include "plugin/bench_chart.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <regex>

namespace zsnap::plugin {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

BenchGroup Group(const std::string& mode, double pull, double ready, double min, double max) {
  BenchGroup g;
  g.image = "python";
  g.codec = "gzip";
  g.mode = mode;
  g.runs = 3;
  g.pull = Spread{pull, pull, pull, 3};
  g.ready = Spread{ready, min, max, 3};
  return g;
}

TEST(NiceStepTest, OneTwoFive) {
  EXPECT_DOUBLE_EQ(NiceStep(44, 8), 10);
  EXPECT_DOUBLE_EQ(NiceStep(9, 8), 2);
  EXPECT_DOUBLE_EQ(NiceStep(3.9, 8), 0.5);
  EXPECT_DOUBLE_EQ(NiceStep(0, 8), 1);
  EXPECT_DOUBLE_EQ(NiceStep(100, 10), 10);
}

TEST(XmlEscapeTest, AllFive) { EXPECT_EQ(XmlEscape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;"); }

TEST(RenderSvgTest, BarsWhiskersRatioAndEscaping) {
  BenchComparison c;
  c.image = "python";
  c.codec = "gzip";
  c.native = Group("native", 40, 44, 42, 50);
  c.zsnap = Group("zsnap", 10, 12, 11, 13);
  c.ready_ratio = 12.0 / 44.0;
  BenchComparison missing;
  missing.image = "python";
  missing.codec = "zstd";
  const std::string svg = RenderSvg({c, missing}, "Cold <start>", "2 cores & 23 GB");
  EXPECT_EQ(svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  EXPECT_THAT(svg, HasSubstr("</svg>\n"));
  EXPECT_THAT(svg, HasSubstr("Cold &lt;start&gt;"));
  EXPECT_THAT(svg, HasSubstr("2 cores &amp; 23 GB"));
  EXPECT_THAT(svg, Not(HasSubstr("Cold <start>")));
  EXPECT_THAT(svg, HasSubstr("44.0 s"));
  EXPECT_THAT(svg, HasSubstr("12.0 s (0.27x)"));
  EXPECT_THAT(svg, HasSubstr("no data"));  // zstd has neither mode
  // 4 bar segments (pull + start for each mode) plus 4 legend swatches and the background.
  const std::regex rect("<rect ");
  EXPECT_EQ(
      std::distance(std::sregex_iterator(svg.begin(), svg.end(), rect), std::sregex_iterator()), 9);
  // Axis runs to 50 s (the largest max) in steps of 10: the 50 label exists, 60 does not.
  EXPECT_THAT(svg, HasSubstr(">50</text>"));
  EXPECT_THAT(svg, Not(HasSubstr(">60</text>")));
  // Every opened tag is closed: as many "<text" as "</text>".
  const std::regex open("<text "), close("</text>");
  EXPECT_EQ(
      std::distance(std::sregex_iterator(svg.begin(), svg.end(), open), std::sregex_iterator()),
      std::distance(std::sregex_iterator(svg.begin(), svg.end(), close), std::sregex_iterator()));
}

TEST(RenderSvgTest, NativeBarIsLongerThanZsnapBar) {
  BenchComparison c;
  c.image = "python";
  c.codec = "gzip";
  c.native = Group("native", 40, 44, 44, 44);
  c.zsnap = Group("zsnap", 10, 11, 11, 11);
  const std::string svg = RenderSvg({c}, "t", "s");
  // The start-to-ready segments' right edges are at x(44) and x(11): widths 4:1 in pull.
  std::smatch m;
  const std::regex pull_rect(
      R"re(<rect x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)" height="22" fill="#7f7f7f")re");
  ASSERT_TRUE(std::regex_search(svg, m, pull_rect));
  const double native_pull_w = std::stod(m[2]);
  const std::regex zpull_rect(
      R"re(<rect x="([0-9.]+)" y="[0-9.]+" width="([0-9.]+)" height="22" fill="#1f6fb4")re");
  ASSERT_TRUE(std::regex_search(svg, m, zpull_rect));
  EXPECT_NEAR(native_pull_w / std::stod(m[2]), 4.0, 0.01);
}

}  // namespace
}  // namespace zsnap::plugin
