// genlm/io/safetensors.hpp - reader and writer for the safetensors format
// (https://github.com/huggingface/safetensors).
//
// Layout: 8-byte little-endian u64 N, then N bytes of UTF-8 JSON header
//   {"__metadata__": {"k": "v", ...},                      (optional, string -> string)
//    "<name>": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// padded with spaces, then the data buffer; offsets are relative to the buffer start.
//
// Validation follows the reference implementation: every tensor's byte range must equal
// element_size(dtype) * prod(shape), and the ranges, sorted by begin, must tile the data buffer
// exactly (start at 0, no gaps, no overlaps, end at the end of the file). Every violation throws
// genlm::format_error naming the file, the tensor and the field with the values seen/expected.
// The header must not contain a NUL byte (the JSON parser would stop there) and may nest at
// most st_max_depth levels (serde_json's recursion limit in the reference); offending JSON
// values are quoted only as short excerpts. A tensor too large to allocate throws genlm::error
// naming the file, the tensor and the byte count.
//
// The writer lays tensors out like the reference implementation (dtype size class descending,
// then name ascending - this keeps every tensor naturally aligned), writes the header in that
// order with "__metadata__" first, pads it with spaces to a multiple of 8, and replaces the file
// atomically. For the dtypes supported here its output is byte-identical to safetensors' own.
#pragma once

#include <genlm/core/error.hpp>
#include <genlm/io/array.hpp>
#include <genlm/io/atomic_file.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace genlm::io {

/// Everything stored in one safetensors file.
struct safetensors_file {
  std::map<std::string, array> tensors;
  std::map<std::string, std::string> metadata;  ///< the optional "__metadata__" section
  std::string source;                           ///< file name (or label) used in messages

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }

  /// The tensor called `name`; throws lookup_error naming the file and the tensor and listing
  /// some of the available names.
  const array& at(const std::string& name) const {
    if (auto it = tensors.find(name); it != tensors.end()) return it->second;
    std::string avail;
    std::size_t shown = 0;
    for (const auto& [n, a] : tensors) {
      if (shown == 10) break;
      avail += (shown++ ? ", '" : "'") + n + "'";
    }
    if (tensors.size() > shown) avail += ", ... (" + std::to_string(tensors.size() - shown) + " more)";
    throw lookup_error(genlm::detail::concat("safetensors file '", source, "': no tensor named '", name,
                                      "'; the file has ", tensors.size(), " tensor(s)",
                                      tensors.empty() ? "" : ": ", avail));
  }
};

namespace detail {

/// The reference implementation refuses headers larger than this.
inline constexpr std::uint64_t safetensors_max_header = 100'000'000;

/// Deepest JSON nesting accepted in a header (serde_json's default recursion limit; a valid
/// header nests 3 levels: object > tensor entry > shape array).
inline constexpr int st_max_depth = 128;

struct st_entry {
  std::string name;
  io::dtype dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;
};

struct st_header {
  std::vector<st_entry> entries;  ///< sorted by data_offsets begin
  std::map<std::string, std::string> metadata;
};

inline std::string st_where(const std::string& src) { return "safetensors file '" + src + "'"; }

/// Validates the 8-byte prefix against the total size; returns the header length N.
inline std::uint64_t st_header_length(std::span<const std::byte> first8, std::uint64_t total,
                                      const std::string& src) {
  check<format_error>(total >= 8, st_where(src), ": file is ", total,
                      " bytes, shorter than the 8-byte header-length prefix");
  const auto n = load_le<std::uint64_t>(first8.data());
  check<format_error>(n <= safetensors_max_header, st_where(src), ": header length ", n,
                      " exceeds the maximum of ", safetensors_max_header, " bytes (corrupt prefix?)");
  check<format_error>(n <= total - 8, st_where(src), ": header length ", n,
                      " is larger than the ", total - 8,
                      " bytes that follow the prefix (truncated file?)");
  check<format_error>(n >= 2, st_where(src), ": header length ", n,
                      " is too small for a JSON object");
  return n;
}

/// A short description of a JSON value for messages: scalars as JSON text, arrays / objects as
/// JSON text of their first few members ("[...]" / "{...}" for nested ones), strings cut to 80
/// characters and containers to the members that fit in about 80 characters. Never dumps a
/// whole value: nlohmann's dump() recurses once per nesting level (a deeply nested value would
/// overflow the stack) and a huge value would flood the message.
inline std::string st_describe(const nlohmann::json& v) {
  using json = nlohmann::json;
  constexpr std::size_t limit = 80;
  auto scalar = [&](const json& x) -> std::string {
    if (x.is_array()) return x.empty() ? "[]" : "[...]";
    if (x.is_object()) return x.empty() ? "{}" : "{...}";
    if (!x.is_string()) return x.dump();
    const auto& str = x.get_ref<const std::string&>();
    if (str.size() <= limit) return x.dump(-1, ' ', false, json::error_handler_t::replace);
    std::string t = json(str.substr(0, limit)).dump(-1, ' ', false, json::error_handler_t::replace);
    t.insert(t.size() - 1, "...");
    return t;
  };
  if (!v.is_structured()) return scalar(v);
  std::string out(1, v.is_array() ? '[' : '{');
  bool first = true;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!first) out += ',';
    if (out.size() > limit) {
      out += "...";
      break;
    }
    first = false;
    if (v.is_object()) out += scalar(json(it.key())) + ':';
    out += scalar(*it);
  }
  return out + (v.is_array() ? ']' : '}');
}

