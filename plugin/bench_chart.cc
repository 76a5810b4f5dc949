#include "plugin/bench_chart.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace zsnap::plugin {
namespace {

constexpr double kWidth = 860;
constexpr double kLeft = 170;   // labels column
constexpr double kRight = 110;  // room for value and ratio labels
constexpr double kTop = 78;
constexpr double kBar = 22;
constexpr double kBarGap = 6;
constexpr double kGroupGap = 22;

struct Colors {
  const char* pull;
  const char* start;
};
constexpr Colors kNative = {"#7f7f7f", "#c7c7c7"};
constexpr Colors kZsnap = {"#1f6fb4", "#9cc7ec"};
constexpr double kTargetRatio = 0.3;  // zsnap pull <= 0.3x native (issue 4, acceptance 5)

}  // namespace

std::string XmlEscape(absl::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

double NiceStep(double max_value, int max_ticks) {
  if (!(max_value > 0) || max_ticks < 1) return 1;
  const double raw = max_value / max_ticks;
  const double mag = std::pow(10, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) return m * mag;
  }
  return 10 * mag;
}

std::string RenderSvg(const std::vector<BenchComparison>& comparisons, absl::string_view title,
                      absl::string_view subtitle) {
  double max_s = 0;
  for (const BenchComparison& c : comparisons) {
    for (const auto* g : {&c.native, &c.zsnap}) {
      if (*g && (*g)->ready) max_s = std::max(max_s, (*g)->ready->max);
    }
  }
  const double step = NiceStep(max_s > 0 ? max_s : 1, 8);
  const double axis_max = std::max(step, std::ceil((max_s > 0 ? max_s : 1) / step) * step);
  const double plot_w = kWidth - kLeft - kRight;
  auto x = [&](double s) { return kLeft + s / axis_max * plot_w; };

  const double group_h = 2 * kBar + kBarGap + kGroupGap;
  const double plot_h = std::max<double>(1, comparisons.size()) * group_h;
  const double height = kTop + plot_h + 90;

  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
      "viewBox=\"0 0 %.0f %.0f\" font-family=\"Helvetica, Arial, sans-serif\" "
      "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      kWidth, height, kWidth, height);
  absl::StrAppendFormat(&svg,
                        "<text x=\"20\" y=\"28\" font-size=\"17\" font-weight=\"bold\">%s</text>\n"
                        "<text x=\"20\" y=\"48\" fill=\"#555\">%s</text>\n",
                        XmlEscape(title), XmlEscape(subtitle));
  // Grid and axis.
  for (double t = 0; t <= axis_max + step / 2; t += step) {
    absl::StrAppendFormat(
        &svg,
        "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"#e3e3e3\"/>\n"
        "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#555\">%g</text>\n",
        x(t), kTop - 8, x(t), kTop + plot_h, x(t), kTop + plot_h + 16, t);
  }
  absl::StrAppendFormat(&svg,
                        "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\" fill=\"#333\">seconds "
                        "from PullImage to the container's ready line (median; whisker: "
                        "min-max)</text>\n",
                        kLeft + plot_w / 2, kTop + plot_h + 34);

  double y = kTop;
  for (const BenchComparison& c : comparisons) {
    absl::StrAppendFormat(&svg, "<text x=\"20\" y=\"%.1f\" font-weight=\"bold\">%s %s</text>\n",
                          y + kBar + kBarGap / 2 + 4, XmlEscape(c.image), XmlEscape(c.codec));
    for (const auto* g : {&c.native, &c.zsnap}) {
      const bool z = g == &c.zsnap;
      const Colors& col = z ? kZsnap : kNative;
      absl::StrAppendFormat(&svg,
                            "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" fill=\"#555\" "
                            "font-size=\"11\">%s</text>\n",
                            kLeft - 8, y + kBar / 2 + 4, z ? "zsnap" : "native");
      if (*g && (*g)->ready && (*g)->pull) {
        const Spread& ready = *(*g)->ready;
        const double pull = std::min((*g)->pull->median, ready.median);
        absl::StrAppendFormat(
            &svg,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\">"
            "<title>%s %s %s: pull %.2f s (median)</title></rect>\n"
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.0f\" fill=\"%s\">"
            "<title>%s %s %s: ready %.2f s (median of %d)</title></rect>\n",
            x(0), y, x(pull) - x(0), kBar, col.pull, XmlEscape(c.image), XmlEscape(c.codec),
            (*g)->mode, (*g)->pull->median, x(pull), y, x(ready.median) - x(pull), kBar, col.start,
            XmlEscape(c.image), XmlEscape(c.codec), (*g)->mode, ready.median, ready.n);
        const double wy = y + kBar / 2;
        absl::StrAppendFormat(
            &svg,
            "<path d=\"M%.1f %.1f H%.1f M%.1f %.1f V%.1f M%.1f %.1f V%.1f\" stroke=\"#222\" "
            "stroke-width=\"1.2\" fill=\"none\"/>\n",
            x(ready.min), wy, x(ready.max), x(ready.min), wy - 5, wy + 5, x(ready.max), wy - 5,
            wy + 5);
        if (z && c.native && c.native->pull) {
          // The target for the pull: kTargetRatio of native's median pull.
          const double tx = x(kTargetRatio * c.native->pull->median);
          absl::StrAppendFormat(
              &svg,
              "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
              "stroke=\"#d62728\" stroke-width=\"2\" stroke-dasharray=\"4 3\"/>\n",
              tx, y - 3, tx, y + kBar + 3);
        }
        std::string label = absl::StrFormat("%.1f s", ready.median);
        if (z && c.ready_ratio) absl::StrAppendFormat(&label, " (%.2fx)", *c.ready_ratio);
        absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#222\"%s>%s</text>\n",
                              x(ready.max) + 6, y + kBar / 2 + 4, z ? " font-weight=\"bold\"" : "",
                              label);
      } else {
        absl::StrAppendFormat(&svg, "<text x=\"%.1f\" y=\"%.1f\" fill=\"#a00\">no data</text>\n",
                              x(0) + 4, y + kBar / 2 + 4);
      }
      y += kBar + kBarGap;
    }
    y += kGroupGap - kBarGap;
  }
  // Legend.
  const double ly = kTop + plot_h + 50;
  double lx = kLeft;
  for (const auto& [color, text] :
       {std::pair{kNative.pull, "containerd native: pull"},
        std::pair{kNative.start, "native: start to ready"}, std::pair{kZsnap.pull, "zsnap: pull"},
        std::pair{kZsnap.start, "zsnap: start to ready"}}) {
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
                          "<text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
                          lx, ly, color, lx + 17, ly + 10, text);
    lx += 160;
  }
  absl::StrAppendFormat(&svg,
                        "<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#d62728\" "
                        "stroke-width=\"2\" stroke-dasharray=\"4 3\"/><text x=\"%.0f\" y=\"%.0f\">"
                        "target: zsnap pull at %.1fx native pull</text>\n",
                        kLeft + 5, ly + 18, kLeft + 5, ly + 32, kLeft + 17, ly + 30, kTargetRatio);
  svg += "</svg>\n";
  return svg;
}

}  // namespace zsnap::plugin
