// genlm/analysis/plot.hpp - pictures of the analyses as self-contained SVG (no dependencies):
// an attention heatmap (genes x genes of one window, with gene labels and a colour bar) and
// embedding maps (2-D points, e.g. the first two principal components, coloured by class; one or
// more panels side by side with a shared legend).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <genlm/core/error.hpp>
#include <genlm/core/tensor.hpp>

namespace genlm::analysis {

namespace plot_detail {

inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\t') out += c;
    }
  }
  return out;
}

inline std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

inline std::string hex(double r, double g, double b) {
  auto c = [](double v) { return int(std::lround(std::clamp(v, 0.0, 1.0) * 255)); };
  char s[8];
  std::snprintf(s, sizeof s, "#%02x%02x%02x", c(r), c(g), c(b));
  return s;
}

/// Viridis-like colour ramp for t in [0, 1].
inline std::string ramp(double t) {
  static const double stops[9][3] = {{0.267, 0.005, 0.329}, {0.279, 0.175, 0.483}, {0.230, 0.322, 0.546},
                                     {0.173, 0.449, 0.558}, {0.128, 0.567, 0.551}, {0.153, 0.680, 0.504},
                                     {0.363, 0.787, 0.386}, {0.678, 0.863, 0.190}, {0.993, 0.906, 0.144}};
  if (!std::isfinite(t)) t = 0;
  t = std::clamp(t, 0.0, 1.0) * 8.0;
  const int i = std::min(7, int(t));
  const double f = t - i;
  return hex(stops[i][0] + f * (stops[i + 1][0] - stops[i][0]), stops[i][1] + f * (stops[i + 1][1] - stops[i][1]),
             stops[i][2] + f * (stops[i + 1][2] - stops[i][2]));
}

/// Categorical colours (Tableau 20 order: strong colours first).
inline std::string category_colour(int c) {
  static const char* pal[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                              "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896",
                              "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5"};
  if (c < 0) return "#d9d9d9";
  return pal[c % 20];
}

inline void header(std::ostream& o, double w, double h) {
  o << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << num(w) << "\" height=\"" << num(h)
    << "\" viewBox=\"0 0 " << num(w) << ' ' << num(h) << "\" font-family=\"Helvetica, Arial, sans-serif\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
}

}  // namespace plot_detail

struct heatmap_options {
  std::string title;
  std::string subtitle;  ///< a second, smaller title line
  std::string colorbar_label = "attention weight";
  double cell = 16;       ///< cell size in px
  double vmax = 0;        ///< top of the colour scale (0: the largest value)
  std::string row_axis = "from gene (query)";
  std::string col_axis = "to gene (key)";
  std::vector<std::pair<index_t, index_t>> outlined;  ///< cells (row, col) drawn with a white outline
  std::string outline_label;                          ///< legend of the outlines (e.g. "operon pair")
};