/// Parses JSON and rejects duplicate keys in any object (nlohmann would keep the last one), NUL
/// bytes (nlohmann's lexer ends the input at the first one) and nesting deeper than st_max_depth.
inline nlohmann::json st_parse_json(std::string_view text, const std::string& src) {
  using json = nlohmann::json;
  const auto nul = text.find('\0');
  check<format_error>(nul == std::string_view::npos, st_where(src),
                      ": header contains a NUL byte at header offset ", nul, " (file offset ", nul + 8,
                      "); the header must be JSON text, padded with spaces");
  std::vector<std::set<std::string>> seen;
  auto cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start || ev == json::parse_event_t::array_start)
      check<format_error>(depth < st_max_depth, st_where(src), ": header JSON nests deeper than ",
                          st_max_depth, " levels");
    if (ev == json::parse_event_t::object_start) seen.emplace_back();
    else if (ev == json::parse_event_t::object_end) seen.pop_back();
    else if (ev == json::parse_event_t::key && !seen.empty()) {
      const auto& k = parsed.get_ref<const std::string&>();
      check<format_error>(seen.back().insert(k).second, st_where(src),
                          ": header JSON has duplicate key '", k, "'");
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {  // parse_error, or invalid UTF-8 in strings
    throw format_error(genlm::detail::concat(st_where(src), ": header is not valid JSON (", e.what(), ")"));
  }
}

/// Reads a non-negative JSON integer into u64; throws naming `field`.
inline std::uint64_t st_uint(const nlohmann::json& v, const std::string& src,
                             const std::string& name, std::string_view field) {
  check<format_error>(v.is_number_integer(), st_where(src), ": tensor '", name, "': field '",
                      field, "' must contain integers, got ", v.type_name(), " ", st_describe(v));
  check<format_error>(v.is_number_unsigned() || v.get<std::int64_t>() >= 0, st_where(src),
                      ": tensor '", name, "': field '", field,
                      "' must not contain negative values, got ", st_describe(v));
  return v.get<std::uint64_t>();
}

