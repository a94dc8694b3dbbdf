// Tests for genlm/io: array + half/bfloat16 conversions, atomic file writes, safetensors and npy.
// Reference files in tests/fixtures/io/ come from scripts/gen_io_fixtures.py (real numpy and
// safetensors); the expected values below must match that script.
#include <catch2/catch.hpp>

#include "test_support.hpp"

#include <genlm/backend/cpu.hpp>
#include <genlm/io/array.hpp>
#include <genlm/io/atomic_file.hpp>
#include <genlm/io/npy.hpp>
#include <genlm/io/safetensors.hpp>
#include <genlm/io/state_dict.hpp>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#if !defined(_WIN32)
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#endif

#ifndef GENLM_FIXTURE_DIR
#define GENLM_FIXTURE_DIR "tests/fixtures"
#endif

namespace fs = std::filesystem;
using namespace genlm;
using namespace genlm::io;
using Catch::Matchers::Contains;

namespace {

fs::path fixture(const std::string& name) { return fs::path(GENLM_FIXTURE_DIR) / "io" / name; }

std::vector<std::byte> read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  REQUIRE(in);
  std::vector<char> c((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::byte> b(c.size());
  if (!c.empty()) std::memcpy(b.data(), c.data(), c.size());
  return b;
}

void write_bytes(const fs::path& p, const std::vector<std::byte>& b) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(out);
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> b(s.size());
  if (!s.empty()) std::memcpy(b.data(), s.data(), s.size());
  return b;
}

/// A fresh directory under the system temp dir, removed at scope exit.
struct temp_dir {
  fs::path path;
  temp_dir() {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() /
           ("genlm_test_io_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path operator/(const std::string& name) const { return path / name; }
  std::size_t count_entries() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(path), {}));
  }
};

using genlm_test::message_of;

std::uint16_t f16_bits_from_double(double d) { return float_to_half(static_cast<float>(d)); }

bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

/// An array of every dtype with a few interesting values (used by the round-trip tests).
std::map<std::string, array> sample_arrays() {
  std::map<std::string, array> m;
  const float f[] = {1.0f, -2.0f, 0.5f, 65504.0f, 0.0f, -0.0f};
  std::vector<std::byte> h(12), bh(12);
  for (int i = 0; i < 6; ++i) {
    io::detail::store_le<std::uint16_t>(h.data() + 2 * i, float_to_half(f[i]));
    io::detail::store_le<std::uint16_t>(bh.data() + 2 * i, float_to_bf16(f[i]));
  }
  m["a_f16"] = array::from_bytes(dtype::f16, {2, 3}, h);
  m["b_bf16"] = array::from_bytes(dtype::bf16, {3, 2}, bh);
  const float f32[] = {1.5f, -0.25f, 3e38f, std::numeric_limits<float>::denorm_min()};
  m["c_f32"] = array::from<float>({4}, f32);
  const double f64[] = {3.141592653589793, -1e-300, 1e300};
  m["d_f64"] = array::from<double>({3, 1}, f64);
  const std::int32_t i32[] = {std::numeric_limits<std::int32_t>::min(), -1, 0, 1,
                              std::numeric_limits<std::int32_t>::max(), 42};
  m["e_i32"] = array::from<std::int32_t>({1, 2, 3}, i32);
  const std::int64_t i64[] = {std::numeric_limits<std::int64_t>::min(), std::int64_t{1} << 40};
  m["f_i64"] = array::from<std::int64_t>({2}, i64);
  const std::uint8_t u8[] = {0, 128, 255};
  m["g_u8"] = array::from<std::uint8_t>({3}, u8);
  const bool b[] = {true, false, true, true};
  m["h_bool"] = array::from<bool>({2, 2}, b);
  const double scalar = 2.5;
  m["i_scalar"] = array::from<double>({}, &scalar);
  m["j_empty"] = array::from<float>({0, 5}, static_cast<const float*>(nullptr));
  return m;
}

void require_equal(const array& a, const array& b) {
  CHECK(a.dtype == b.dtype);
  CHECK(a.shape == b.shape);
  CHECK(a.bytes == b.bytes);
}

/// Builds a safetensors image from a raw header string and a data buffer of `n` bytes.
std::vector<std::byte> make_st(const std::string& header, std::size_t n, std::uint64_t len = ~0ull) {
  std::vector<std::byte> out(8);
  io::detail::store_le<std::uint64_t>(out.data(), len == ~0ull ? header.size() : len);
  auto h = to_bytes(header);
  out.insert(out.end(), h.begin(), h.end());
  for (std::size_t i = 0; i < n; ++i) out.push_back(std::byte(i & 0xff));
  return out;
}

/// Builds a .npy image (given version) from a header dict text and `n` data bytes.
std::vector<std::byte> make_npy(std::string dict, std::size_t n, int major = 1) {
  std::string s = "\x93NUMPY";
  s += static_cast<char>(major);
  s += '\0';
  dict += '\n';
  const std::size_t len = dict.size();
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) s += static_cast<char>((len >> (8 * i)) & 0xff);
  s += dict;
  s.append(n, '\x01');
  return to_bytes(s);
}

/// Whether allocating `bytes` is certain to fail on this host, so that a test may provoke it
/// safely: Linux refuses an allocation beyond RAM + swap unless it overcommits unconditionally
/// (vm.overcommit_memory = 1, where the test would instead fill memory).
bool allocation_must_fail(std::uint64_t bytes) {
#if defined(__linux__)
  if (read_text("/proc/sys/vm/overcommit_memory").rfind('1', 0) == 0) return false;
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kb = 0, total_kb = 0;
  std::string unit;
  while (in >> key >> kb >> unit)
    if (key == "MemTotal:" || key == "SwapTotal:") total_kb += kb;
  return total_kb > 0 && total_kb < bytes / 1024 / 2;
#else
  (void)bytes;
  return false;
#endif
}

/// Writes `head` and extends the file (sparsely) to head.size() + data bytes; false if the file
/// system refuses a file that large.
bool write_sparse(const fs::path& p, const std::vector<std::byte>& head, std::uint64_t data) {
  write_bytes(p, head);
  std::error_code ec;
  fs::resize_file(p, head.size() + data, ec);
  return !ec;
}

}  // namespace

// =============================================================================================
// dtype / array
// =============================================================================================

TEST_CASE("dtype names and sizes", "[io][array]") {
  for (dtype t : all_dtypes) {
    CHECK(dtype_from_name(dtype_name(t)) == t);
  }
  CHECK(dtype_name(dtype::bf16) == "BF16");
  CHECK(dtype_name(dtype::bool_) == "BOOL");
  CHECK_FALSE(dtype_from_name("f32").has_value());  // case-sensitive
  CHECK_FALSE(dtype_from_name("I8").has_value());
  CHECK(element_size(dtype::f16) == 2);
  CHECK(element_size(dtype::bf16) == 2);
  CHECK(element_size(dtype::f32) == 4);
  CHECK(element_size(dtype::f64) == 8);
  CHECK(element_size(dtype::i32) == 4);
  CHECK(element_size(dtype::i64) == 8);
  CHECK(element_size(dtype::u8) == 1);
  CHECK(element_size(dtype::bool_) == 1);
  CHECK(shape_to_string(std::vector<std::int64_t>{}) == "()");
  CHECK(shape_to_string(std::vector<std::int64_t>{5}) == "(5,)");
  CHECK(shape_to_string(std::vector<std::int64_t>{2, 3}) == "(2, 3)");
}