/// A rows x cols heatmap (values row-major) with row and column labels.
inline void write_heatmap_svg(std::ostream& o, const std::vector<double>& values, index_t rows, index_t cols,
                              const std::vector<std::string>& row_labels, const std::vector<std::string>& col_labels,
                              const heatmap_options& opt = {}) {
  using namespace plot_detail;
  check<value_error>(rows >= 1 && cols >= 1, "write_heatmap_svg: empty heatmap (", rows, " x ", cols, ")");
  check<shape_error>(index_t(values.size()) == rows * cols, "write_heatmap_svg: ", values.size(), " values for ", rows,
                     " x ", cols);
  check<shape_error>(index_t(row_labels.size()) == rows && index_t(col_labels.size()) == cols,
                     "write_heatmap_svg: ", row_labels.size(), " row and ", col_labels.size(), " column labels for ",
                     rows, " x ", cols);
  double vmax = opt.vmax;
  if (vmax <= 0)
    for (double v : values)
      if (std::isfinite(v)) vmax = std::max(vmax, v);
  if (vmax <= 0) vmax = 1;
  std::size_t longest = 1;
  for (const auto& l : row_labels) longest = std::max(longest, l.size());
  for (const auto& l : col_labels) longest = std::max(longest, l.size());
  const double c = opt.cell, fs = std::min(11.0, c * 0.75);
  const double lab = 12 + double(longest) * fs * 0.62;
  const double legend_w =
      30 + 6.0 * double(std::max<std::size_t>(8, std::max(opt.colorbar_label.size(), opt.outline_label.size() + 3)));
  const double top = 40 + (opt.subtitle.empty() ? 0 : 16);
  const double x0 = lab + 24, y0 = top + lab;
  const double W = std::max({x0 + c * double(cols) + 24 + legend_w, 8.0 * double(opt.title.size()) + 24,
                             6.2 * double(opt.subtitle.size()) + 24});
  const double bh = std::max(80.0, c * double(rows) * 0.8);  // colour bar height
  const double H = std::max(y0 + c * double(rows) + 40, y0 + bh + 50);
  header(o, W, H);
  if (!opt.title.empty())
    o << "<text x=\"" << num(W / 2) << "\" y=\"22\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">"
      << escape(opt.title) << "</text>\n";
  if (!opt.subtitle.empty())
    o << "<text x=\"" << num(W / 2) << "\" y=\"39\" text-anchor=\"middle\" font-size=\"11\">" << escape(opt.subtitle)
      << "</text>\n";
  for (index_t r = 0; r < rows; ++r)
    for (index_t k = 0; k < cols; ++k) {
      const double v = values[std::size_t(r * cols + k)];
      o << "<rect x=\"" << num(x0 + c * double(k)) << "\" y=\"" << num(y0 + c * double(r)) << "\" width=\"" << num(c)
        << "\" height=\"" << num(c) << "\" fill=\"" << ramp(v / vmax) << "\"><title>" << escape(row_labels[std::size_t(r)])
        << " -> " << escape(col_labels[std::size_t(k)]) << ": " << v << "</title></rect>\n";
    }
  for (const auto& [r, k] : opt.outlined) {
    check<value_error>(r >= 0 && r < rows && k >= 0 && k < cols, "write_heatmap_svg: outlined cell (", r, ", ", k,
                       ") outside ", rows, " x ", cols);
    o << "<rect x=\"" << num(x0 + c * double(k) + 1) << "\" y=\"" << num(y0 + c * double(r) + 1) << "\" width=\""
      << num(c - 2) << "\" height=\"" << num(c - 2) << "\" fill=\"none\" stroke=\"white\" stroke-width=\"1.5\"/>\n";
  }
  o << "<g font-size=\"" << num(fs) << "\">\n";
  for (index_t r = 0; r < rows; ++r)
    o << "<text x=\"" << num(x0 - 4) << "\" y=\"" << num(y0 + c * (double(r) + 0.72)) << "\" text-anchor=\"end\">"
      << escape(row_labels[std::size_t(r)]) << "</text>\n";
  for (index_t k = 0; k < cols; ++k) {
    const double x = x0 + c * (double(k) + 0.72), y = y0 - 4;
    o << "<text x=\"" << num(x) << "\" y=\"" << num(y) << "\" transform=\"rotate(-90 " << num(x) << ' ' << num(y)
      << ")\">" << escape(col_labels[std::size_t(k)]) << "</text>\n";
  }
  o << "</g>\n";
  o << "<text x=\"" << num(x0 + c * double(cols) / 2) << "\" y=\"" << num(H - 12)
    << "\" text-anchor=\"middle\" font-size=\"12\">" << escape(opt.col_axis) << "</text>\n";
  o << "<text x=\"12\" y=\"" << num(y0 + c * double(rows) / 2) << "\" font-size=\"12\" text-anchor=\"middle\" "
    << "transform=\"rotate(-90 12 " << num(y0 + c * double(rows) / 2) << ")\">" << escape(opt.row_axis) << "</text>\n";
  // colour bar
  const double bx = x0 + c * double(cols) + 24;
  for (int i = 0; i < 50; ++i)
    o << "<rect x=\"" << num(bx) << "\" y=\"" << num(y0 + bh * (1 - (i + 1) / 50.0)) << "\" width=\"14\" height=\""
      << num(bh / 50 + 0.5) << "\" fill=\"" << ramp((i + 0.5) / 50) << "\"/>\n";
  for (int i = 0; i <= 4; ++i)
    o << "<text x=\"" << num(bx + 18) << "\" y=\"" << num(y0 + bh * (1 - i / 4.0) + 4) << "\" font-size=\"10\">"
      << num(vmax * i / 4.0) << "</text>\n";
  o << "<text x=\"" << num(bx) << "\" y=\"" << num(y0 + bh + 16) << "\" font-size=\"10\">"
    << escape(opt.colorbar_label) << "</text>\n";
  if (!opt.outlined.empty() && !opt.outline_label.empty())
    o << "<rect x=\"" << num(bx) << "\" y=\"" << num(y0 + bh + 26) << "\" width=\"12\" height=\"12\" fill=\""
      << ramp(0.1) << "\" stroke=\"white\" stroke-width=\"1.5\"/><text x=\"" << num(bx + 16) << "\" y=\""
      << num(y0 + bh + 36) << "\" font-size=\"10\">" << escape(opt.outline_label) << "</text>\n";
  o << "</svg>\n";
}

/// One panel of an embedding map: n points (xy: n x 2 row-major), category per point (-1 = none,
/// drawn grey underneath).
struct scatter_panel {
  std::string title;
  std::vector<double> xy;
  std::vector<int> category;
  std::string x_label = "PC1", y_label = "PC2";
};