/// Parses and validates the JSON header text against a data buffer of `buffer_size` bytes.
inline st_header parse_safetensors_header(std::string_view text, std::uint64_t buffer_size,
                                          const std::string& src) {
  const std::string where = st_where(src);
  const nlohmann::json j = st_parse_json(text, src);
  check<format_error>(j.is_object(), where, ": header must be a JSON object, got ", j.type_name());

  st_header h;
  for (const auto& [name, v] : j.items()) {
    if (name == "__metadata__") {
      if (v.is_null()) continue;
      check<format_error>(v.is_object(), where, ": field '__metadata__' must be an object of "
                          "strings, got ", v.type_name());
      for (const auto& [k, s] : v.items()) {
        check<format_error>(s.is_string(), where, ": field '__metadata__' entry '", k,
                            "' must be a string, got ", s.type_name(), " ", st_describe(s));
        h.metadata.emplace(k, s.get<std::string>());
      }
      continue;
    }
    const std::string tw = where + ": tensor '" + name + "'";
    check<format_error>(v.is_object(), tw, ": entry must be an object with fields dtype, shape "
                        "and data_offsets, got ", v.type_name());
    for (const char* f : {"dtype", "shape", "data_offsets"})
      check<format_error>(v.contains(f), tw, ": field '", f, "' is missing");

    st_entry e;
    e.name = name;
    const auto& jd = v.at("dtype");
    check<format_error>(jd.is_string(), tw, ": field 'dtype' must be a string, got ", jd.type_name(), " ",
                        st_describe(jd));
    const auto dt = dtype_from_name(jd.get_ref<const std::string&>());
    check<format_error>(dt.has_value(), tw, ": field 'dtype' has unsupported value ", st_describe(jd),
                        " (supported: ", dtype_name_list(), ")");
    e.dtype = *dt;

    const auto& js = v.at("shape");
    check<format_error>(js.is_array(), tw, ": field 'shape' must be an array, got ", js.type_name(), " ",
                        st_describe(js));
    for (std::size_t i = 0; i < js.size(); ++i) {
      const auto& d = js[i];
      check<format_error>(d.is_number_integer(), tw, ": field 'shape' must contain integers, got ",
                          st_describe(js), " (", d.type_name(), " at index ", i, ")");
      check<format_error>(d.is_number_unsigned() || d.get<std::int64_t>() >= 0, tw,
                          ": field 'shape' has negative dimension ", d.dump(), " at index ", i,
                          " in ", st_describe(js));
      check<format_error>(d.get<std::uint64_t>() <= static_cast<std::uint64_t>(
                                                         std::numeric_limits<std::int64_t>::max()),
                          tw, ": field 'shape' dimension ", d.dump(), " is too large");
      e.shape.push_back(d.get<std::int64_t>());
    }

    const auto& jo = v.at("data_offsets");
    check<format_error>(jo.is_array() && jo.size() == 2, tw,
                        ": field 'data_offsets' must be [begin, end], got ", jo.type_name(), " ",
                        st_describe(jo));
    e.begin = st_uint(jo[0], src, name, "data_offsets");
    e.end = st_uint(jo[1], src, name, "data_offsets");
    check<format_error>(e.begin <= e.end, tw, ": field 'data_offsets' [", e.begin, ", ", e.end,
                        "] has end before begin");

    const auto n = checked_numel<format_error>(e.shape, element_size(e.dtype),
                                               tw + ": field 'shape'");
    const auto need = static_cast<std::uint64_t>(n) * element_size(e.dtype);
    check<format_error>(e.end - e.begin == need, tw, ": field 'data_offsets' [", e.begin, ", ",
                        e.end, "] spans ", e.end - e.begin, " bytes but shape ",
                        shape_to_string(e.shape), " ", dtype_name(e.dtype), " needs ", need,
                        " bytes (", n, " elements x ", element_size(e.dtype), ")");
    check<format_error>(e.end <= buffer_size, tw, ": field 'data_offsets' [", e.begin, ", ",
                        e.end, "] extends past the end of the data buffer (", buffer_size,
                        " bytes; truncated file?)");
    h.entries.push_back(std::move(e));
  }

  // The byte ranges must tile [0, buffer_size) exactly.
  std::sort(h.entries.begin(), h.entries.end(), [](const st_entry& a, const st_entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t pos = 0;
  const st_entry* prev = nullptr;
  for (const auto& e : h.entries) {
    if (e.begin < pos)
      throw format_error(genlm::detail::concat(where, ": tensor '", e.name, "': field 'data_offsets' [", e.begin,
                                ", ", e.end, "] overlaps tensor '", prev->name, "' [",
                                prev->begin, ", ", prev->end, "]"));
    if (e.begin > pos)
      throw format_error(genlm::detail::concat(where, ": tensor '", e.name, "': field 'data_offsets' [", e.begin,
                                ", ", e.end, "] leaves a gap of ", e.begin - pos,
                                " bytes after offset ", pos,
                                prev ? " (end of tensor '" + prev->name + "')" : std::string{},
                                "; tensors must be contiguous"));
    pos = e.end;
    prev = &e;
  }
  check<format_error>(pos == buffer_size, where, ": data buffer is ", buffer_size,
                      " bytes but the tensors' data_offsets cover only ", pos,
                      " (trailing bytes after the last tensor)");
  return h;
}

/// Header text (padded to a multiple of 8) and the tensors in file order.
struct st_layout {
  std::string header;
  std::vector<std::pair<const std::string*, const array*>> order;
};

/// Sort key reproducing the reference layout: larger dtypes first (I64, F64, F32, I32, BF16,
/// F16, U8, BOOL), then by name.
inline int st_rank(io::dtype t) {
  switch (t) {
    case io::dtype::i64: return 7;
    case io::dtype::f64: return 6;
    case io::dtype::f32: return 5;
    case io::dtype::i32: return 4;
    case io::dtype::bf16: return 3;
    case io::dtype::f16: return 2;
    case io::dtype::u8: return 1;
    case io::dtype::bool_: return 0;
  }
  return 0;
}

inline st_layout st_make_layout(const std::map<std::string, array>& tensors,
                                const std::map<std::string, std::string>& metadata,
                                const std::string& dest) {
  st_layout L;
  for (const auto& [name, a] : tensors) {
    check<value_error>(name != "__metadata__", "write_safetensors '", dest,
                       "': '__metadata__' is reserved and cannot be a tensor name");
    a.validate("write_safetensors '" + dest + "': tensor '" + name + "'");
    L.order.emplace_back(&name, &a);
  }
  std::stable_sort(L.order.begin(), L.order.end(), [](const auto& x, const auto& y) {
    return st_rank(x.second->dtype) > st_rank(y.second->dtype);  // names already sorted (map)
  });

  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    auto& m = j["__metadata__"] = nlohmann::ordered_json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
  }
  std::uint64_t off = 0;
  for (const auto& [name, a] : L.order) {
    nlohmann::ordered_json e = nlohmann::ordered_json::object();
    e["dtype"] = std::string(dtype_name(a->dtype));
    e["shape"] = a->shape;
    e["data_offsets"] = {off, off + a->bytes.size()};
    off += a->bytes.size();
    j[*name] = std::move(e);
  }
  try {
    L.header = j.dump();
  } catch (const nlohmann::json::exception& e) {  // invalid UTF-8 in a name or metadata
    throw value_error(genlm::detail::concat("write_safetensors '", dest,
                             "': tensor names and metadata must be valid UTF-8 (", e.what(), ")"));
  }
  L.header.append((8 - L.header.size() % 8) % 8, ' ');
  return L;
}

template <class Sink>
void st_emit(const st_layout& L, Sink&& put) {
  std::byte len[8];
  store_le<std::uint64_t>(len, L.header.size());
  put(std::span<const std::byte>(len, 8));
  put(std::as_bytes(std::span<const char>(L.header.data(), L.header.size())));
  for (const auto& [name, a] : L.order) put(std::span<const std::byte>(a->bytes));
}

}  // namespace detail

