// genlm/io/npy.hpp - NumPy .npy reader and writer
// (https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html).
//
// Layout: "\x93NUMPY", major, minor, header length (u16 LE for v1.0, u32 LE for v2.0/v3.0),
// then an ASCII (v3.0: UTF-8) Python dict literal
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
// padded with spaces and a final '\n', then the raw element data.
//
// Reader: versions 1.0/2.0/3.0; descr '<f2' '<f4' '<f8' '<i4' '<i8' '|u1' '|b1' with any byte
// order prefix ('<', '>', '=', '|'; big-endian data is byte-swapped); shape `()`, `(n,)`,
// `(a, b, ...)`. fortran_order True arrays are TRANSPOSED into C order on load, so the returned
// array always has the file's logical shape in row-major layout. Structured/object dtypes, bad
// magic, unsupported versions, malformed headers and truncated data (or trailing bytes after the
// data) throw genlm::format_error naming the file and the field; data too large to allocate
// throws genlm::error naming the file and the byte count.
//
// Writer: version 1.0 (2.0 only if the header would not fit, as numpy does), little-endian,
// fortran_order False, header padded exactly like numpy so files are byte-identical to np.save.
// bfloat16 has no .npy descr and is rejected with value_error.
#pragma once

#include <genlm/core/error.hpp>
#include <genlm/io/array.hpp>
#include <genlm/io/atomic_file.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace genlm::io {

namespace detail {

inline std::string npy_where(const std::string& src) { return "npy file '" + src + "'"; }

/// A value of the tiny Python-literal subset used in .npy headers.
struct py_value {
  enum class kind { str, boolean, none, integer, tuple, list, dict } k = kind::none;
  std::string s;
  bool b = false;
  std::int64_t i = 0;
  std::vector<py_value> items;                            // tuple / list elements, dict values
  std::vector<std::string> keys;                          // dict keys (parallel to items)

  std::string type_name() const {
    switch (k) {
      case kind::str: return "str";
      case kind::boolean: return "bool";
      case kind::none: return "None";
      case kind::integer: return "int";
      case kind::tuple: return "tuple";
      case kind::list: return "list";
      case kind::dict: return "dict";
    }
    return "?";
  }
};

/// Recursive-descent parser for the header dict: strings ('..' or ".."), True/False/None,
/// integers (an old Python 2 'L' suffix is accepted), tuples, lists and dicts.
class py_literal_parser {
 public:
  py_literal_parser(std::string_view text, const std::string& src) : t_(text), src_(src) {}

  py_value parse_header() {
    skip_ws();
    check<format_error>(peek() == '{', npy_where(src_), ": header must be a Python dict literal "
                        "starting with '{', got '", excerpt(), "'");
    py_value v = parse_value(0);
    skip_ws();
    check<format_error>(p_ == t_.size(), npy_where(src_), ": unexpected text after the header "
                        "dict at offset ", p_, ": '", excerpt(), "'");
    return v;
  }

 private:
  std::string_view t_;
  const std::string& src_;
  std::size_t p_ = 0;

  char peek() const { return p_ < t_.size() ? t_[p_] : '\0'; }
  void skip_ws() {
    while (p_ < t_.size() && (t_[p_] == ' ' || t_[p_] == '\t' || t_[p_] == '\n' || t_[p_] == '\r'))
      ++p_;
  }
  std::string excerpt() const {
    std::string e(t_.substr(p_, 20));
    for (char& c : e)
      if (c == '\n') c = ' ';
    return e;
  }
  [[noreturn]] void fail(std::string_view what) const {
    throw format_error(genlm::detail::concat(npy_where(src_), ": malformed header: ", what, " at offset ", p_,
                              " ('", excerpt(), "'); header: ", std::string(t_.substr(0, 200))));
  }
  void expect(char c) {
    skip_ws();
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++p_;
  }

  py_value parse_value(int depth) {
    if (depth > 32) fail("nesting too deep");
    skip_ws();
    const char c = peek();
    if (c == '\'' || c == '"') return parse_string();
    if (c == '{') return parse_dict(depth);
    if (c == '(' || c == '[') return parse_seq(depth);
    if (c == '-' || c == '+' || (c >= '0' && c <= '9')) return parse_int();
    for (auto [word, k, b] : {std::tuple{"True", py_value::kind::boolean, true},
                              std::tuple{"False", py_value::kind::boolean, false},
                              std::tuple{"None", py_value::kind::none, false}}) {
      const std::string_view w(word);
      if (t_.substr(p_, w.size()) == w) {
        p_ += w.size();
        py_value v;
        v.k = k;
        v.b = b;
        return v;
      }
    }
    fail("unexpected token");
  }