TEST_CASE("half_to_float on known bit patterns", "[io][half]") {
  CHECK(half_to_float(0x3c00) == 1.0f);
  CHECK(half_to_float(0xc000) == -2.0f);
  CHECK(half_to_float(0x7bff) == 65504.0f);
  CHECK(half_to_float(0x0001) == std::ldexp(1.0f, -24));   // smallest subnormal
  CHECK(half_to_float(0x03ff) == 1023 * std::ldexp(1.0f, -24));  // largest subnormal
  CHECK(half_to_float(0x0400) == std::ldexp(1.0f, -14));   // smallest normal
  CHECK(half_to_float(0x3555) == 0.333251953125f);  // (1024 + 0x155) * 2^-12
  CHECK(same_bits(half_to_float(0x8000), -0.0f));
  CHECK(half_to_float(0x7c00) == std::numeric_limits<float>::infinity());
  CHECK(half_to_float(0xfc00) == -std::numeric_limits<float>::infinity());
  CHECK(std::isnan(half_to_float(0x7e00)));
  CHECK(std::isnan(half_to_float(0x7c01)));  // signalling NaN stays NaN
  CHECK(std::signbit(half_to_float(0xfe00)));
}

TEST_CASE("float_to_half rounds to nearest even", "[io][half]") {
  const float sub = std::ldexp(1.0f, -24);  // half subnormal step
  CHECK(float_to_half(1.0f) == 0x3c00);
  CHECK(float_to_half(-2.0f) == 0xc000);
  CHECK(float_to_half(65504.0f) == 0x7bff);
  CHECK(float_to_half(65519.996f) == 0x7bff);  // just below the midpoint to 65536
  CHECK(float_to_half(65520.0f) == 0x7c00);    // tie: 0x7bff is odd, rounds up to inf
  CHECK(float_to_half(-1e6f) == 0xfc00);
  CHECK(float_to_half(std::numeric_limits<float>::infinity()) == 0x7c00);
  CHECK(float_to_half(sub) == 0x0001);
  CHECK(float_to_half(0.5f * sub) == 0x0000);          // tie between 0 and 1 -> 0 (even)
  CHECK(float_to_half(-0.5f * sub) == 0x8000);
  CHECK(float_to_half(0.5000001f * sub) == 0x0001);    // above the tie
  CHECK(float_to_half(1.5f * sub) == 0x0002);          // tie between 1 and 2 -> 2
  CHECK(float_to_half(2.5f * sub) == 0x0002);          // tie between 2 and 3 -> 2
  CHECK(float_to_half(1023.5f * sub) == 0x0400);       // subnormal rounds up into the normals
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);      // tie -> even 0x3c00
  CHECK(float_to_half(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);  // tie -> even 0x3c02
  CHECK(float_to_half(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)) == 0x3c01);
  CHECK(float_to_half(std::numeric_limits<float>::denorm_min()) == 0x0000);
  CHECK(float_to_half(-0.0f) == 0x8000);
  const std::uint16_t qn = float_to_half(std::numeric_limits<float>::quiet_NaN());
  CHECK((qn & 0x7c00) == 0x7c00);
  CHECK((qn & 0x03ff) != 0);
  CHECK((float_to_half(-std::numeric_limits<float>::quiet_NaN()) & 0x8000) == 0x8000);
  // numpy's rounding of 0.1 (from f16_vec.npy) agrees.
  CHECK(f16_bits_from_double(0.1) == 11878);
}

TEST_CASE("half: every non-NaN bit pattern round-trips exactly", "[io][half]") {
  int failures = 0;
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = half_to_float(bits);
    if (std::isnan(f)) {
      if (!std::isnan(half_to_float(float_to_half(f)))) ++failures;
      continue;
    }
    if (float_to_half(f) != bits) ++failures;
  }
  CHECK(failures == 0);
}

TEST_CASE("bfloat16 conversions", "[io][bf16]") {
  CHECK(bf16_to_float(0x3f80) == 1.0f);
  CHECK(bf16_to_float(0xc000) == -2.0f);
  CHECK(bf16_to_float(0x0001) == std::ldexp(1.0f, -133));  // smallest subnormal
  CHECK(bf16_to_float(0x7f80) == std::numeric_limits<float>::infinity());
  CHECK(std::isnan(bf16_to_float(0x7fc0)));
  CHECK(float_to_bf16(1.0f) == 0x3f80);
  CHECK(float_to_bf16(-2.0f) == 0xc000);
  CHECK(float_to_bf16(std::bit_cast<float>(0x3f808000u)) == 0x3f80);  // tie -> even
  CHECK(float_to_bf16(std::bit_cast<float>(0x3f818000u)) == 0x3f82);  // tie -> even
  CHECK(float_to_bf16(std::bit_cast<float>(0x3f808001u)) == 0x3f81);  // above tie
  CHECK(float_to_bf16(std::bit_cast<float>(0x3f807fffu)) == 0x3f80);  // below tie
  CHECK(float_to_bf16(std::numeric_limits<float>::max()) == 0x7f80);  // overflow -> inf
  CHECK(float_to_bf16(-std::numeric_limits<float>::infinity()) == 0xff80);
  CHECK(float_to_bf16(std::numeric_limits<float>::denorm_min()) == 0x0000);
  const std::uint16_t nan = float_to_bf16(std::bit_cast<float>(0x7f800001u));  // sNaN, low payload
  CHECK(std::isnan(bf16_to_float(nan)));
  int failures = 0;
  for (std::uint32_t b = 0; b <= 0xffff; ++b) {
    const float f = bf16_to_float(static_cast<std::uint16_t>(b));
    if (!std::isnan(f) && float_to_bf16(f) != b) ++failures;
  }
  CHECK(failures == 0);
}

