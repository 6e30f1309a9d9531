#include "client/svg_plot.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace gradserve::client {
namespace {

constexpr double kPanelWidth = 520, kPanelHeight = 360;
constexpr double kLeft = 70, kRight = 20, kTop = 40, kBottom = 95;

std::string Escape(const std::string& text) {
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
      default:
        out += c;
    }
  }
  return out;
}

std::string Number(double v) { return absl::StrFormat("%.2f", v); }

std::string TickLabel(double v, double step, bool percent) {
  if (percent) return absl::StrFormat("%.0f%%", v * 100);
  if (std::abs(v) < step / 2) return "0";
  if (std::abs(v) >= 1e5 || std::abs(v) < 1e-3)
    return absl::StrFormat("%.0e", v);
  const int decimals =
      std::max(0, static_cast<int>(-std::floor(std::log10(step))));
  return absl::StrFormat("%.*f", decimals, v);
}

struct Range {
  double lo = 0, hi = 1;
};

Range DataRange(const Panel& p, bool x) {
  double lo = INFINITY, hi = -INFINITY;
  for (const Series& s : p.series) {
    for (const auto& [px, py] : s.points) {
      const double v = x ? px : py;
      if (!std::isfinite(v)) continue;
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  if (!std::isfinite(lo)) return {0, 1};
  if (hi - lo < 1e-12) {
    const double pad = std::max(std::abs(hi) * 0.1, 1e-3);
    return {lo - pad, hi + pad};
  }
  return {lo, hi};
}

// The panel's axes, grid, ticks and labels.
void DrawAxes(std::string& svg, const Panel& p, Range x, Range y,
              const std::vector<double>& xt, const std::vector<double>& yt,
              double w, double h) {
  auto sx = [&](double v) { return kLeft + (v - x.lo) / (x.hi - x.lo) * w; };
  auto sy = [&](double v) { return kTop + h - (v - y.lo) / (y.hi - y.lo) * h; };
  absl::StrAppend(&svg, "<rect x=\"", Number(kLeft), "\" y=\"", Number(kTop),
                  "\" width=\"", Number(w), "\" height=\"", Number(h),
                  "\" fill=\"#fbfbfd\" stroke=\"#999\"/>\n");
  const double ystep = yt.size() > 1 ? yt[1] - yt[0] : 1;
  for (double v : yt) {
    absl::StrAppend(&svg, "<line x1=\"", Number(kLeft), "\" x2=\"",
                    Number(kLeft + w), "\" y1=\"", Number(sy(v)), "\" y2=\"",
                    Number(sy(v)), "\" stroke=\"#e3e3e8\"/>\n", "<text x=\"",
                    Number(kLeft - 8), "\" y=\"", Number(sy(v) + 4),
                    "\" text-anchor=\"end\">", TickLabel(v, ystep, p.percent),
                    "</text>\n");
  }
  const double xstep = xt.size() > 1 ? xt[1] - xt[0] : 1;
  for (double v : xt) {
    absl::StrAppend(&svg, "<line x1=\"", Number(sx(v)), "\" x2=\"",
                    Number(sx(v)), "\" y1=\"", Number(kTop), "\" y2=\"",
                    Number(kTop + h), "\" stroke=\"#e3e3e8\"/>\n", "<text x=\"",
                    Number(sx(v)), "\" y=\"", Number(kTop + h + 18),
                    "\" text-anchor=\"middle\">", TickLabel(v, xstep, false),
                    "</text>\n");
  }
  absl::StrAppend(
      &svg, "<text class=\"title\" x=\"", Number(kLeft + w / 2), "\" y=\"",
      Number(kTop - 14), "\" text-anchor=\"middle\">", Escape(p.title),
      "</text>\n", "<text x=\"", Number(kLeft + w / 2), "\" y=\"",
      Number(kTop + h + 38), "\" text-anchor=\"middle\">", Escape(p.x_label),
      "</text>\n", "<text transform=\"translate(", Number(18), " ",
      Number(kTop + h / 2), ") rotate(-90)\" text-anchor=\"middle\">",
      Escape(p.y_label), "</text>\n");
}

void DrawSeries(std::string& svg, const Series& s, Range x, Range y, double w,
                double h) {
  auto sx = [&](double v) { return kLeft + (v - x.lo) / (x.hi - x.lo) * w; };
  auto sy = [&](double v) {
    v = std::clamp(v, y.lo, y.hi);
    return kTop + h - (v - y.lo) / (y.hi - y.lo) * h;
  };
  std::string points;
  for (const auto& [px, py] : s.points) {
    if (!std::isfinite(py)) continue;
    absl::StrAppend(&points, points.empty() ? "" : " ", Number(sx(px)), ",",
                    Number(sy(py)));
  }
  absl::StrAppend(&svg, "<polyline data-series=\"", Escape(s.id),
                  "\" fill=\"none\" stroke=\"", s.color, "\" stroke-width=\"",
                  Number(s.width), "\" stroke-linejoin=\"round\" points=\"",
                  points, "\"><title>", Escape(s.name),
                  "</title></polyline>\n");
  if (!s.markers) return;
  for (const auto& [px, py] : s.points) {
    if (!std::isfinite(py)) continue;
    absl::StrAppend(&svg, "<circle cx=\"", Number(sx(px)), "\" cy=\"",
                    Number(sy(py)), "\" r=\"3.5\" fill=\"", s.color, "\"/>\n");
  }
}

void DrawLegend(std::string& svg, const Panel& p, double w, double h) {
  double x = kLeft;
  const double y = kTop + h + 62;
  for (const Series& s : p.series) {
    absl::StrAppend(&svg, "<line x1=\"", Number(x), "\" x2=\"", Number(x + 22),
                    "\" y1=\"", Number(y - 4), "\" y2=\"", Number(y - 4),
                    "\" stroke=\"", s.color, "\" stroke-width=\"3\"/>\n",
                    "<text x=\"", Number(x + 28), "\" y=\"", Number(y), "\">",
                    Escape(s.name), "</text>\n");
    x += 40 + 7.2 * static_cast<double>(s.name.size());
  }
}

}  // namespace

std::vector<double> NiceTicks(double lo, double hi, int count) {
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / std::max(count, 1);
  const double power = std::pow(10, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    step = m * power;
    if (step >= raw) break;
  }
  std::vector<double> ticks;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + step * 1e-9;
       v += step) {
    ticks.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  }
  return ticks;
}