/// Parses a complete safetensors image held in memory (copies the tensor bytes).
/// `name_for_errors` is used in messages and stored in safetensors_file::source.
inline safetensors_file read_safetensors_from_memory(std::span<const std::byte> data,
                                                     std::string name_for_errors = "<memory>") {
  const std::uint64_t n = detail::st_header_length(data, data.size(), name_for_errors);
  const std::string_view text(reinterpret_cast<const char*>(data.data()) + 8,
                              static_cast<std::size_t>(n));
  const auto buf = data.subspan(8 + static_cast<std::size_t>(n));
  auto h = detail::parse_safetensors_header(text, buf.size(), name_for_errors);

  safetensors_file f;
  f.metadata = std::move(h.metadata);
  for (auto& e : h.entries) {
    const auto bytes = buf.subspan(static_cast<std::size_t>(e.begin),
                                   static_cast<std::size_t>(e.end - e.begin));
    auto copy = detail::allocate_bytes(
        bytes.size(), detail::st_where(name_for_errors) + ": tensor '" + e.name + "'", bytes.data());
    f.tensors.emplace(std::move(e.name), array{e.dtype, std::move(e.shape), std::move(copy)});
  }
  f.source = std::move(name_for_errors);
  return f;
}

/// Reads a safetensors file. The header is parsed and validated by the same code as
/// read_safetensors_from_memory; tensor bytes are then read straight into their arrays (so the
/// file is never held twice in memory). Throws genlm::error if the file cannot be opened/read
/// and genlm::format_error if its contents are invalid.
inline safetensors_file read_safetensors(const std::filesystem::path& path) {
  const std::string src = path.string();
  std::error_code ec;
  const auto total = std::filesystem::file_size(path, ec);
  if (ec) throw error(genlm::detail::concat("cannot read safetensors file '", src, "': ", ec.message()));
  std::ifstream in(path, std::ios::binary);
  check(static_cast<bool>(in), "cannot open safetensors file '", src, "'");

  auto read_exact = [&](void* dst, std::uint64_t count, std::uint64_t at, const char* what) {
    in.seekg(static_cast<std::streamoff>(at));
    in.read(static_cast<char*>(dst), static_cast<std::streamsize>(count));
    check<format_error>(in.good() && static_cast<std::uint64_t>(in.gcount()) == count,
                        detail::st_where(src), ": reading ", what, ": expected ", count,
                        " bytes at offset ", at, ", got ", in.gcount(),
                        " (file truncated while reading?)");
  };

  std::byte prefix[8] = {};
  if (total >= 8) read_exact(prefix, 8, 0, "header length");
  const std::uint64_t n = detail::st_header_length(prefix, total, src);
  std::string text(static_cast<std::size_t>(n), '\0');
  read_exact(text.data(), n, 8, "header");
  auto h = detail::parse_safetensors_header(text, total - 8 - n, src);

  safetensors_file f;
  f.source = src;
  f.metadata = std::move(h.metadata);
  for (auto& e : h.entries) {
    std::vector<std::byte> bytes =
        detail::allocate_bytes(e.end - e.begin, detail::st_where(src) + ": tensor '" + e.name + "'");
    if (!bytes.empty())
      read_exact(bytes.data(), bytes.size(), 8 + n + e.begin, ("tensor '" + e.name + "'").c_str());
    f.tensors.emplace(std::move(e.name), array{e.dtype, std::move(e.shape), std::move(bytes)});
  }
  return f;
}

/// Serializes tensors (+ optional metadata) to an in-memory safetensors image.
inline std::vector<std::byte> serialize_safetensors(
    const std::map<std::string, array>& tensors,
    const std::map<std::string, std::string>& metadata = {}) {
  const auto L = detail::st_make_layout(tensors, metadata, "<memory>");
  std::size_t total = 0;
  detail::st_emit(L, [&](std::span<const std::byte> s) { total += s.size(); });
  std::vector<std::byte> out(total);
  std::size_t pos = 0;
  detail::st_emit(L, [&](std::span<const std::byte> s) {
    if (!s.empty()) std::memcpy(out.data() + pos, s.data(), s.size());
    pos += s.size();
  });
  return out;
}

/// Writes a safetensors file atomically (see write_file_atomic). Throws value_error /
/// shape_error for invalid input (reserved or non-UTF-8 names, bytes not matching shape).
inline void write_safetensors(const std::filesystem::path& path,
                              const std::map<std::string, array>& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  const auto L = detail::st_make_layout(tensors, metadata, path.string());
  write_file_atomic(path, [&](file_writer& w) {
    detail::st_emit(L, [&](std::span<const std::byte> s) { w.write(s); });
  });
}

}  // namespace genlm::io