TEST_CASE("array::from / to for every dtype", "[io][array]") {
  const float f[] = {1.5f, -2.0f, 0.0f};
  auto a = array::from<float>({3}, f);
  CHECK(a.dtype == dtype::f32);
  CHECK(a.numel() == 3);
  CHECK(a.bytes.size() == 12);
  CHECK(a.to<float>() == std::vector<float>{1.5f, -2.0f, 0.0f});
  CHECK(a.to<double>() == std::vector<double>{1.5, -2.0, 0.0});
  CHECK(a.to<std::int32_t>() == std::vector<std::int32_t>{1, -2, 0});  // truncation

  const std::int64_t i[] = {-5, 7, 1000};
  auto b = array::from<std::int64_t>({1, 3}, i);
  CHECK(b.to<float>() == std::vector<float>{-5, 7, 1000});
  CHECK(b.to<std::int32_t>() == std::vector<std::int32_t>{-5, 7, 1000});
  CHECK(b.to<bool>() == std::vector<bool>{true, true, true});

  auto c = array::from<bool>({2}, std::vector<bool>{true, false});
  CHECK(c.dtype == dtype::bool_);
  CHECK(c.to<int>() == std::vector<int>{1, 0});
  CHECK(c.to<float>() == std::vector<float>{1.0f, 0.0f});

  auto u = array::from<std::uint8_t>({2}, std::vector<std::uint8_t>{0, 255});
  CHECK(u.to<std::int64_t>() == std::vector<std::int64_t>{0, 255});

  // f16 / bf16 decode, including subnormal / inf / nan.
  std::vector<std::byte> hb(8);
  const std::uint16_t hv[] = {0x3c00, 0x0001, 0x7c00, 0x7e00};
  for (int k = 0; k < 4; ++k) io::detail::store_le(hb.data() + 2 * k, hv[k]);
  auto h = array::from_bytes(dtype::f16, {4}, hb);
  auto hf = h.to<double>();
  CHECK(hf[0] == 1.0);
  CHECK(hf[1] == std::ldexp(1.0, -24));
  CHECK(std::isinf(hf[2]));
  CHECK(std::isnan(hf[3]));
  auto bf = array::from_bytes(dtype::bf16, {4}, hb).to<float>();
  CHECK(bf[0] == bf16_to_float(0x3c00));
  CHECK(bf[1] == std::ldexp(1.0f, -133));

  // scalars and empty arrays
  const double s = 4.0;
  auto sc = array::from<double>({}, &s);
  CHECK(sc.numel() == 1);
  CHECK(sc.to<float>() == std::vector<float>{4.0f});
  auto e = array::from<float>({0, 3}, static_cast<const float*>(nullptr));
  CHECK(e.numel() == 0);
  CHECK(e.to<float>().empty());
}

TEST_CASE("array conversions and construction report bad values", "[io][array]") {
  const float bad[] = {1.0f, std::numeric_limits<float>::quiet_NaN()};
  auto a = array::from<float>({2}, bad);
  CHECK_THAT(message_of<value_error>([&] { a.to<int>(); }), Contains("element 1"));
  const double big[] = {3e9};
  CHECK_THROWS_AS(array::from<double>({1}, big).to<std::int32_t>(), value_error);
  const double neg[] = {-1.0};
  CHECK_THROWS_AS(array::from<double>({1}, neg).to<std::uint8_t>(), value_error);
  const std::int64_t wide[] = {std::int64_t{1} << 40};
  CHECK_THAT(message_of<value_error>([&] { array::from<std::int64_t>({1}, wide).to<std::int32_t>(); }),
             Contains("does not fit"));
  CHECK_THAT(message_of<shape_error>([] { array::from<float>({2, 2}, std::vector<float>{1, 2, 3}); }),
             Contains("(2, 2)") && Contains("3 values"));
  CHECK_THAT(message_of<shape_error>([] { array::from_bytes(dtype::f32, {3}, std::vector<std::byte>(8)); }),
             Contains("8 bytes") && Contains("needs 12"));
  CHECK_THAT(message_of<shape_error>([] { array::from_bytes(dtype::u8, {2, -1}, {}); }),
             Contains("negative") && Contains("(2, -1)"));
}

// =============================================================================================
// write_file_atomic
// =============================================================================================

TEST_CASE("write_file_atomic creates and replaces files", "[io][atomic]") {
  temp_dir dir;
  const auto p = dir / "out.bin";
  write_file_atomic(p, std::string_view("first"));
  CHECK(read_text(p) == "first");
  write_file_atomic(p, [](file_writer& w) {
    w.write(std::string_view("sec"));
    w.write(std::string_view("ond"));
    CHECK(w.bytes_written() == 6);
  });
  CHECK(read_text(p) == "second");
  // Large payloads go through the unbuffered path.
  std::vector<std::byte> big((3u << 20) + 17);
  for (std::size_t k = 0; k < big.size(); ++k) big[k] = std::byte(k * 31 % 251);
  write_file_atomic(p, big);
  CHECK(read_bytes(p) == big);
  CHECK(dir.count_entries() == 1);  // no temp files left behind
}

TEST_CASE("write_file_atomic keeps the old file when the writer throws", "[io][atomic]") {
  temp_dir dir;
  const auto p = dir / "keep.txt";
  write_file_atomic(p, std::string_view("original contents"));
  struct boom {};
  CHECK_THROWS_AS(write_file_atomic(p,
                                    [](file_writer& w) {
                                      w.write(std::string_view("partial new data"));
                                      throw boom{};
                                    }),
                  boom);
  CHECK(read_text(p) == "original contents");
  CHECK(dir.count_entries() == 1);  // temp file removed

  // Same when the target does not exist yet: nothing is created.
  const auto q = dir / "never.txt";
  CHECK_THROWS_AS(write_file_atomic(q, [](file_writer&) { throw std::runtime_error("x"); }),
                  std::runtime_error);
  CHECK_FALSE(fs::exists(q));
  CHECK(dir.count_entries() == 1);
}

TEST_CASE("write_text_atomic writes what fill streams, or keeps the old file", "[io][atomic]") {
  temp_dir dir;
  const auto p = dir / "table.tsv";
  write_text_atomic(p, [](std::ostream& o) { o << "a\t" << 1 << '\n'; });
  CHECK(read_text(p) == "a\t1\n");
  struct boom {};
  CHECK_THROWS_AS(write_text_atomic(p,
                                    [](std::ostream& o) {
                                      o << "partial";
                                      throw boom{};
                                    }),
                  boom);
  CHECK(read_text(p) == "a\t1\n");
  // a stream that went bad while formatting: genlm::error naming the path, the file as it was
  CHECK_THAT(message_of<genlm::error>([&] {
               write_text_atomic(p, [](std::ostream& o) {
                 o << "x";
                 o.setstate(std::ios::badbit);
               });
             }),
             Contains("table.tsv") && Contains("formatting"));
  CHECK(read_text(p) == "a\t1\n");
  CHECK(dir.count_entries() == 1);
}

#if !defined(_WIN32)
TEST_CASE("write_file_atomic: a process dying mid-write leaves the old file intact",
          "[io][atomic]") {
  temp_dir dir;
  const auto p = dir / "crash.txt";
  write_file_atomic(p, std::string_view("stable"));
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    try {
      write_file_atomic(p, [](file_writer& w) {
        w.write(std::vector<std::byte>(2u << 20, std::byte{'x'}));  // reaches the disk
        ::_exit(0);                                                 // "crash" before rename
      });
    } catch (...) {
    }
    ::_exit(1);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  // The child reached the "crash" inside the writer (exit code 0, not the catch-all's 1)...
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  CHECK(read_text(p) == "stable");
  // ... after its 2 MiB had gone to a temporary sibling, which it left behind.
  const std::string stale = "crash.txt.tmp." + std::to_string(child) + ".";
  std::size_t stale_files = 0;
  for (const auto& e : fs::directory_iterator(dir.path)) {
    if (e.path().filename().string().rfind(stale, 0) != 0) continue;
    ++stale_files;
    CHECK(fs::file_size(e.path()) == (2u << 20));
  }
  CHECK(stale_files == 1);
  CHECK(dir.count_entries() == 2);
}

