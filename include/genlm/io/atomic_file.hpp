// genlm/io/atomic_file.hpp - crash-safe "replace this file" writes.
//
// write_file_atomic(path, ...) writes the new contents to a temporary file in the SAME directory
// (`<path>.tmp.<pid>.<n>`, n a per-process counter so concurrent writers never collide), flushes
// and fsyncs it, renames it over `path` (atomic on POSIX), then fsyncs the directory so the rename
// itself is durable. Readers therefore see either the complete old file or the complete new one;
// if the process dies mid-write the old file is untouched (a stale temp file may remain). On any
// failure (including an exception thrown by the caller's writer callback) the temp file is
// removed; I/O failures throw genlm::error naming the path and the errno text, callback
// exceptions propagate unchanged. An existing target's permission bits are kept.
//
// What `path` names is respected (POSIX): a symbolic link is followed, so the file it points to
// is replaced atomically and the link stays a link (a dangling link gets its target created); a
// character or block device, FIFO or socket (/dev/null, /dev/stdout, a named pipe) is written
// through, in place and not atomically (it has no old contents to keep); a directory is refused.
// Only a regular file or a new name is replaced by rename.
#pragma once

#include <genlm/core/error.hpp>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <ostream>
#include <sstream>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#if defined(_WIN32)
#include <fstream>
#include <process.h>
#else
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace genlm::io {

namespace detail {

inline std::string errno_text(int err) { return std::generic_category().message(err); }

/// `path` with its symbolic links followed, also a dangling last one (the name it would create);
/// at most 40 links (ELOOP beyond, as the kernel), error naming the path.
inline std::filesystem::path follow_links(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  fs::path p = path;
  for (int hops = 0;; ++hops) {
    std::error_code ec;
    if (!fs::is_symlink(fs::symlink_status(p, ec))) return p;
    check(hops < 40, "write_file_atomic: '", path.string(), "': more than 40 symbolic links to follow");
    const fs::path target = fs::read_symlink(p, ec);
    check(!ec, "write_file_atomic: cannot read the symbolic link '", p.string(), "': ", ec.message());
    p = target.is_absolute() ? target : p.parent_path() / target;
  }
}

/// Name of the temporary sibling used while writing `target`.
inline std::filesystem::path temp_path_for(const std::filesystem::path& target) {
  static std::atomic<unsigned long> counter{0};
#if defined(_WIN32)
  const long pid = static_cast<long>(::_getpid());
#else
  const long pid = static_cast<long>(::getpid());
#endif
  std::filesystem::path p = target;
  p += ".tmp." + std::to_string(pid) + "." + std::to_string(counter.fetch_add(1));
  return p;
}

}  // namespace detail

class file_writer;
inline void write_file_atomic(const std::filesystem::path& path,
                              const std::function<void(file_writer&)>& fill);

/// Sink handed to the write_file_atomic callback. Buffers small writes; write() may throw
/// genlm::error on I/O failure.
class file_writer {
 public:
  file_writer(const file_writer&) = delete;
  file_writer& operator=(const file_writer&) = delete;

  void write(std::span<const std::byte> data) {
    if (data.size() >= kBufferSize) {  // large block: flush what we hold, write it directly
      flush();
      raw_write(data.data(), data.size());
    } else {
      if (buffer_.size() + data.size() > kBufferSize) flush();
      buffer_.insert(buffer_.end(), data.begin(), data.end());
    }
    written_ += data.size();
  }
  void write(std::string_view s) { write(std::as_bytes(std::span<const char>(s.data(), s.size()))); }
  void write(const void* data, std::size_t n) {
    write(std::span<const std::byte>(static_cast<const std::byte*>(data), n));
  }

  /// Bytes accepted so far.
  std::uint64_t bytes_written() const noexcept { return written_; }

 private:
  friend void write_file_atomic(const std::filesystem::path&,
                                const std::function<void(file_writer&)>&);
  static constexpr std::size_t kBufferSize = std::size_t{1} << 20;

#if defined(_WIN32)
  explicit file_writer(std::ofstream& os, const std::filesystem::path& tmp) : os_(os), tmp_(tmp) {}
  void raw_write(const std::byte* p, std::size_t n) {
    os_.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n));
    check(static_cast<bool>(os_), "write_file_atomic: write to '", tmp_.string(), "' failed");
  }
  std::ofstream& os_;
#else
  file_writer(int fd, const std::filesystem::path& tmp) : fd_(fd), tmp_(tmp) {}
  void raw_write(const std::byte* p, std::size_t n) {
    while (n > 0) {
      const ::ssize_t k = ::write(fd_, p, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        const int err = errno;
        throw error(genlm::detail::concat("write_file_atomic: write to '", tmp_.string(),
                                   "' failed: ", detail::errno_text(err)));
      }
      p += k;
      n -= static_cast<std::size_t>(k);
    }
  }
  int fd_;
#endif
  void flush() {
    if (!buffer_.empty()) raw_write(buffer_.data(), buffer_.size());
    buffer_.clear();
  }

  const std::filesystem::path& tmp_;
  std::vector<std::byte> buffer_;
  std::uint64_t written_ = 0;
};