  py_value parse_string() {
    const char q = t_[p_++];
    py_value v;
    v.k = py_value::kind::str;
    while (true) {
      if (p_ >= t_.size() || t_[p_] == '\n') fail("unterminated string");
      char c = t_[p_++];
      if (c == q) break;
      if (c == '\\') {
        if (p_ >= t_.size()) fail("unterminated string");
        c = t_[p_++];
        if (c != '\\' && c != '\'' && c != '"') v.s += '\\';  // keep unknown escapes verbatim
      }
      v.s += c;
    }
    return v;
  }

  py_value parse_int() {
    bool neg = false;
    if (peek() == '+' || peek() == '-') neg = t_[p_++] == '-';
    if (!(peek() >= '0' && peek() <= '9')) fail("expected digits");
    std::uint64_t mag = 0;
    constexpr std::uint64_t lim = std::uint64_t{1} << 63;  // |INT64_MIN|
    while (peek() >= '0' && peek() <= '9') {
      const auto d = static_cast<std::uint64_t>(t_[p_++] - '0');
      if (mag > (lim - d) / 10) fail("integer out of range");
      mag = mag * 10 + d;
    }
    if (peek() == 'L' || peek() == 'l') ++p_;  // Python 2 long suffix, written by old numpy
    if (!neg && mag == lim) fail("integer out of range");
    py_value v;
    v.k = py_value::kind::integer;
    v.i = neg ? static_cast<std::int64_t>(0 - mag) : static_cast<std::int64_t>(mag);
    return v;
  }

  py_value parse_seq(int depth) {
    const char open = t_[p_++];
    const char close = open == '(' ? ')' : ']';
    py_value v;
    v.k = open == '(' ? py_value::kind::tuple : py_value::kind::list;
    bool trailing_comma = false;
    skip_ws();
    while (peek() != close) {
      v.items.push_back(parse_value(depth + 1));
      skip_ws();
      trailing_comma = false;
      if (peek() == ',') {
        ++p_;
        trailing_comma = true;
        skip_ws();
      } else if (peek() != close) {
        fail(std::string("expected ',' or '") + close + "'");
      }
    }
    ++p_;
    // "(5)" is just 5 in Python, not a tuple; numpy always writes "(5,)".
    if (v.k == py_value::kind::tuple && v.items.size() == 1 && !trailing_comma)
      return std::move(v.items[0]);
    return v;
  }