TEST_CASE("write_file_atomic keeps permissions and reports errors with path and errno text",
          "[io][atomic]") {
  temp_dir dir;
  const auto p = dir / "perm.txt";
  write_file_atomic(p, std::string_view("a"));
  REQUIRE(::chmod(p.c_str(), 0600) == 0);
  write_file_atomic(p, std::string_view("b"));
  struct ::stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  const auto missing = dir / "no_such_dir" / "f.bin";
  const auto msg = message_of<genlm::error>([&] { write_file_atomic(missing, std::string_view("z")); });
  CHECK_THAT(msg, Contains(missing.string()) && Contains("No such file or directory"));
}

TEST_CASE("write_file_atomic follows symbolic links and writes through devices and pipes", "[io][atomic]") {
  namespace fs = std::filesystem;
  temp_dir dir;
  // a link is followed: its target is replaced (atomically), the link stays a link
  fs::create_directory(dir / "sub");
  write_file_atomic(dir / "sub" / "target.tsv", std::string_view("old"));
  fs::create_symlink("sub/target.tsv", dir / "link.tsv");  // relative to the link's directory
  fs::create_symlink("link.tsv", dir / "link2.tsv");       // a link to a link
  write_file_atomic(dir / "link2.tsv", std::string_view("new"));
  CHECK(fs::is_symlink(dir / "link.tsv"));
  CHECK(fs::is_symlink(dir / "link2.tsv"));
  CHECK(read_text(dir / "sub" / "target.tsv") == "new");
  // a dangling link: its target is created
  fs::create_symlink("created.tsv", dir / "dangling.tsv");
  write_file_atomic(dir / "dangling.tsv", std::string_view("made"));
  CHECK(fs::is_symlink(dir / "dangling.tsv"));
  CHECK(read_text(dir / "created.tsv") == "made");
  // a link loop is an error naming the path, not a hang
  fs::create_symlink("loop_b", dir / "loop_a");
  fs::create_symlink("loop_a", dir / "loop_b");
  CHECK_THAT(message_of<genlm::error>([&] { write_file_atomic(dir / "loop_a", std::string_view("x")); }),
             Contains("loop_a") && Contains("symbolic links"));
  // a character device is written through and stays a device (rename would replace it by a file)
  const bool null_writable = fs::is_character_file("/dev/null") && ::access("/dev/null", W_OK) == 0;
  if (null_writable) {
    fs::create_symlink("/dev/null", dir / "null_link");
    write_file_atomic(dir / "null_link", std::string_view("discarded"));
    CHECK(fs::is_character_file("/dev/null"));
    CHECK(fs::is_symlink(dir / "null_link"));
  }
  // a named pipe: the bytes go to its reader, and it stays a pipe
  const auto fifo = dir / "pipe";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  std::string got;
  std::thread reader([&] {
    std::ifstream in(fifo, std::ios::binary);
    got.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  });
  write_file_atomic(fifo, std::string_view("through the pipe"));
  reader.join();
  CHECK(got == "through the pipe");
  CHECK(fs::is_fifo(fifo));
  // sub, link.tsv, link2.tsv, dangling.tsv, created.tsv, loop_a, loop_b, pipe (and null_link): no temporary left
  CHECK(dir.count_entries() == (null_writable ? 9u : 8u));
  // a directory is refused by name
  CHECK_THAT(message_of<genlm::value_error>([&] { write_file_atomic(dir / "sub", std::string_view("x")); }),
             Contains("is a directory"));
}
#endif

// =============================================================================================
// npy
// =============================================================================================

TEST_CASE("npy: read numpy-written reference files", "[io][npy]") {
  auto a = read_npy(fixture("f32_2x3.npy"));
  CHECK(a.dtype == dtype::f32);
  CHECK(a.shape == std::vector<std::int64_t>{2, 3});
  CHECK(a.to<float>() == std::vector<float>{-1.0f, -0.5f, 0.0f, 0.5f, 1.0f, 1.5f});

  auto s = read_npy(fixture("f64_scalar.npy"));
  CHECK(s.dtype == dtype::f64);
  CHECK(s.shape.empty());
  CHECK(s.to<double>() == std::vector<double>{3.25});

  auto h = read_npy(fixture("f16_vec.npy"));
  CHECK(h.dtype == dtype::f16);
  CHECK(h.shape == std::vector<std::int64_t>{7});
  const auto hv = h.to<float>();
  CHECK(hv[0] == 1.0f);
  CHECK(hv[1] == -2.0f);
  CHECK(hv[2] == 65504.0f);
  CHECK(hv[3] == std::ldexp(1.0f, -24));
  CHECK(hv[4] == std::numeric_limits<float>::infinity());
  CHECK(hv[5] == -std::numeric_limits<float>::infinity());
  CHECK(hv[6] == 0.0999755859375f);

  CHECK(read_npy(fixture("i32_vec.npy")).to<std::int32_t>() ==
        std::vector<std::int32_t>{0, 1, -1, 2147483647, std::numeric_limits<std::int32_t>::min()});
  auto i64 = read_npy(fixture("i64_2x2.npy"));
  CHECK(i64.shape == std::vector<std::int64_t>{2, 2});
  CHECK(i64.to<std::int64_t>() == std::vector<std::int64_t>{std::int64_t{1} << 40, -1, 7,
                                                            std::numeric_limits<std::int64_t>::min()});
  auto u8 = read_npy(fixture("u8_vec.npy"));
  CHECK(u8.dtype == dtype::u8);
  CHECK(u8.to<int>() == std::vector<int>{0, 1, 127, 128, 255});
  auto b = read_npy(fixture("bool_vec.npy"));
  CHECK(b.dtype == dtype::bool_);
  CHECK(b.to<bool>() == std::vector<bool>{true, false, true, true});

  auto e = read_npy(fixture("f32_empty_0x3.npy"));
  CHECK(e.shape == std::vector<std::int64_t>{0, 3});
  CHECK(e.bytes.empty());

  CHECK(read_npy(fixture("f32_v2.npy")).to<float>() == std::vector<float>{1, 2, 3});
  CHECK(read_npy(fixture("f32_v3.npy")).to<float>() == std::vector<float>{4, 5});
}

TEST_CASE("npy: big-endian data is byte-swapped", "[io][npy]") {
  auto a = read_npy(fixture("f32_bigendian_2x2.npy"));
  CHECK(a.dtype == dtype::f32);
  CHECK(a.shape == std::vector<std::int64_t>{2, 2});
  CHECK(a.to<float>() == std::vector<float>{1.5f, -2.0f, 3.0f, 1e-3f});
  CHECK(read_npy(fixture("i64_bigendian_vec.npy")).to<std::int64_t>() ==
        std::vector<std::int64_t>{1, -2, std::int64_t{1} << 40});
}

