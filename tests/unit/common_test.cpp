// libs/common's text helpers and descriptor owner.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <utility>

#include "common/text.h"
#include "common/unique_fd.h"

namespace kg {
namespace {

TEST(Text, TrimRemovesTheCIsspaceSetAtBothEnds) {
  EXPECT_EQ(trim(" \t\n\v\f\rtcp/22 \r\n"), "tcp/22");
  EXPECT_EQ(trim("a b"), "a b");
  EXPECT_EQ(trim(" \t "), "");
  EXPECT_EQ(trim(""), "");
}

TEST(Text, ToLowerIsAsciiOnly) {
  EXPECT_EQ(to_lower("KEY_Base64"), "key_base64");
  EXPECT_EQ(to_lower("\xC3\x84"), "\xC3\x84");
}

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

TEST(UniqueFd, ClosesOnceAndMoves) {
  int raw = -1;
  {
    UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(a.valid());
    raw = a.get();
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): moved-from is empty
    EXPECT_EQ(b.get(), raw);
    UniqueFd c;
    c = std::move(b);
    EXPECT_EQ(c.get(), raw);
    EXPECT_TRUE(is_open(raw));
  }
  EXPECT_FALSE(is_open(raw));
}

TEST(UniqueFd, ResetClosesAndEmpties) {
  UniqueFd a(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const int raw = a.get();
  a.reset();
  EXPECT_FALSE(a.valid());
  EXPECT_FALSE(is_open(raw));
}

}  // namespace
}  // namespace kg