  py_value parse_dict(int depth) {
    ++p_;  // '{'
    py_value v;
    v.k = py_value::kind::dict;
    skip_ws();
    while (peek() != '}') {
      if (peek() != '\'' && peek() != '"') fail("expected a string key");
      std::string key = parse_string().s;
      for (const auto& k : v.keys)
        if (k == key) fail("duplicate key '" + key + "'");
      expect(':');
      v.items.push_back(parse_value(depth + 1));
      v.keys.push_back(std::move(key));
      skip_ws();
      if (peek() == ',') {
        ++p_;
        skip_ws();
      } else if (peek() != '}') {
        fail("expected ',' or '}'");
      }
    }
    ++p_;
    return v;
  }
};

/// Decoded .npy header.
struct npy_header {
  io::dtype dtype = io::dtype::f32;
  bool swap = false;  ///< data is big-endian (must be byte-swapped into our little-endian layout)
  bool fortran_order = false;
  std::vector<std::int64_t> shape;
  std::uint64_t data_offset = 0;  ///< where the element data starts in the file
  std::string descr;
};

/// "<f4" etc. -> dtype and byte order; throws format_error for anything unsupported.
inline void npy_parse_descr(npy_header& h, const std::string& src) {
  const std::string& d = h.descr;
  const std::string supported = "'<f2', '<f4', '<f8', '<i4', '<i8', '|u1', '|b1' (any byte order)";
  std::string_view code = d;
  char order = '|';
  if (!code.empty() && (code[0] == '<' || code[0] == '>' || code[0] == '=' || code[0] == '|')) {
    order = code[0];
    code.remove_prefix(1);
  }
  static const std::pair<std::string_view, io::dtype> table[] = {
      {"f2", dtype::f16}, {"f4", dtype::f32}, {"f8", dtype::f64}, {"i4", dtype::i32},
      {"i8", dtype::i64}, {"u1", dtype::u8},  {"b1", dtype::bool_}, {"?", dtype::bool_}};
  for (const auto& [c, t] : table) {
    if (c != code) continue;
    h.dtype = t;
    const bool big = order == '>' || (order == '=' && std::endian::native == std::endian::big);
    h.swap = big && element_size(t) > 1;
    return;
  }
  throw format_error(genlm::detail::concat(npy_where(src), ": field 'descr' has unsupported value '", d,
                            "' (supported: ", supported, ")"));
}

/// Interprets the header dict text.
inline void npy_interpret_header(npy_header& h, std::string_view text, const std::string& src) {
  const std::string where = npy_where(src);
  const py_value dict = py_literal_parser(text, src).parse_header();
  const py_value* descr = nullptr;
  const py_value* fortran = nullptr;
  const py_value* shape = nullptr;
  for (std::size_t i = 0; i < dict.keys.size(); ++i) {
    const std::string& k = dict.keys[i];
    if (k == "descr") descr = &dict.items[i];
    else if (k == "fortran_order") fortran = &dict.items[i];
    else if (k == "shape") shape = &dict.items[i];
    else throw format_error(genlm::detail::concat(where, ": header has unexpected key '", k,
                                   "' (expected exactly 'descr', 'fortran_order', 'shape')"));
  }
  for (auto [p, name] : {std::pair{descr, "descr"}, std::pair{fortran, "fortran_order"},
                         std::pair{shape, "shape"}})
    check<format_error>(p != nullptr, where, ": header has no '", name, "' key");

  if (descr->k != py_value::kind::str)
    throw format_error(genlm::detail::concat(where, ": field 'descr' is a ", descr->type_name(),
                              "; structured dtypes are not supported (need one of '<f4', '<f8', "
                              "'<f2', '<i4', '<i8', '|u1', '|b1')"));
  h.descr = descr->s;
  npy_parse_descr(h, src);

  check<format_error>(fortran->k == py_value::kind::boolean, where,
                      ": field 'fortran_order' must be True or False, got a ", fortran->type_name());
  h.fortran_order = fortran->b;

  check<format_error>(shape->k == py_value::kind::tuple, where,
                      ": field 'shape' must be a tuple of integers, got a ", shape->type_name());
  for (std::size_t i = 0; i < shape->items.size(); ++i) {
    const py_value& d = shape->items[i];
    check<format_error>(d.k == py_value::kind::integer, where, ": field 'shape' element ", i,
                        " is a ", d.type_name(), ", expected an int");
    h.shape.push_back(d.i);
  }
  checked_numel<format_error>(h.shape, element_size(h.dtype), where + ": field 'shape'");
}

/// Reads and validates magic, version and header through `read(dst, count, offset) -> got`.
/// `total` is the size of the whole file.
inline npy_header npy_read_header(
    const std::function<std::size_t(void*, std::size_t, std::uint64_t)>& read,
    std::uint64_t total, const std::string& src) {
  const std::string where = npy_where(src);
  unsigned char pre[12] = {};
  const std::size_t got = read(pre, static_cast<std::size_t>(std::min<std::uint64_t>(total, 12)), 0);
  static constexpr unsigned char magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};
  check<format_error>(got >= 6 && std::memcmp(pre, magic, 6) == 0, where,
                      ": bad magic: expected the 6 bytes \"\\x93NUMPY\" at the start of the file",
                      got < 6 ? " (file is only " + std::to_string(total) + " bytes)" : "");
  check<format_error>(got >= 10, where, ": file is only ", total,
                      " bytes, too short for the version and header-length fields");
  const int major = pre[6], minor = pre[7];
  check<format_error>((major == 1 || major == 2 || major == 3) && minor == 0, where,
                      ": unsupported format version ", major, ".", minor,
                      " (supported: 1.0, 2.0, 3.0)");
  std::uint64_t hlen;
  std::uint64_t start;
  if (major == 1) {
    hlen = static_cast<std::uint64_t>(pre[8]) | (static_cast<std::uint64_t>(pre[9]) << 8);
    start = 10;
  } else {
    check<format_error>(got >= 12, where, ": file is only ", total,
                        " bytes, too short for a version ", major, ".0 header-length field");
    hlen = load_le<std::uint32_t>(reinterpret_cast<const std::byte*>(pre + 8));
    start = 12;
  }
  check<format_error>(hlen <= total - start, where, ": header length ", hlen, " exceeds the ",
                      total - start, " bytes after the header-length field (truncated file?)");
  std::string text(static_cast<std::size_t>(hlen), '\0');
  check<format_error>(read(text.data(), text.size(), start) == text.size(), where,
                      ": could not read the ", hlen, "-byte header");
  if (major < 3)  // latin-1 / ASCII headers: reject control bytes other than whitespace
    for (char c : text)
      check<format_error>(static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t' ||
                              c == '\r',
                          where, ": header contains a control byte 0x", std::hex,
                          static_cast<int>(static_cast<unsigned char>(c)));