TEST_CASE("npy: fortran_order arrays are transposed into C order", "[io][npy]") {
  auto a = read_npy(fixture("i32_fortran_2x3.npy"));
  CHECK(a.shape == std::vector<std::int64_t>{2, 3});
  CHECK(a.to<int>() == std::vector<int>{0, 1, 2, 3, 4, 5});
  auto b = read_npy(fixture("i64_fortran_2x3x4.npy"));
  CHECK(b.shape == std::vector<std::int64_t>{2, 3, 4});
  std::vector<std::int64_t> want(24);
  for (int k = 0; k < 24; ++k) want[static_cast<std::size_t>(k)] = k;
  CHECK(b.to<std::int64_t>() == want);
}

TEST_CASE("npy: writer output is byte-identical to np.save", "[io][npy]") {
  for (const char* name : {"f32_2x3.npy", "f64_scalar.npy", "f16_vec.npy", "i32_vec.npy",
                           "i64_2x2.npy", "u8_vec.npy", "bool_vec.npy", "f32_empty_0x3.npy"}) {
    INFO(name);
    const auto file = read_bytes(fixture(name));
    CHECK(serialize_npy(read_npy(fixture(name))) == file);
  }
}

TEST_CASE("npy: round trip of every dtype through files", "[io][npy]") {
  temp_dir dir;
  for (const auto& kv : sample_arrays()) {
    const std::string& name = kv.first;
    const array& a = kv.second;  // (no structured binding: clang 14 cannot capture those)
    INFO(name);
    const auto p = dir / (name + ".npy");
    if (a.dtype == dtype::bf16) {
      CHECK_THAT(message_of<value_error>([&] { write_npy(p, a); }),
                 Contains("bfloat16") && Contains(p.string()));
      CHECK_FALSE(fs::exists(p));
      continue;
    }
    write_npy(p, a);
    require_equal(read_npy(p), a);
    const auto bytes = read_bytes(p);
    REQUIRE(bytes.size() >= 64);
    CHECK(bytes[6] == std::byte{1});  // version 1.0
    const auto hlen = io::detail::load_le<std::uint16_t>(bytes.data() + 8);
    CHECK((10 + hlen) % 64 == 0);
    CHECK(bytes[10 + hlen - 1] == std::byte{'\n'});
  }
  CHECK(dir.count_entries() == sample_arrays().size() - 1);
}

TEST_CASE("npy: header parsing accepts numpy's variations", "[io][npy]") {
  // key order, double quotes, no trailing comma, extra whitespace, Python 2 long suffix.
  auto a = read_npy_from_memory(
      make_npy("{\"shape\": (2L,) , 'fortran_order':False,'descr':'<i4'}", 8));
  CHECK(a.shape == std::vector<std::int64_t>{2});
  CHECK(a.dtype == dtype::i32);
  auto b = read_npy_from_memory(make_npy("{'descr': '<f8', 'fortran_order': True, 'shape': ()}", 8, 2));
  CHECK(b.shape.empty());
  auto c = read_npy_from_memory(make_npy("{'descr': '>u1', 'fortran_order': False, 'shape': (3,), }", 3, 3));
  CHECK(c.to<int>() == std::vector<int>{1, 1, 1});
}

TEST_CASE("npy: errors name the file and the problem", "[io][npy]") {
  temp_dir dir;
  const auto good = read_bytes(fixture("f32_2x3.npy"));

  SECTION("truncated data") {
    auto t = good;
    t.resize(t.size() - 4);
    const auto p = dir / "trunc.npy";
    write_bytes(p, t);
    CHECK_THAT(message_of<format_error>([&] { read_npy(p); }),
               Contains(p.string()) &&
                   Contains("expected 24 bytes of data for shape (2, 3) float32, found 20"));
  }
  SECTION("trailing bytes") {
    auto t = good;
    t.push_back(std::byte{0});
    CHECK_THAT(message_of<format_error>([&] { read_npy_from_memory(t, "x.npy"); }),
               Contains("x.npy") && Contains("found 25") && Contains("trailing"));
  }
  SECTION("bad magic") {
    auto t = good;
    t[1] = std::byte{'X'};
    const auto p = dir / "magic.npy";
    write_bytes(p, t);
    CHECK_THAT(message_of<format_error>([&] { read_npy(p); }),
               Contains(p.string()) && Contains("magic"));
    CHECK_THAT(message_of<format_error>([] { read_npy_from_memory(to_bytes("\x93NUM"), "tiny.npy"); }),
               Contains("tiny.npy") && Contains("magic") && Contains("only 4 bytes"));
  }
  SECTION("unsupported version") {
    auto t = good;
    t[6] = std::byte{4};
    CHECK_THAT(message_of<format_error>([&] { read_npy_from_memory(t, "v.npy"); }),
               Contains("v.npy") && Contains("version 4.0"));
  }
  SECTION("header length past the end") {
    auto t = good;
    t.resize(40);
    CHECK_THAT(message_of<format_error>([&] { read_npy_from_memory(t, "h.npy"); }),
               Contains("h.npy") && Contains("header length 118"));
  }
  SECTION("unsupported descr") {
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("{'descr': '<i2', 'fortran_order': False, 'shape': (1,), }", 2), "d.npy");
               }),
               Contains("d.npy") && Contains("'descr'") && Contains("'<i2'"));
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4), "s.npy");
               }),
               Contains("s.npy") && Contains("'descr'") && Contains("structured"));
  }
  SECTION("missing or extra keys, wrong types") {
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("{'descr': '<f4', 'shape': (1,), }", 4), "k.npy");
               }),
               Contains("k.npy") && Contains("'fortran_order'"));
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4), "k.npy");
               }),
               Contains("unexpected key 'x'"));
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': [1], }", 4), "k.npy");
               }),
               Contains("'shape'") && Contains("tuple"));
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (1,), }", 4), "k.npy");
               }),
               Contains("'fortran_order'"));
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, -1), }", 0), "n.npy");
               }),
               Contains("n.npy") && Contains("'shape'") && Contains("negative"));
  }
  SECTION("malformed dict") {
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,", 4), "m.npy");
               }),
               Contains("m.npy") && Contains("malformed header"));
    CHECK_THAT(message_of<format_error>([] {
                 read_npy_from_memory(make_npy("not a dict", 4), "m.npy");
               }),
               Contains("m.npy") && Contains("dict"));
  }
  SECTION("missing file") {
    const auto p = dir / "absent.npy";
    CHECK_THAT(message_of<genlm::error>([&] { read_npy(p); }), Contains(p.string()));
  }
}

// =============================================================================================
// safetensors
// =============================================================================================