/// Panels side by side with one legend of the category names.
inline void write_scatter_svg(std::ostream& o, const std::vector<scatter_panel>& panels,
                              const std::vector<std::string>& category_names, const std::string& title = "",
                              const std::string& none_label = "other") {
  using namespace plot_detail;
  check<value_error>(!panels.empty(), "write_scatter_svg: no panels");
  for (const auto& p : panels) {
    check<shape_error>(p.xy.size() == 2 * p.category.size(), "write_scatter_svg: panel '", p.title, "': ",
                       p.xy.size(), " coordinates for ", p.category.size(), " points");
    for (int c : p.category)
      check<value_error>(c >= -1 && c < int(category_names.size()), "write_scatter_svg: category ", c, " of ",
                         category_names.size(), " names");
  }
  const double S = 340, pad = 46, top = title.empty() ? 20 : 44;
  std::size_t longest = none_label.size();
  for (const auto& n : category_names) longest = std::max(longest, n.size());
  const double legend_w = 40 + 6.5 * double(std::min<std::size_t>(longest, 40));
  const double W = double(panels.size()) * (S + pad) + pad + legend_w;
  const double H = std::max(top + S + 56, top + 24 + 16.0 * double(category_names.size() + 1));
  header(o, W, H);
  if (!title.empty())
    o << "<text x=\"" << num(W / 2) << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">"
      << escape(title) << "</text>\n";
  for (std::size_t pi = 0; pi < panels.size(); ++pi) {
    const auto& p = panels[pi];
    const double px = pad + double(pi) * (S + pad), py = top + 20;
    double xmin = std::numeric_limits<double>::infinity(), xmax = -xmin, ymin = xmin, ymax = -xmin;
    for (std::size_t i = 0; i < p.category.size(); ++i) {
      const double x = p.xy[2 * i], y = p.xy[2 * i + 1];
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      xmin = std::min(xmin, x), xmax = std::max(xmax, x), ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
    if (!(xmax > xmin)) xmin -= 1, xmax += 1;
    if (!(ymax > ymin)) ymin -= 1, ymax += 1;
    const double mx = 0.04 * (xmax - xmin), my = 0.04 * (ymax - ymin);
    xmin -= mx, xmax += mx, ymin -= my, ymax += my;
    o << "<text x=\"" << num(px + S / 2) << "\" y=\"" << num(py - 6) << "\" text-anchor=\"middle\" font-size=\"13\">"
      << escape(p.title) << "</text>\n";
    o << "<rect x=\"" << num(px) << "\" y=\"" << num(py) << "\" width=\"" << num(S) << "\" height=\"" << num(S)
      << "\" fill=\"none\" stroke=\"#444\"/>\n";
    o << "<text x=\"" << num(px + S / 2) << "\" y=\"" << num(py + S + 18) << "\" text-anchor=\"middle\" font-size=\"11\">"
      << escape(p.x_label) << "</text>\n";
    o << "<text x=\"" << num(px - 10) << "\" y=\"" << num(py + S / 2) << "\" text-anchor=\"middle\" font-size=\"11\" "
      << "transform=\"rotate(-90 " << num(px - 10) << ' ' << num(py + S / 2) << ")\">" << escape(p.y_label)
      << "</text>\n";
    for (int pass = 0; pass < 2; ++pass)  // unlabelled points first, underneath
      for (std::size_t i = 0; i < p.category.size(); ++i) {
        const int c = p.category[i];
        if ((pass == 0) != (c < 0)) continue;
        const double x = p.xy[2 * i], y = p.xy[2 * i + 1];
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        o << "<circle cx=\"" << num(px + S * (x - xmin) / (xmax - xmin)) << "\" cy=\""
          << num(py + S * (1 - (y - ymin) / (ymax - ymin))) << "\" r=\"" << (c < 0 ? "2" : "2.6") << "\" fill=\""
          << category_colour(c) << "\" fill-opacity=\"" << (c < 0 ? "0.5" : "0.85") << "\"/>\n";
      }
  }
  const double lx = pad + double(panels.size()) * (S + pad), ly = top + 28;
  std::vector<int> order;
  for (int i = 0; i < int(category_names.size()); ++i) order.push_back(i);
  bool any_none = false;
  for (const auto& p : panels)
    for (int c : p.category) any_none |= c < 0;
  if (any_none) order.push_back(-1);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const int c = order[i];
    std::string name = c < 0 ? none_label : category_names[std::size_t(c)];
    if (name.size() > 40) name = name.substr(0, 37) + "...";
    o << "<circle cx=\"" << num(lx + 6) << "\" cy=\"" << num(ly + 16.0 * double(i)) << "\" r=\"4.5\" fill=\""
      << category_colour(c) << "\"/><text x=\"" << num(lx + 16) << "\" y=\"" << num(ly + 16.0 * double(i) + 4)
      << "\" font-size=\"11\">" << escape(name) << "</text>\n";
  }
  o << "</svg>\n";
}

}  // namespace genlm::analysis