  npy_header h;
  npy_interpret_header(h, text, src);
  h.data_offset = start + hlen;

  const auto n = static_cast<std::uint64_t>(
      checked_numel<format_error>(h.shape, element_size(h.dtype), where));
  const std::uint64_t need = n * element_size(h.dtype);
  const std::uint64_t have = total - h.data_offset;
  check<format_error>(have == need, where, ": expected ", need, " bytes of data for shape ",
                      shape_to_string(h.shape), " ", dtype_long_name(h.dtype), ", found ", have,
                      have < need ? " (truncated file?)" : " (trailing bytes after the array data)");
  return h;
}

/// Converts the freshly read element bytes to our layout: little-endian, C order.
inline void npy_finish(const npy_header& h, array& a, const std::string& src) {
  const std::size_t es = element_size(a.dtype);
  if (h.swap) byteswap_elements(a.bytes, es);
  if (a.dtype == dtype::bool_)  // normalise to 0/1 like numpy's bool
    for (auto& b : a.bytes) b = b != std::byte{0} ? std::byte{1} : std::byte{0};
  if (!h.fortran_order || a.shape.size() < 2 || a.bytes.empty()) return;
  // Fortran (column-major) -> C (row-major): walk the C order with a multi-index and track the
  // matching Fortran offset incrementally.
  const std::size_t nd = a.shape.size();
  std::vector<std::int64_t> fstride(nd), idx(nd, 0);
  std::int64_t s = 1;
  for (std::size_t j = 0; j < nd; ++j) {
    fstride[j] = s;
    s *= a.shape[j];
  }
  std::vector<std::byte> out =
      allocate_bytes(a.bytes.size(), npy_where(src) + ": transposing fortran_order data");
  const auto n = static_cast<std::size_t>(a.numel());
  std::int64_t foff = 0;
  for (std::size_t c = 0; c < n; ++c) {
    std::memcpy(out.data() + c * es, a.bytes.data() + static_cast<std::size_t>(foff) * es, es);
    for (std::size_t j = nd; j-- > 0;) {
      foff += fstride[j];
      if (++idx[j] < a.shape[j]) break;
      foff -= fstride[j] * a.shape[j];
      idx[j] = 0;
    }
  }
  a.bytes = std::move(out);
}

/// numpy's descr string for a dtype; bf16 has none.
inline std::string_view npy_descr(io::dtype t, const std::string& dest) {
  switch (t) {
    case dtype::f16: return "<f2";
    case dtype::f32: return "<f4";
    case dtype::f64: return "<f8";
    case dtype::i32: return "<i4";
    case dtype::i64: return "<i8";
    case dtype::u8: return "|u1";
    case dtype::bool_: return "|b1";
    case dtype::bf16: break;
  }
  throw value_error(genlm::detail::concat("write_npy '", dest, "': bfloat16 has no .npy representation "
                           "(convert the array to float32 first)"));
}

