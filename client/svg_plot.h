// Line charts as a standalone SVG (no scripts, no external files): the
// loss and accuracy curves `gradctl train` draws.
#ifndef GRADSERVE_CLIENT_SVG_PLOT_H_
#define GRADSERVE_CLIENT_SVG_PLOT_H_

#include <string>
#include <utility>
#include <vector>

namespace gradserve::client {

struct Series {
  std::string name;   // the legend's text
  std::string id;     // data-series="..." on its <polyline> (for tests)
  std::string color;  // CSS colour
  std::vector<std::pair<double, double>>
      points;  // (x, y); non-finite y skipped
  double width = 2;
  bool markers = false;  // a dot at each point
};

struct Panel {
  std::string title, x_label, y_label;
  std::vector<Series> series;
  // A fixed y range (both set) or one fitted to the data.
  double y_min = 0, y_max = 0;
  bool fixed_y = false;
  bool percent = false;  // y tick labels as percentages of 1
};

// Panels side by side under `title`. Every panel's <g class="panel"> carries
// its axis ranges and plot rectangle as data-* attributes, so a reader can
// map points back to values.
std::string RenderSvg(const std::string& title,
                      const std::vector<Panel>& panels);

// "Nice" tick values covering [lo, hi]: steps of 1, 2 or 5 times a power of
// ten, about `count` of them.
std::vector<double> NiceTicks(double lo, double hi, int count);

}  // namespace gradserve::client

#endif  // GRADSERVE_CLIENT_SVG_PLOT_H_
