// Helpers shared by the Catch2 tests.
#pragma once
#include <catch2/catch.hpp>

#include <exception>
#include <string>

namespace genlm_test {

/// Runs f, requires it to throw E (not another exception, not nothing), returns the message.
template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    FAIL("wrong exception type: " << e.what());
  }
  FAIL("expected an exception, none was thrown");
  return {};
}

}  // namespace genlm_test