/// Full .npy prefix (magic + version + length + padded header), byte-identical to np.save.
inline std::string npy_make_header(const array& a, const std::string& dest) {
  std::string dict = "{'descr': '" + std::string(npy_descr(a.dtype, dest)) +
                     "', 'fortran_order': False, 'shape': " + shape_to_string(a.shape) + ", }";
  // numpy leaves room to grow the first axis in place (GROWTH_AXIS_MAX_DIGITS = 21).
  if (!a.shape.empty()) dict.append(21 - std::to_string(a.shape[0]).size(), ' ');
  const std::size_t hlen = dict.size() + 1;  // + '\n'
  for (int major : {1, 2}) {
    const std::size_t prefix = major == 1 ? 10 : 12;
    const std::size_t pad = 64 - (prefix + hlen) % 64;
    const std::size_t len = hlen + pad;
    if (major == 1 && len > 0xffff) continue;
    std::string out = "\x93NUMPY";
    out += static_cast<char>(major);
    out += '\0';
    for (std::size_t i = 0; i < prefix - 8; ++i) out += static_cast<char>((len >> (8 * i)) & 0xff);
    out += dict;
    out.append(pad, ' ');
    out += '\n';
    return out;
  }
  throw value_error(genlm::detail::concat("write_npy '", dest, "': header too large"));
}

}  // namespace detail

/// Parses a complete .npy image held in memory.
inline array read_npy_from_memory(std::span<const std::byte> data,
                                  const std::string& name_for_errors = "<memory>") {
  auto read = [&](void* dst, std::size_t count, std::uint64_t off) -> std::size_t {
    if (off >= data.size()) return 0;
    const std::size_t k = std::min<std::size_t>(count, data.size() - static_cast<std::size_t>(off));
    if (k) std::memcpy(dst, data.data() + off, k);
    return k;
  };
  const auto h = detail::npy_read_header(read, data.size(), name_for_errors);
  const auto body = data.subspan(static_cast<std::size_t>(h.data_offset));
  array a{h.dtype, h.shape,
          detail::allocate_bytes(body.size(), detail::npy_where(name_for_errors), body.data())};
  detail::npy_finish(h, a, name_for_errors);
  return a;
}

/// Reads a .npy file. Throws genlm::error if it cannot be opened, format_error if it is invalid.
inline array read_npy(const std::filesystem::path& path) {
  const std::string src = path.string();
  std::error_code ec;
  const auto total = std::filesystem::file_size(path, ec);
  if (ec) throw error(genlm::detail::concat("cannot read npy file '", src, "': ", ec.message()));
  std::ifstream in(path, std::ios::binary);
  check(static_cast<bool>(in), "cannot open npy file '", src, "'");
  auto read = [&](void* dst, std::size_t count, std::uint64_t off) -> std::size_t {
    in.clear();
    in.seekg(static_cast<std::streamoff>(off));
    in.read(static_cast<char*>(dst), static_cast<std::streamsize>(count));
    return static_cast<std::size_t>(in.gcount());
  };
  const auto h = detail::npy_read_header(read, total, src);
  array a{h.dtype, h.shape, detail::allocate_bytes(total - h.data_offset, detail::npy_where(src))};
  check<format_error>(a.bytes.empty() || read(a.bytes.data(), a.bytes.size(), h.data_offset) ==
                                             a.bytes.size(),
                      detail::npy_where(src), ": expected ", a.bytes.size(),
                      " bytes of data, the read came up short (file truncated while reading?)");
  detail::npy_finish(h, a, src);
  return a;
}

/// Serializes an array to an in-memory .npy image (same bytes write_npy puts on disk).
inline std::vector<std::byte> serialize_npy(const array& a) {
  a.validate("serialize_npy");
  const std::string head = detail::npy_make_header(a, "<memory>");
  std::vector<std::byte> out(head.size() + a.bytes.size());
  std::memcpy(out.data(), head.data(), head.size());
  if (!a.bytes.empty()) std::memcpy(out.data() + head.size(), a.bytes.data(), a.bytes.size());
  return out;
}

/// Writes `a` as a .npy v1.0 file (little-endian, C order), atomically (see write_file_atomic).
/// Throws value_error for bf16 and shape_error if a.bytes does not match its shape.
inline void write_npy(const std::filesystem::path& path, const array& a) {
  const std::string dest = path.string();
  a.validate("write_npy '" + dest + "'");
  const std::string head = detail::npy_make_header(a, dest);
  write_file_atomic(path, [&](file_writer& w) {
    w.write(head);
    w.write(std::span<const std::byte>(a.bytes));
  });
}

}  // namespace genlm::io