/// Atomically replaces (or creates) `path` with whatever `fill` writes into the file_writer.
/// If `fill` throws, the temp file is removed, `path` is untouched and the exception propagates.
inline void write_file_atomic(const std::filesystem::path& named,
                              const std::function<void(file_writer&)>& fill) {
  namespace fs = std::filesystem;
  check<value_error>(!named.empty() && named.has_filename(), "write_file_atomic: '", named.string(),
                     "' does not name a file");
#if defined(_WIN32)
  const fs::path& path = named;
#else
  if (struct ::stat st {}; ::stat(named.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {  // stat follows links
    check<value_error>(!S_ISDIR(st.st_mode), "write_file_atomic: '", named.string(), "' is a directory");
    // a device, FIFO or socket: written through in place (nothing to replace atomically), opened
    // by the name given (e.g. /dev/stdout, whose /proc link names no file)
    int fd;
    do fd = ::open(named.c_str(), O_WRONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
      const int err = errno;
      throw error(genlm::detail::concat("write_file_atomic: cannot open '", named.string(), "' for writing: ",
                                        detail::errno_text(err)));
    }
    try {
      file_writer w(fd, named);
      fill(w);
      w.flush();
    } catch (...) {
      ::close(fd);
      throw;
    }
    if (::close(fd) != 0) {
      const int err = errno;
      throw error(genlm::detail::concat("write_file_atomic: close of '", named.string(), "' failed: ",
                                        detail::errno_text(err)));
    }
    return;
  }
  const fs::path path = detail::follow_links(named);  // a regular file or a new name: replaced by rename
#endif
  const fs::path tmp = detail::temp_path_for(path);

#if defined(_WIN32)
  try {
    {
      std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
      check(static_cast<bool>(os), "write_file_atomic: cannot create temporary file '",
            tmp.string(), "' for '", path.string(), "'");
      file_writer w(os, tmp);
      fill(w);
      w.flush();
      os.flush();
      check(static_cast<bool>(os), "write_file_atomic: flushing '", tmp.string(), "' failed");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    check(!ec, "write_file_atomic: cannot rename '", tmp.string(), "' to '", path.string(),
          "': ", ec.message());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
#else
  // Keep the permission bits of an existing target (default: 0666 & ~umask via open()).
  struct ::stat st {};
  const bool keep_mode = ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);

  int fd = -1;
  do {
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    const int err = errno;
    throw error(genlm::detail::concat("write_file_atomic: cannot create temporary file '", tmp.string(),
                               "' for '", path.string(), "': ", detail::errno_text(err)));
  }
  auto fail = [&](std::string_view what, int err) {
    throw error(genlm::detail::concat("write_file_atomic: ", what, " '", tmp.string(), "' (writing '",
                               path.string(), "') failed: ", detail::errno_text(err)));
  };
  try {
    if (keep_mode && ::fchmod(fd, st.st_mode & 07777) != 0) fail("fchmod of", errno);
    file_writer w(fd, tmp);
    fill(w);
    w.flush();
    int rc;
    do rc = ::fsync(fd);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) fail("fsync of", errno);
    const int cfd = fd;
    fd = -1;  // POSIX: the descriptor is released even when close() reports an error
    if (::close(cfd) != 0) fail("close of", errno);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      const int err = errno;
      throw error(genlm::detail::concat("write_file_atomic: cannot rename '", tmp.string(), "' to '",
                                 path.string(), "': ", detail::errno_text(err)));
    }
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }

  // Make the rename durable: fsync the containing directory. Some filesystems cannot fsync a
  // directory (EINVAL / ENOTSUP); that is not an error for us.
  fs::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  int dfd;
  do dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  while (dfd < 0 && errno == EINTR);
  if (dfd < 0) {
    const int err = errno;
    throw error(genlm::detail::concat("write_file_atomic: wrote '", path.string(),
                               "' but cannot open its directory '", dir.string(),
                               "' to fsync it: ", detail::errno_text(err)));
  }
  int rc;
  do rc = ::fsync(dfd);
  while (rc != 0 && errno == EINTR);
  const int err = errno;
  ::close(dfd);
  if (rc != 0 && err != EINVAL && err != ENOTSUP && err != EROFS)
    throw error(genlm::detail::concat("write_file_atomic: wrote '", path.string(),
                               "' but fsync of directory '", dir.string(),
                               "' failed: ", detail::errno_text(err)));
#endif
}

/// Atomically replaces (or creates) `path` with `data`.
inline void write_file_atomic(const std::filesystem::path& path, std::span<const std::byte> data) {
  write_file_atomic(path, [&](file_writer& w) { w.write(data); });
}

/// Atomically replaces (or creates) `path` with the text `text`.
inline void write_file_atomic(const std::filesystem::path& path, std::string_view text) {
  write_file_atomic(path, std::as_bytes(std::span<const char>(text.data(), text.size())));
}

/// Atomically replaces (or creates) `path` with the text `fill` writes to a stream: the text is
/// built in memory and written only once complete, so an exception in `fill` leaves an existing
/// file as it was. genlm::error names the path when formatting or writing fails.
inline void write_text_atomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& fill) {
  std::ostringstream out;
  fill(out);
  check(static_cast<bool>(out), "write_text_atomic: formatting the text of '", path.string(), "' failed");
  write_file_atomic(path, std::string_view(out.str()));
}

}  // namespace genlm::io