TEST_CASE("safetensors: read a file written by the reference implementation", "[io][safetensors]") {
  const auto f = read_safetensors(fixture("all_dtypes.safetensors"));
  CHECK(f.metadata == std::map<std::string, std::string>{{"format", "pt"}, {"note", "genlm fixture"}});
  CHECK(f.tensors.size() == 9);

  const auto& h = f.at("f16");
  CHECK(h.dtype == dtype::f16);
  CHECK(h.to<float>() == std::vector<float>{1.0f, -2.0f, 65504.0f, std::ldexp(1.0f, -24)});
  const auto bf = f.at("bf16").to<float>();
  CHECK(f.at("bf16").dtype == dtype::bf16);
  CHECK(bf[0] == 1.0f);
  CHECK(bf[1] == -2.0f);
  CHECK(std::isinf(bf[2]));
  CHECK(bf[3] == std::ldexp(1.0f, -133));
  CHECK(f.at("f32").shape == std::vector<std::int64_t>{2, 3});
  CHECK(f.at("f32").to<float>() == std::vector<float>{-2.5f, -1.5f, -0.5f, 0.5f, 1.5f, 2.5f});
  CHECK(f.at("f64_scalar").shape.empty());
  CHECK(f.at("f64_scalar").to<double>() == std::vector<double>{3.25});
  CHECK(f.at("i32").to<std::int32_t>() == std::vector<std::int32_t>{-7, 0, 2147483647});
  CHECK(f.at("i64").shape == std::vector<std::int64_t>{2, 1});
  CHECK(f.at("i64").to<std::int64_t>() == std::vector<std::int64_t>{std::int64_t{1} << 40, -3});
  CHECK(f.at("u8").to<int>() == std::vector<int>{0, 200, 255});
  CHECK(f.at("bool").to<bool>() == std::vector<bool>{true, false, true});
  CHECK(f.at("empty").shape == std::vector<std::int64_t>{0, 3});
  CHECK(f.at("empty").bytes.empty());

  const auto g = read_safetensors(fixture("f32_pair.safetensors"));
  CHECK(g.metadata.empty());
  CHECK(g.at("weight").to<float>() == std::vector<float>{1, 2, 3, 4});
  CHECK(g.at("bias").to<float>() == std::vector<float>{0.5f});
}

TEST_CASE("safetensors: writer output is byte-identical to the reference", "[io][safetensors]") {
  for (const char* name : {"all_dtypes.safetensors", "f32_pair.safetensors"}) {
    INFO(name);
    const auto file = read_bytes(fixture(name));
    const auto f = read_safetensors(fixture(name));
    CHECK(serialize_safetensors(f.tensors, f.metadata) == file);
    // The in-memory reader agrees with the file reader.
    const auto m = read_safetensors_from_memory(file, name);
    CHECK(m.metadata == f.metadata);
    REQUIRE(m.tensors.size() == f.tensors.size());
    for (const auto& [k, v] : f.tensors) require_equal(m.at(k), v);
  }
}

TEST_CASE("safetensors: round trip of every dtype through files", "[io][safetensors]") {
  temp_dir dir;
  const auto p = dir / "model.safetensors";
  const auto tensors = sample_arrays();
  const std::map<std::string, std::string> meta{{"format", "pt"}, {"k\"ey", "v\nal"}};
  write_safetensors(p, tensors, meta);
  const auto f = read_safetensors(p);
  CHECK(f.source == p.string());
  CHECK(f.metadata == meta);
  REQUIRE(f.tensors.size() == tensors.size());
  for (const auto& [name, a] : tensors) {
    INFO(name);
    REQUIRE(f.contains(name));
    require_equal(f.at(name), a);
  }
  const auto bytes = read_bytes(p);
  const auto n = io::detail::load_le<std::uint64_t>(bytes.data());
  CHECK(n % 8 == 0);
  CHECK(bytes[8] == std::byte{'{'});
  CHECK(dir.count_entries() == 1);

  // Overwriting with fewer tensors and no metadata.
  write_safetensors(p, {{"only", tensors.at("c_f32")}});
  const auto g = read_safetensors(p);
  CHECK(g.tensors.size() == 1);
  CHECK(g.metadata.empty());
  // An empty file (no tensors at all) is valid too.
  write_safetensors(p, {});
  CHECK(read_safetensors(p).tensors.empty());
}

TEST_CASE("safetensors: missing tensor names the file and lists what is there", "[io][safetensors]") {
  const auto f = read_safetensors(fixture("f32_pair.safetensors"));
  CHECK_FALSE(f.contains("weights"));
  CHECK_THAT(message_of<lookup_error>([&] { f.at("weights"); }),
             Contains("f32_pair.safetensors") && Contains("'weights'") && Contains("'bias'") &&
                 Contains("'weight'"));
}

TEST_CASE("safetensors: writer rejects invalid input", "[io][safetensors]") {
  temp_dir dir;
  const auto p = dir / "bad.safetensors";
  array broken{dtype::f32, {2, 2}, std::vector<std::byte>(12)};
  CHECK_THAT(message_of<shape_error>([&] { write_safetensors(p, {{"w", broken}}); }),
             Contains(p.string()) && Contains("'w'") && Contains("needs 16"));
  const float one = 1.0f;
  CHECK_THROWS_AS(write_safetensors(p, {{"__metadata__", array::from<float>({}, &one)}}), value_error);
  CHECK_THROWS_AS(write_safetensors(p, {{"bad\xff", array::from<float>({}, &one)}}), value_error);
  CHECK_FALSE(fs::exists(p));
}

TEST_CASE("safetensors: errors name the file and the field", "[io][safetensors]") {
  temp_dir dir;
  const std::string ok = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  REQUIRE(read_safetensors_from_memory(make_st(ok, 8), "ok").at("a").numel() == 2);

  auto err = [](const std::vector<std::byte>& img) {
    return message_of<format_error>([&] { read_safetensors_from_memory(img, "t.safetensors"); });
  };

  SECTION("file shorter than 8 bytes") {
    const auto p = dir / "short.safetensors";
    write_bytes(p, to_bytes("abc"));
    CHECK_THAT(message_of<format_error>([&] { read_safetensors(p); }),
               Contains(p.string()) && Contains("3 bytes") && Contains("8-byte"));
  }
  SECTION("header length larger than the file") {
    CHECK_THAT(err(make_st(ok, 8, 1000)),
               Contains("t.safetensors") && Contains("header length 1000") && Contains("truncated"));
    CHECK_THAT(err(make_st(ok, 8, std::uint64_t{1} << 62)), Contains("maximum"));
  }
  SECTION("invalid JSON") {
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32",)", 0)),
               Contains("t.safetensors") && Contains("not valid JSON"));
    CHECK_THAT(err(make_st("[1,2]", 0)), Contains("must be a JSON object"));
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8)),
               Contains("duplicate key 'a'"));
  }
  SECTION("unknown dtype") {
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})", 2)),
               Contains("t.safetensors") && Contains("tensor 'a'") && Contains("'dtype'") &&
                   Contains("\"I8\"") && Contains("BF16"));
  }
  SECTION("missing / mistyped fields") {
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[2]}})", 0)),
               Contains("tensor 'a'") && Contains("'data_offsets' is missing"));
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})", 8)),
               Contains("'shape' must be an array"));
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8)),
               Contains("'shape' must contain integers"));
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", 8)),
               Contains("'data_offsets' must be [begin, end]"));
    CHECK_THAT(err(make_st(R"({"__metadata__":{"k":1}})", 0)),
               Contains("'__metadata__'") && Contains("'k'"));
  }
  SECTION("negative dims") {
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,8]}})", 8)),
               Contains("tensor 'a'") && Contains("negative dimension -3"));
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[-1,8]}})", 8)),
               Contains("'data_offsets'") && Contains("negative"));
  }
  SECTION("data_offsets not matching dtype size x shape") {
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,20]}})", 20)),
               Contains("tensor 'a'") && Contains("[0, 20]") && Contains("spans 20 bytes") &&
                   Contains("(2, 3) F32 needs 24"));
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", 8)),
               Contains("end before begin"));
  }
  SECTION("offsets past the buffer / truncated file") {
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8)),
               Contains("tensor 'a'") && Contains("[0, 16]") && Contains("8 bytes") &&
                   Contains("truncated"));
    auto t = read_bytes(fixture("all_dtypes.safetensors"));
    t.resize(t.size() - 1);
    const auto p = dir / "trunc.safetensors";
    write_bytes(p, t);
    CHECK_THAT(message_of<format_error>([&] { read_safetensors(p); }),
               Contains(p.string()) && Contains("tensor 'bool'") && Contains("data_offsets"));
  }
  SECTION("overlapping, gapped or trailing data") {
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                           R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12)),
               Contains("tensor 'b'") && Contains("overlaps tensor 'a'"));
    CHECK_THAT(err(make_st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                           R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})", 12)),
               Contains("tensor 'b'") && Contains("gap of 4 bytes"));
    CHECK_THAT(err(make_st(ok, 12)), Contains("12 bytes") && Contains("cover only 8"));
    // Offsets listed out of file order in the JSON are fine as long as they tile the buffer.
    const auto m = read_safetensors_from_memory(
        make_st(R"({"b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                R"("a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", 2), "x");
    CHECK(m.at("a").to<int>() == std::vector<int>{0});
    CHECK(m.at("b").to<int>() == std::vector<int>{1});
  }
  SECTION("missing file") {
    const auto p = dir / "absent.safetensors";
    CHECK_THAT(message_of<genlm::error>([&] { read_safetensors(p); }), Contains(p.string()));
  }
}