std::string RenderSvg(const std::string& title,
                      const std::vector<Panel>& panels) {
  const double width = kPanelWidth * panels.size();
  const double height = kPanelHeight + 40;
  std::string svg =
      absl::StrCat("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"",
                   Number(width), "\" height=\"", Number(height),
                   "\" viewBox=\"0 0 ", Number(width), " ", Number(height),
                   "\" font-family=\"DejaVu Sans, Helvetica, Arial, "
                   "sans-serif\" font-size=\"12\">\n",
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
                   "<text x=\"", Number(width / 2),
                   "\" y=\"22\" text-anchor=\"middle\" "
                   "font-size=\"15\" font-weight=\"bold\">",
                   Escape(title), "</text>\n");
  const double w = kPanelWidth - kLeft - kRight;
  const double h = kPanelHeight - kTop - kBottom;
  for (size_t i = 0; i < panels.size(); ++i) {
    const Panel& p = panels[i];
    Range x = DataRange(p, true);
    Range y = p.fixed_y ? Range{p.y_min, p.y_max} : DataRange(p, false);
    const std::vector<double> xt = NiceTicks(x.lo, x.hi, 6);
    std::vector<double> yt = NiceTicks(y.lo, y.hi, 5);
    if (!p.fixed_y &&
        yt.size() > 1) {  // the axis ends on ticks outside the data
      const double step = yt[1] - yt[0];
      y = {std::floor(y.lo / step + 1e-9) * step,
           std::ceil(y.hi / step - 1e-9) * step};
      yt = NiceTicks(y.lo, y.hi, 5);
    }
    absl::StrAppend(&svg, "<g class=\"panel\" transform=\"translate(",
                    Number(kPanelWidth * i), " 20)\" data-title=\"",
                    Escape(p.title), "\" data-x-min=\"", x.lo,
                    "\" data-x-max=\"", x.hi, "\" data-y-min=\"", y.lo,
                    "\" data-y-max=\"", y.hi, "\" data-left=\"", kLeft,
                    "\" data-top=\"", kTop, "\" data-width=\"", w,
                    "\" data-height=\"", h, "\">\n");
    DrawAxes(svg, p, x, y, xt, yt, w, h);
    for (const Series& s : p.series) DrawSeries(svg, s, x, y, w, h);
    DrawLegend(svg, p, w, h);
    absl::StrAppend(&svg, "</g>\n");
  }
  absl::StrAppend(&svg, "</svg>\n");
  return svg;
}

}  // namespace gradserve::client