TEST_CASE("safetensors: deeply nested or huge JSON values give short format errors", "[io][safetensors]") {
  auto err = [](const std::string& header, std::size_t n = 0) {
    return message_of<format_error>([&] { read_safetensors_from_memory(make_st(header, n), "deep.safetensors"); });
  };
  const auto nest = [](std::size_t depth, const std::string& open, const std::string& inner,
                       const std::string& close) {
    std::string t;
    for (std::size_t i = 0; i < depth; ++i) t += open;
    t += inner;
    for (std::size_t i = 0; i < depth; ++i) t += close;
    return t;
  };
  SECTION("nesting deeper than the reference's limit of 128, anywhere in the header") {
    // 200000 levels used to overflow the stack when the value was dumped into the message.
    for (const std::string& h :
         {R"({"a":{"dtype":"F32","shape":[)" + nest(200000, "[", "", "]") + R"(],"data_offsets":[0,0]}})",
          R"({"a":{"dtype":)" + nest(200000, "[", "", "]") + R"(,"shape":[],"data_offsets":[0,4]}})",
          R"({"__metadata__":)" + nest(200000, R"({"k":)", "1", "}") + "}",
          R"({"__metadata__":{"k":)" + nest(129, "[", "", "]") + "}}"}) {
      const auto msg = err(h, 4);
      CHECK_THAT(msg, Contains("deep.safetensors") && Contains("nests deeper than 128 levels"));
      CHECK(msg.size() < 200);
    }
  }
  SECTION("values within the depth limit are described by type and a short excerpt") {
    auto msg = err(R"({"a":{"dtype":)" + nest(100, "[", "", "]") + R"(,"shape":[],"data_offsets":[0,4]}})", 4);
    CHECK_THAT(msg, Contains("tensor 'a'") && Contains("'dtype' must be a string, got array [[...]]"));
    msg = err(R"({"__metadata__":{"k":)" + nest(100, R"({"x":)", "1", "}") + "}}");
    CHECK_THAT(msg, Contains("'__metadata__' entry 'k'") && Contains("got object {\"x\":{...}}"));
    // a 1 MB string and a 100000-element array are cut to a few dozen characters
    msg = err(R"({"a":{"dtype":")" + std::string(1 << 20, 'Q') + R"(","shape":[],"data_offsets":[0,4]}})", 4);
    CHECK_THAT(msg, Contains("unsupported value \"QQQQ") && Contains("QQQ...\""));
    CHECK(msg.size() < 400);
    std::string many = "[";
    for (int i = 0; i < 100000; ++i) many += "1,";
    many += "2.5]";
    msg = err(R"({"a":{"dtype":"F32","shape":)" + many + R"(,"data_offsets":[0,4]}})", 4);
    CHECK_THAT(msg, Contains("'shape' must contain integers, got [1,1,1,") && Contains(",...]") &&
                        Contains("number at index 100000"));
    CHECK(msg.size() < 400);
  }
}

TEST_CASE("safetensors: a NUL byte in the header is refused naming its offset", "[io][safetensors]") {
  const std::string ok = R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  // Trailing spaces are the format's padding and stay valid.
  CHECK(read_safetensors_from_memory(make_st(ok + "     ", 1), "pad").at("a").numel() == 1);
  // nlohmann's parser stops at a NUL: anything after it used to be ignored.
  const std::string hidden = ok + std::string(1, '\0') + R"({"b":1})";
  temp_dir dir;
  const auto p = dir / "nul.safetensors";
  write_bytes(p, make_st(hidden, 1));
  const std::string at = std::to_string(ok.size());
  CHECK_THAT(message_of<format_error>([&] { read_safetensors(p); }),
             Contains(p.string()) && Contains("NUL byte at header offset " + at) &&
                 Contains("file offset " + std::to_string(ok.size() + 8)));
  CHECK_THAT(message_of<format_error>([&] { read_safetensors_from_memory(make_st(ok + '\0', 1), "m"); }),
             Contains("'m'") && Contains("NUL byte at header offset " + at));
}

TEST_CASE("a tensor too large to allocate names the file, the tensor and the byte count", "[io][safetensors][npy]") {
  // 2^62 bytes exceeds every address space: the allocation fails on any host.
  const std::uint64_t huge = std::uint64_t{1} << 62;
  static std::vector<std::byte> keep;  // the buffer escapes: the compiler may not elide the allocation
  CHECK_THAT(message_of<genlm::error>([&] { keep = io::detail::allocate_bytes(huge, "file 'f': tensor 't'"); }),
             Contains("file 'f': tensor 't'") && Contains("cannot allocate 4611686018427387904 bytes"));
  keep = io::detail::allocate_bytes(3, "x");
  CHECK(keep.size() == 3);

  // Whole files: a 1 TiB sparse file whose header is consistent with its size.
  const std::uint64_t tib = std::uint64_t{1} << 40;
  if (!allocation_must_fail(tib)) {
    WARN("skipping the 1 TiB file checks: this host might grant the allocation");
    return;
  }
  temp_dir dir;
  const auto st = dir / "sparse.safetensors";
  const auto np = dir / "sparse.npy";
  if (!write_sparse(st, make_st(R"({"big":{"dtype":"U8","shape":[1099511627776],"data_offsets":[0,1099511627776]}})", 0),
                    tib) ||
      !write_sparse(np, make_npy("{'descr': '|u1', 'fortran_order': False, 'shape': (1099511627776,), }", 0), tib)) {
    WARN("skipping the 1 TiB file checks: the file system refuses sparse 1 TiB files");
    return;
  }
  auto msg = message_of<genlm::error>([&] { read_safetensors(st); });
  CHECK_THAT(msg, Contains(st.string()) && Contains("tensor 'big'") && Contains("cannot allocate 1099511627776 bytes"));
  msg = message_of<genlm::error>([&] { read_npy(np); });
  CHECK_THAT(msg, Contains(np.string()) && Contains("cannot allocate 1099511627776 bytes"));
}

TEST_CASE("array::to refuses float64 values beyond the range of float", "[io][array]") {
  const double v[] = {1.0, 1e300, -1e300};
  const auto a = array::from<double>({3}, v);
  CHECK_THAT(message_of<value_error>([&] { a.to<float>(); }),
             Contains("array::to: element 1 (1e+300)") && Contains("outside the range of a 32-bit float"));
  CHECK_THAT(message_of<value_error>([&] { a.to<float>("file 'x': tensor 'w'"); }),
             Contains("file 'x': tensor 'w': element 1 (1e+300)"));
  CHECK(a.to<double>() == std::vector<double>{1.0, 1e300, -1e300});
  const double edge[] = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                         std::numeric_limits<double>::infinity(), std::numeric_limits<double>::quiet_NaN()};
  const auto e = array::from<double>({4}, edge).to<float>();  // the extremes and NaN/Inf convert
  CHECK(e[0] == std::numeric_limits<float>::max());
  CHECK(e[1] == -std::numeric_limits<float>::max());
  CHECK(std::isinf(e[2]));
  CHECK(std::isnan(e[3]));
  const double just_over[] = {-std::nextafter(double(std::numeric_limits<float>::max()), 1e300)};
  CHECK_THAT(message_of<value_error>([&] { array::from<double>({1}, just_over).to<float>(); }),
             Contains("element 0"));
}

// =============================================================================================
// state_dict
// =============================================================================================

namespace {
/// A finalized store with parameters "a" (2) and "z" (2, 3), filled with known values.
struct small_store {
  parameter_store<float, cpu> ps;
  small_store() {
    ps.add("a", shape_t{2});
    ps.add("z", shape_t{2, 3});
    ps.finalize();
    ps.set("a", shape_t{2}, std::vector<float>{7, 8});
    ps.set("z", shape_t{2, 3}, std::vector<float>{1, 2, 3, 4, 5, 6});
  }
  bool unchanged() const {
    return ps.get("a") == std::vector<float>{7, 8} && ps.get("z") == std::vector<float>{1, 2, 3, 4, 5, 6};
  }
};

safetensors_file state_file(std::map<std::string, array> t) {
  safetensors_file f;
  f.source = "model.safetensors";
  f.tensors = std::move(t);
  return f;
}

array farr(std::vector<std::int64_t> shape, std::vector<float> v) { return array::from<float>(std::move(shape), v); }
}  // namespace

TEST_CASE("load_state_dict: ignore prefixes ending in a dot or a star", "[io][state_dict]") {
  small_store s;
  auto f = state_file({{"a", farr({2}, {1, 2})}, {"z", farr({2, 3}, {0, 0, 0, 0, 0, 0})},
                       {"lm_head.bias", farr({2}, {0, 0})}, {"pooler.w", farr({1}, {0})}});
  load_options o;
  o.ignore = {"lm_head.", "pooler*"};
  const auto rep = load_state_dict(s.ps, f, o);
  CHECK(rep.ignored == std::vector<std::string>{"lm_head.bias", "pooler.w"});
  CHECK(s.ps.get("a") == std::vector<float>{1, 2});
  // "lm_head." matches only names that start with "lm_head." (dot included)
  f.tensors.emplace("lm_headx", farr({1}, {0}));
  CHECK_THAT(message_of<format_error>([&] { load_state_dict(s.ps, f, o); }),
             Contains("model.safetensors") && Contains("unexpected tensor 'lm_headx'"));
}

TEST_CASE("load_state_dict: a tensor of rank above 4 names the file, the tensor and both shapes", "[io][state_dict]") {
  small_store s;
  const auto f = state_file({{"a", farr({1, 1, 1, 1, 2}, {1, 2})}, {"z", farr({2, 3}, {0, 0, 0, 0, 0, 0})}});
  CHECK_THAT(message_of<shape_error>([&] { load_state_dict(s.ps, f); }),
             Contains("safetensors file 'model.safetensors': tensor 'a' has shape (1, 1, 1, 1, 2)") &&
                 Contains("expects (2,) for parameter 'a'"));
  CHECK(s.unchanged());
}

TEST_CASE("load_state_dict: non-floating dtypes, NaN/Inf and float overflow are refused", "[io][state_dict]") {
  small_store s;
  const array z = farr({2, 3}, {0, 0, 0, 0, 0, 0});
  SECTION("integer and bool dtypes") {
    auto f = state_file({{"a", array::from<std::int64_t>({2}, std::vector<std::int64_t>{7, 7})}, {"z", z}});
    CHECK_THAT(message_of<format_error>([&] { load_state_dict(s.ps, f); }),
               Contains("'model.safetensors'") && Contains("tensor 'a' has dtype I64") &&
                   Contains("floating-point dtype"));
    f.tensors["a"] = array::from<bool>({2}, std::vector<bool>{true, false});
    CHECK_THAT(message_of<format_error>([&] { load_state_dict(s.ps, f); }), Contains("tensor 'a' has dtype BOOL"));
    CHECK(s.unchanged());
  }
  SECTION("NaN and Inf, with the flat index") {
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
    auto f = state_file({{"a", farr({2}, {0, 0})}, {"z", farr({2, 3}, {0, 0, 0, 0, nan, 0})}});
    CHECK_THAT(message_of<value_error>([&] { load_state_dict(s.ps, f); }),
               Contains("'model.safetensors'") && Contains("tensor 'z' has a non-finite value nan at flat index 4"));
    f.tensors["z"] = farr({2, 3}, {0, -inf, 0, 0, 0, 0});
    CHECK_THAT(message_of<value_error>([&] { load_state_dict(s.ps, f); }),
               Contains("tensor 'z' has a non-finite value -inf at flat index 1"));
    CHECK(s.unchanged());  // "a" was fine but is not written when "z" is refused
  }
  SECTION("float64 beyond the float range") {
    auto f = state_file({{"a", array::from<double>({2}, std::vector<double>{0.5, 1e300})}, {"z", z}});
    CHECK_THAT(message_of<value_error>([&] { load_state_dict(s.ps, f); }),
               Contains("safetensors file 'model.safetensors': tensor 'a': element 1 (1e+300)") &&
                   Contains("outside the range"));
    CHECK(s.unchanged());
    f.tensors["a"] = array::from<double>({2}, std::vector<double>{0.5, -2.0});  // in range: converted
    load_state_dict(s.ps, f);
    CHECK(s.ps.get("a") == std::vector<float>{0.5f, -2.0f});
  }
}
